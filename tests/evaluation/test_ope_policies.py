"""Off-policy evaluation of real policies on real files: discrete checkpoints of every kind
round-trip, and the estimators recover the known value of the chain MDPs of
``test_fqe_discrete`` (discrete) and ``test_fqe`` (continuous) from uniform behaviour data,
with the behaviour policy stored in the file or fitted."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from tianshou_offline import BufferWriter
from tianshou_offline.algorithms import (
    DiscreteActorPolicy,
    DiscreteBCQPolicy,
    DiscretePolicy,
    DualHeadNet,
    MLPTrunk,
    QNet,
    QuantileQNet,
    QValuePolicy,
    make_trunk,
)
from tianshou_offline.errors import DatasetFormatError, DataValidationError
from tianshou_offline.evaluation.ope import OPESettings, ope_rank
from tianshou_offline.recording.policies import (
    load_discrete_policy,
    load_policy_checkpoint,
    save_atari_checkpoint,
    save_policy_checkpoint,
)

SPACE = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
ACT = gym.spaces.Discrete(3)


def discrete_policies() -> dict[str, DiscretePolicy]:
    torch.manual_seed(0)
    return {
        "dqn": QValuePolicy(model=QNet(MLPTrunk(4, (8,)), 3, (8,)), action_space=ACT,
                            observation_space=SPACE, eps_inference=0.1),
        "cql": QValuePolicy(model=QuantileQNet(MLPTrunk(4, (8,)), 3, 5), action_space=ACT,
                            observation_space=SPACE),
        "bcq": DiscreteBCQPolicy(model=DualHeadNet(MLPTrunk(4, (8, 8)), 3), action_space=ACT,
                                 observation_space=SPACE, unlikely_action_threshold=0.2),
        "crr": DiscreteActorPolicy(actor=DualHeadNet(MLPTrunk(4, (8,)), 3, (8,)),
                                   action_space=ACT, observation_space=SPACE, logits_index=0),
        "il": DiscreteActorPolicy(actor=QNet(MLPTrunk(4, (8,)), 3), action_space=ACT,
                                  observation_space=SPACE, deterministic_eval=False),
    }  # fmt: skip


def test_discrete_checkpoints_round_trip(tmp_path: Path) -> None:
    obs = torch.randn(64, 4)
    for name, policy in discrete_policies().items():
        path = save_policy_checkpoint(tmp_path / f"{name}.pt", policy)
        loaded = load_discrete_policy(path, observation_space=SPACE, action_space=ACT)
        assert type(loaded) is type(policy), name
        torch.testing.assert_close(loaded.action_probs(obs), policy.action_probs(obs))
        act = load_policy_checkpoint(path, observation_space=SPACE, action_space=ACT)
        if name not in ("dqn", "il"):  # deterministic: replays the greedy action
            expected = policy.action_probs(obs[:1]).argmax().item()
            assert act(obs[0].numpy()) == expected, name
    with pytest.raises(DataValidationError, match="observation_space"):
        load_discrete_policy(tmp_path / "dqn.pt", observation_space=gym.spaces.Box(0, 1, (5,)),
                             action_space=ACT)  # fmt: skip
    with pytest.raises(DataValidationError, match="action_space"):
        load_discrete_policy(tmp_path / "dqn.pt", action_space=gym.spaces.Discrete(4))


def test_atari_checkpoint_as_a_discrete_policy(tmp_path: Path) -> None:
    space = gym.spaces.Box(0, 255, shape=(2, 36, 36), dtype=np.uint8)
    model = QuantileQNet(make_trunk(space), 3, 4, [16])
    path = save_atari_checkpoint(tmp_path / "a.pt", model, head="quantiles", num_actions=3,
                                 frame_stack=2, frame_shape=(36, 36), hidden_sizes=[16],
                                 num_quantiles=4)  # fmt: skip
    policy = load_discrete_policy(path, observation_space=space, action_space=ACT)
    frames = torch.randint(0, 255, (5, 2, 36, 36), dtype=torch.uint8)
    assert torch.equal(policy.select_action(frames), model(frames).mean(2).argmax(1))
    with pytest.raises(DatasetFormatError, match="net.type"):
        load_discrete_policy(save_policy_checkpoint(tmp_path / "c.pt", _const_continuous(0.1)))


# --------------------------------------------------------------------------- chains


def _write(path: Path, cols: dict[str, np.ndarray], length: int, obs_space: gym.Space[Any],
           act_space: gym.Space[Any], behavior_prob: float | None) -> Path:  # fmt: skip
    with BufferWriter(path, observation_space=obs_space, action_space=act_space) as w:
        for e in range(len(cols["rew"]) // length):
            s = slice(e * length, (e + 1) * length)
            info = None if behavior_prob is None else {
                "behavior_prob": np.full(length, behavior_prob)}  # fmt: skip
            w.add_episode(obs=cols["obs"][s], act=cols["act"][s], rew=cols["rew"][s],
                          terminated=cols["terminated"][s], truncated=cols["truncated"][s],
                          obs_next=cols["obs_next"][s], info=info)  # fmt: skip
    return path


def _discrete_chain(tmp_path: Path, stored: bool) -> Path:
    from tests.helpers.chain_discrete import ACT_SPACE, OBS_SPACE, H, chain_columns

    return _write(tmp_path / f"chain{int(stored)}.hdf5", chain_columns(300, seed=3), H,
                  OBS_SPACE, ACT_SPACE, 0.5 if stored else None)  # fmt: skip


SETTINGS = OPESettings(gamma=0.9, fqe_steps=600, fqe_hidden=(64,), fqe_lr=3e-3, fqe_tau=0.05,
                       batch_size=128, behavior_steps=300, resamples=200,
                       max_weight=None)  # fmt: skip


@pytest.mark.parametrize("stored", [True, False], ids=["stored-mu", "fitted-mu"])
def test_discrete_ope_recovers_the_chain_value(tmp_path: Path, stored: bool) -> None:
    """Greedy on action 1 (value (1 − γ^H)/(1 − γ) = 3.439) and ε-greedy on action 0 with
    ε = 0.4 (P(1) = 0.2: value −0.6 · 3.439), from uniform data; behaviour μ = ½ stored in
    the file or fitted. Every estimate is close and each interval holds the truth (IS's
    weights reach 2⁴ = 16)."""
    from tests.helpers.chain_discrete import constant_q_policy, value_closed_form

    data = _discrete_chain(tmp_path, stored)
    good = save_policy_checkpoint(tmp_path / "good.pt", constant_q_policy(1))
    bad = save_policy_checkpoint(tmp_path / "bad.pt", constant_q_policy(0, eps=0.4))
    settings = OPESettings(**{**SETTINGS.__dict__, "behavior": "stored" if stored else "fit"})
    results = ope_rank([bad, good], data, settings)
    truth = {"bad.pt": value_closed_form(0.2), "good.pt": value_closed_form(1.0)}
    for r in results:
        t = truth[Path(r.checkpoint).name]
        for name, e in r.estimates.items():
            assert e.value == pytest.approx(t, abs=0.6), (r.checkpoint, name, e)
            assert e.low <= e.value <= e.high, (name, e)
            if name != "fqe" and stored:  # FQE's interval leaves out its fitting error
                assert e.low - 1e-3 <= t <= e.high + 1e-3, (r.checkpoint, name, e, t)
    assert all(r.ranks == dict.fromkeys(SETTINGS.estimators, 2 if "bad" in r.checkpoint else 1)
               for r in results)  # fmt: skip


def _const_continuous(c: float) -> Any:
    from tests.helpers.chain import constant_policy

    return constant_policy(c)


def test_continuous_ope_recovers_the_chain_value(tmp_path: Path) -> None:
    """The continuous chain (reward = action, uniform data, μ = ½ stored): a constant policy
    c = 0.6 smoothed with σ = 0.1 has value c (1 − γ^H)/(1 − γ)."""
    from tests.helpers.chain import ACT_SPACE, GAMMA, OBS_SPACE, H, chain_columns, true_value

    data = _write(tmp_path / "c.hdf5", chain_columns(400, seed=2), H, OBS_SPACE, ACT_SPACE, 0.5)
    ckpt = save_policy_checkpoint(tmp_path / "c.pt", _const_continuous(0.6))
    settings = OPESettings(**{**SETTINGS.__dict__, "gamma": GAMMA, "behavior": "stored",
                              "estimators": ("fqe", "wis", "dr", "wdr")})  # fmt: skip
    (result,) = ope_rank([ckpt], data, settings)
    for name, e in result.estimates.items():
        assert e.value == pytest.approx(true_value(0.6), abs=0.35), (name, e)


def test_ope_bad_inputs(tmp_path: Path) -> None:
    from tests.helpers.chain_discrete import constant_q_policy

    data = _discrete_chain(tmp_path, stored=False)
    good = save_policy_checkpoint(tmp_path / "good.pt", constant_q_policy(1))
    other = save_policy_checkpoint(tmp_path / "other.pt", discrete_policies()["dqn"])
    with pytest.raises(DataValidationError, match=r"other\.pt: field .action_space. is Discrete\(3\)"):
        ope_rank([good, other], data, SETTINGS)
    with pytest.raises(DataValidationError, match="behavior_prob"):
        ope_rank([good], data, OPESettings(**{**SETTINGS.__dict__, "behavior": "stored"}))
    cont = save_policy_checkpoint(tmp_path / "cont.pt", _const_continuous(0.2))
    with pytest.raises(DatasetFormatError, match=r"cont\.pt.*net\.type"):
        ope_rank([cont], data, SETTINGS)
    assert math.isfinite(ope_rank([good], data, OPESettings(
        **{**SETTINGS.__dict__, "estimators": ("wis",), "resamples": 5}))[0].estimates["wis"].value)  # fmt: skip


# --------------------------------------------------------------------------- the command


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from tianshou_offline.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_ope_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tests.helpers.chain_discrete import constant_q_policy, value_closed_form

    data = _discrete_chain(tmp_path, stored=False)
    good = save_policy_checkpoint(tmp_path / "good.pt", constant_q_policy(1))
    bad = save_policy_checkpoint(tmp_path / "bad.pt", constant_q_policy(0, eps=0.4))
    out = tmp_path / "ope.json"
    code, stdout, stderr = _cli(
        capsys, "evaluate", "--ope", "fqe,wis,wdr", str(bad), str(good), "--data", str(data),
        "--steps", "600", "--hidden-sizes", "64", "--lr", "3e-3", "--tau", "0.05",
        "--gamma", "0.9", "--batch-size", "128", "--behavior-steps", "300",
        "--resamples", "100", "--json", str(out),
    )  # fmt: skip
    assert code == 0, stderr
    assert f"ranking by wdr: {good} > {bad}" in stdout, stdout
    result = json.loads(out.read_text())
    assert result["settings"]["estimators"] == ["fqe", "wis", "wdr"]
    by_name = {Path(r["checkpoint"]).name: r for r in result["checkpoints"]}
    wdr = by_name["good.pt"]["estimates"]["wdr"]
    assert wdr["low"] <= wdr["value"] <= wdr["high"]
    assert wdr["value"] == pytest.approx(value_closed_form(1.0), abs=0.6)
    assert by_name["good.pt"]["ranks"] == {"fqe": 1, "wis": 1, "wdr": 1}


def test_evaluate_ope_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers.chain_discrete import constant_q_policy
    from tianshou_offline.cli.evaluate import OPE_NAMES
    from tianshou_offline.evaluation.estimators import ESTIMATORS

    assert OPE_NAMES == tuple(ESTIMATORS)
    data = _discrete_chain(tmp_path, stored=False)
    good = str(save_policy_checkpoint(tmp_path / "good.pt", constant_q_policy(1)))
    other = str(save_policy_checkpoint(tmp_path / "other.pt", discrete_policies()["dqn"]))
    cont = str(save_policy_checkpoint(tmp_path / "cont.pt", _const_continuous(0.2)))
    cases = {
        "estimator": (["--ope", "fqe,magic", good], "magic"),
        "no checkpoints": (["--ope", "fqe"], "no checkpoints"),
        "spaces": (["--ope", "wis", good, other], "other.pt: field 'action_space'"),
        "kind": (["--ope", "wis", cont], "cont.pt: field 'net.type'"),
        "stored": (["--ope", "wis", "--behavior", "stored", good], "behavior_prob"),
        "missing": (["--ope", "wis", str(tmp_path / "nope.pt")], "nope.pt: no such file"),
    }
    for name, (args, expected) in cases.items():
        code, _, stderr = _cli(capsys, "evaluate", *args, "--data", str(data), "--steps", "1",
                               "--behavior-steps", "1", "--resamples", "2")  # fmt: skip
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (name, stderr)
        assert expected in lines[0], (name, lines[0])


# --------------------------------------------------------------------------- the grid


def test_grid_ranks_its_cells_by_off_policy_estimates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny grid (two cells, trained here without Ray by run_cell, as a Ray task would);
    the grid command then finds them finished and ranks them by FQE and WIS on their
    dataset next to their evaluated returns."""
    import json

    import tianshou_offline.scale.grid as sg
    from tianshou_offline.cli import main
    from tianshou_offline.quickstart import record_cartpole_expert

    data = record_cartpole_expert(tmp_path / "cartpole.hdf5", episodes=6, eps=0.3, seed=0)
    spec = tmp_path / "grid.json"
    spec.write_text(json.dumps({
        "output": str(tmp_path / "runs"), "datasets": [str(data)],
        "algorithms": {"il": {}, "bcq": {}}, "seeds": 1,
        "budget": {"epochs": 1, "steps_per_epoch": 30, "batch_size": 64, "test_episodes": 1,
                   "eval_episodes": 2},
        "ope": {"estimators": ["fqe", "wis"], "steps": 200, "hidden_sizes": [32],
                "behavior_steps": 100, "resamples": 50},
    }))  # fmt: skip
    grid = sg.load_grid(spec)
    assert grid.ope is not None and grid.ope["fqe_steps"] == 200
    for cell in grid.cells:
        sg.run_cell(cell, grid.output)
    assert main(["grid", str(spec), "--no-progress"]) == 0
    out = capsys.readouterr().out
    report = json.loads((grid.output / "ope.json").read_text())
    (dataset,) = report["datasets"]
    keys = {c.key for c in grid.cells}
    assert {r["label"] for r in dataset["rows"]} == keys
    returns = {r["label"]: r["true_return"] for r in dataset["rows"]}
    for name in ("fqe", "wis"):
        sel = dataset["selection"][name]
        assert sel["pick"] in keys and sel["best_return"] == max(returns.values())
        assert sel["regret"] == pytest.approx(sel["best_return"] - returns[sel["pick"]])
        assert f"- {name} picks {sel['pick']}" in out
    assert (grid.output / "ope.md").read_text() in out
    spec.write_text(spec.read_text().replace('"resamples"', '"magic"'))
    with pytest.raises(DataValidationError, match="ope.*magic"):
        sg.load_grid(spec)
