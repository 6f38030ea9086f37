"""FQE (fitted Q evaluation) and ``tianshou-offline evaluate --fqe``.

The MDP is a deterministic chain whose value is known in closed form: H steps, observation
the one-hot step index, any action ``a ∈ [−1, 1]`` moves to the next step with reward ``a``,
the episode terminates after step H − 1. A constant policy ``π(s) = c`` has
``Q^π(s_t, a) = a + γ c (1 − γ^{H−t−1}) / (1 − γ)`` and value ``V(π) = c (1 − γ^H) / (1 − γ)``
at the initial state. The data is uniform random actions (not the evaluated policy's), so
FQE has to evaluate off-policy.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import ReplayBuffer

from tests.helpers import reference as ref
from tests.helpers.chain import (
    ACT_SPACE,
    GAMMA,
    OBS_SPACE,
    H,
    chain_columns,
    constant_policy,
    true_value,
)
from tianshou_offline.algorithms import (
    FQE,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
)
from tianshou_offline.algorithms.continuous.fqe import FQETransitions, episode_starts
from tianshou_offline.data.columns import buffer_from_columns


def fit_fqe(policy: DeterministicPolicy, buffer: ReplayBuffer, steps: int = 1500) -> FQE:
    torch.manual_seed(0)
    fqe: FQE = FQE(
        policy=policy,
        critics=CriticEnsemble(H, 1, (64, 64), num_critics=1),
        critic_optim=Adam(lr=3e-3),
        tau=0.05,
        gamma=GAMMA,
    )
    fqe.fit(buffer, steps=steps, batch_size=256)
    return fqe


@pytest.fixture(scope="module")
def chain_buffer() -> ReplayBuffer:
    return buffer_from_columns(chain_columns(200))


def test_episode_starts(chain_buffer: ReplayBuffer) -> None:
    starts = episode_starts(chain_buffer)
    assert starts.tolist() == list(range(0, 200 * H, H))


@pytest.mark.parametrize("c", [0.8, -0.5])
def test_fqe_matches_closed_form_value(chain_buffer: ReplayBuffer, c: float) -> None:
    fqe = fit_fqe(constant_policy(c), chain_buffer)
    estimate = fqe.estimate()
    assert estimate == pytest.approx(true_value(c), abs=0.1 * abs(true_value(c)) + 0.05)
    # Q^π(s_t, a) at every step t and a few actions, against the closed form
    obs = torch.eye(H)
    for a in (-1.0, 0.0, 0.6):
        q = fqe.critics(obs, torch.full((H, 1), a)).mean(0).detach().numpy()
        expected = [a + GAMMA * c * (1 - GAMMA ** (H - t - 1)) / (1 - GAMMA) for t in range(H)]
        np.testing.assert_allclose(q, expected, atol=0.2)


def test_fqe_iterated_regression_with_hard_copies(chain_buffer: ReplayBuffer) -> None:
    """tau=1 with target_update_freq=K is Le et al.'s Algorithm 3 exactly."""
    torch.manual_seed(0)
    fqe: FQE = FQE(
        policy=constant_policy(0.8),
        critics=CriticEnsemble(H, 1, (64, 64), num_critics=1),
        critic_optim=Adam(lr=3e-3),
        tau=1.0,
        target_update_freq=150,
        gamma=GAMMA,
    )
    estimate = fqe.fit(chain_buffer, steps=1500, batch_size=256)  # 10 iterations > H
    assert estimate == pytest.approx(true_value(0.8), rel=0.1)


def test_fqe_update_matches_algorithm_3(monkeypatch: pytest.MonkeyPatch) -> None:
    """Le et al. 2019, Algorithm 3, line 4 with a soft target: each member regresses on
    ``y = r + γ(1−d) mean_j Q'_j(s', π(s'))`` (one SGD step on ``Σ_j MSE``); the target (moved
    away from the online critics first) is Polyak-averaged after every
    ``target_update_freq``-th step only (steps 1, 3, … with 2)."""
    torch.manual_seed(0)
    d, a, b_size = ref.D, ref.A, ref.B
    policy = DeterministicPolicy(
        actor=DeterministicActor(d, a, ref.H),
        action_space=ref.ACT_SPACE,
        observation_space=ref.OBS_SPACE,
    )
    fqe: FQE = FQE(
        policy=policy,
        critics=CriticEnsemble(d, a, ref.H),
        critic_optim=ref.SGD,
        tau=0.05,
        target_update_freq=2,
        gamma=0.99,
    )
    ref.displace_targets(fqe)
    critics, critics_t = copy.deepcopy(fqe.critics), copy.deepcopy(fqe.critics_target)
    for step in range(2):
        base = ref.fixed_batch(step)
        g = torch.Generator().manual_seed(10 + step)
        b = FQETransitions(
            obs=base.obs,
            act=base.act,
            rew=base.rew,
            obs_next=base.obs_next,
            discount=base.discount,
            terminated=base.terminated,
            act_next=torch.rand(b_size, a, generator=g) * 2.0 - 1.0,
        )
        stats = ref.one_update(fqe, b, seed=81, monkeypatch=monkeypatch)
        with torch.no_grad():
            y = b.rew + b.discount * critics_t(b.obs_next, b.act_next).mean(0)
        q = critics(b.obs, b.act)
        loss = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
        ref.sgd_step(ref.params(critics), loss)
        if step == 1:
            ref.polyak(critics_t, critics, 0.05)
        assert stats.loss == pytest.approx(loss.item(), rel=1e-5)
        assert stats.q_target == pytest.approx(y.mean().item(), rel=1e-5)
        ref.assert_same(fqe.critics, critics, f"step {step}: critics")
        ref.assert_same(fqe.critics_target, critics_t, f"step {step}: critics_target")


def test_fqe_leaves_the_policy_and_its_normaliser_alone(chain_buffer: ReplayBuffer) -> None:
    policy = constant_policy(0.3)
    policy.obs_normalizer.enabled = True
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    fit_fqe(policy, chain_buffer, steps=20)
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_fqe_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="tau"):
        FQE(
            policy=constant_policy(0.1),
            critics=CriticEnsemble(H, 1, (8,), num_critics=1),
            critic_optim=Adam(),
            tau=0.0,
        )
    # n-step targets follow the data's actions, not π's: refused (issue 22, item 7)
    with pytest.raises(ValueError, match="n_step_return_horizon=3"):
        FQE(
            policy=constant_policy(0.1),
            critics=CriticEnsemble(H, 1, (8,), num_critics=1),
            critic_optim=Adam(),
            n_step_return_horizon=3,
        )


# --------------------------------------------------------------------------- the CLI


def write_chain_file(path: Path, episodes: int = 200) -> Path:
    from tianshou_offline import BufferWriter

    cols = chain_columns(episodes, seed=1)
    with BufferWriter(
        path, observation_space=OBS_SPACE, action_space=ACT_SPACE, env_id=None
    ) as writer:
        for e in range(episodes):
            rows = slice(e * H, (e + 1) * H)
            writer.add_episode(
                obs=cols["obs"][rows],
                act=cols["act"][rows],
                rew=cols["rew"][rows],
                terminated=cols["terminated"][rows],
                truncated=cols["truncated"][rows],
                obs_next=cols["obs_next"][rows],
            )
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """``tianshou-offline ARGS`` in this process (as the console script runs it)."""
    from tianshou_offline.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def test_evaluate_fqe_ranks_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tianshou_offline.recording.policies import save_policy_checkpoint

    data = write_chain_file(tmp_path / "chain.hdf5")
    good = save_policy_checkpoint(tmp_path / "good.pt", constant_policy(0.8))
    bad = save_policy_checkpoint(tmp_path / "bad.pt", constant_policy(-0.6))
    out = tmp_path / "fqe.json"
    run = cli(
        capsys,
        "evaluate", "--fqe", str(bad), str(good), "--data", str(data),
        "--steps", "1500", "--gamma", str(GAMMA), "--lr", "3e-3", "--tau", "0.05",
        "--hidden-sizes", "64", "64", "--json", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    ranked = [Path(r["checkpoint"]).name for r in result["checkpoints"]]
    assert ranked == ["good.pt", "bad.pt"]
    estimates = {Path(r["checkpoint"]).name: r["estimate"] for r in result["checkpoints"]}
    assert estimates["good.pt"] == pytest.approx(true_value(0.8), rel=0.15)
    assert estimates["bad.pt"] == pytest.approx(true_value(-0.6), rel=0.15)
    lines = run.stdout.splitlines()
    assert any("good.pt" in line and line.rstrip().endswith("1") for line in lines), run.stdout
    # an existing --json output is kept without --overwrite
    again = cli(capsys, "evaluate", "--fqe", str(good), "--data", str(data), "--steps", "1",
                "--json", str(out))  # fmt: skip
    assert again.returncode == 2 and again.stderr.startswith("error:"), again.stderr


def test_evaluate_fqe_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tianshou_offline.recording.policies import save_policy_checkpoint

    data = write_chain_file(tmp_path / "chain.hdf5", episodes=4)
    good = save_policy_checkpoint(tmp_path / "good.pt", constant_policy(0.8))
    other_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    mismatched = save_policy_checkpoint(
        tmp_path / "other.pt",
        DeterministicPolicy(
            actor=DeterministicActor(3, 1, (8,)),
            action_space=ACT_SPACE,
            observation_space=other_space,
        ),
    )
    cases = {
        "missing data": ("--fqe", str(good), "--data", str(tmp_path / "nope.hdf5")),
        "missing checkpoint": ("--fqe", str(tmp_path / "nope.pt"), "--data", str(data)),
        "spaces": ("--fqe", str(good), str(mismatched), "--data", str(data)),
        "n-step": ("--fqe", str(good), "--data", str(data), "--n-step", "3"),
    }
    for name, args in cases.items():
        run = cli(capsys, "evaluate", *args, "--steps", "1")
        assert run.returncode == 2, (name, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (name, run.stderr)
        assert "Traceback" not in run.stderr
    assert "other.pt" in cli(capsys, "evaluate", *cases["spaces"], "--steps", "1").stderr


def test_evaluate_fqe_threads_and_progress_per_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23: ``evaluate --fqe`` ran on every core and said nothing until the table. Its
    torch threads are ``--threads`` (default 1), and without a terminal each checkpoint's fit
    prints plain progress lines (here every line: interval 0) ending with a final one."""
    from tianshou_offline.recording.policies import save_policy_checkpoint

    data = write_chain_file(tmp_path / "chain.hdf5", episodes=4)
    a = save_policy_checkpoint(tmp_path / "a.pt", constant_policy(0.8))
    b = save_policy_checkpoint(tmp_path / "b.pt", constant_policy(-0.6))
    monkeypatch.setenv("TIANSHOU_OFFLINE_PROGRESS_INTERVAL", "0")
    args = ("evaluate", "--fqe", str(a), str(b), "--data", str(data), "--steps", "5",
            "--hidden-sizes", "8")  # fmt: skip
    try:
        torch.set_num_threads(2)
        run = cli(capsys, *args)
        assert run.returncode == 0, run.stderr
        assert torch.get_num_threads() == 1  # the default
        assert cli(capsys, *args, "--threads", "2").returncode == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    lines = run.stderr.splitlines()
    for i, name in ((1, "a.pt"), (2, "b.pt")):
        mine = [x for x in lines if x.startswith(f"FQE {i}/2 {name}: ")]
        assert [x.split(": ")[1].split(" ")[0] for x in mine[:5]] == [f"{n}/5" for n in range(1, 6)]
        assert "(done in" in mine[-1], run.stderr
    assert all("\r" not in x and "\x1b" not in x for x in lines)


def _shapes(module: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in module.parameters()]


def test_evaluate_takes_fqes_defaults_from_its_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24: FQE's defaults were written in its constructor, ``OPESettings``,
    ``fqe_rank``'s keywords and ``evaluate``'s flags. With :class:`FQEConfig`'s defaults
    changed, ``evaluate --fqe`` and ``--ope fqe`` (no FQE flags) build FQE with the changed
    values; the number of steps and the batch size too (they were 20,000 / 5,000 and 256 in
    three places: checked to fail with --steps defaulting to 20000 in the CLI)."""
    from tianshou_offline.algorithms import ContinuousPolicy, FQEConfig
    from tianshou_offline.recording.policies import save_policy_checkpoint

    data = write_chain_file(tmp_path / "chain.hdf5", episodes=4)
    ckpt = save_policy_checkpoint(tmp_path / "a.pt", constant_policy(0.5))
    changed: dict[str, Any] = {"lr": 1.25e-3, "tau": 0.25, "gamma": 0.5, "hidden_sizes": (7, 5),
                               "steps": 3, "batch_size": 5}  # fmt: skip
    assert all(getattr(FQEConfig(), k) != v for k, v in changed.items())
    defaults = FQEConfig.__init__.__kwdefaults__
    assert defaults is not None
    for key, value in changed.items():
        monkeypatch.setitem(defaults, key, value)
    built: list[FQE] = []
    real_build = FQEConfig.build

    def recording_build(
        self: FQEConfig, policy: ContinuousPolicy, *, device: str | torch.device = "cpu"
    ) -> FQE:
        fqe = real_build(self, policy, device=device)
        built.append(fqe)
        return fqe

    monkeypatch.setattr(FQEConfig, "build", recording_build)
    fits: list[tuple[int, int]] = []
    real_fit = FQE.fit

    def recording_fit(self: FQE, buffer: ReplayBuffer, *, steps: int, batch_size: int,
                      progress: Any = None) -> float:  # fmt: skip
        fits.append((steps, batch_size))
        return real_fit(self, buffer, steps=steps, batch_size=batch_size, progress=progress)

    monkeypatch.setattr(FQE, "fit", recording_fit)
    run = cli(capsys, "evaluate", "--fqe", str(ckpt), "--data", str(data))
    assert run.returncode == 0, run.stderr
    assert "gamma 0.5" in run.stdout and "FQE: 3 steps" in run.stdout
    run = cli(capsys, "evaluate", "--ope", "fqe", str(ckpt), "--data", str(data),
              "--resamples", "1")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "FQE 3 steps" in run.stdout
    assert fits == [(3, 5), (3, 5)]
    assert len(built) == 2
    expected = _shapes(CriticEnsemble(H, 1, changed["hidden_sizes"], num_critics=1))
    for fqe in built:
        assert fqe.tau == changed["tau"]
        assert fqe.critic_optim.optim.param_groups[0]["lr"] == changed["lr"]
        assert _shapes(fqe.critics) == expected
    assert built[0].gamma == changed["gamma"]  # --ope's discount is OPESettings.gamma
