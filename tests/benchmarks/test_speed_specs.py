"""The speed benchmarks compare on equal footing: the spec each peer is built from carries our
networks, batch sizes, critic counts and sampled-action counts (not the peer's defaults).

Runs without d3rlpy (it only inspects the plain-data specs sent to
``benchmarks/_lib/d3rlpy_side.py``)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from benchmarks import train_speed
from benchmarks._lib import sides_continuous, sides_discrete
from benchmarks._lib.floor import find_optimizers
from tianshou_offline.algorithms.registry import make_config


def _args(**kw: Any) -> Any:
    import argparse

    base = {
        "obs_dim": 17,
        "act_dim": 6,
        "hidden": None,
        "batch_size": None,
        "buffer_size": 1000,
        "seed": 0,
        "compiled": False,
    }
    return argparse.Namespace(**{**base, **kw})


def test_every_row_times_ours_compiled_beside_the_eager_step() -> None:
    for row in train_speed.continuous_rows(_args(compiled=True), list(train_speed.ROWS)):
        eager, compiled = row.side("ours"), row.side(train_speed.COMPILED)
        assert eager is not None and compiled is not None, row.key
        assert compiled.spec == {**eager.spec, "compile": True}, row.key
        assert (train_speed.COMPILED, " — compile=True") in row.ours


def test_a_compiled_side_that_stays_eager_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled side of an algorithm that cannot be compiled times the eager step; its
    worker reports why and the table's label carries the note."""
    from tianshou_offline.algorithms.core import OfflineAlgorithmCore

    monkeypatch.setattr(OfflineAlgorithmCore, "compile_unsupported", "a reason")
    row = train_speed.continuous_rows(_args(compiled=True, buffer_size=300), ["il"])[0]
    side = row.side(train_speed.COMPILED)
    assert side is not None
    _, info = train_speed.build_side(side.spec)
    assert info["compiled"] is False and info["eager_because"] == "a reason"
    assert train_speed.fallback_note({"info": info}) == " (eager: a reason)"
    assert train_speed.fallback_note({"info": {"compiled": True}}) == ""
    assert train_speed.fallback_note({"info": {}}) == ""  # eager sides, older results


def test_continuous_peers_share_networks_batch_and_counts() -> None:
    rows = {
        r.key.split(":")[1]: r for r in train_speed.continuous_rows(_args(), list(train_speed.ROWS))
    }
    for key, row in rows.items():
        specs = {s.key: s.spec for s in row.sides}
        for side_key, spec in specs.items():
            assert spec["batch_size"] == (64 if key == "dt" else 256), (key, side_key)
            assert spec["hidden"] == ([] if key == "dt" else [256, 256]), (key, side_key)
            assert spec["adam"] == "fused" or side_key == "tianshou-default", (key, side_key)
        config: Any = sides_continuous.config(key)
        if key in ("sacn", "edac"):  # neither peer has them
            assert set(specs) == {"ours"}, key
            continue
        p = specs["d3rlpy"]["params"]
        if hasattr(config, "num_critics"):
            assert p["n_critics"] == config.num_critics
    samples = {"bcq": 10, "cql": 10, "crr": 4, "awac": 1}  # d3rlpy's defaults: 100, 10, 4, 1
    for key, n in samples.items():
        side = rows[key].side("d3rlpy")
        assert side is not None
        assert side.spec["params"]["n_action_samples"] == n
    assert rows["crr"].side("tianshou-fused") is None  # Tianshou has no continuous CRR
    # the Decision Transformer: d3rlpy gets the paper's network and optimizer, as ours
    dt = rows["dt"].side("d3rlpy")
    assert dt is not None and rows["dt"].side("tianshou-fused") is None
    assert dt.spec["params"] == {
        "lr": 1e-4, "weight_decay": 1e-4, "warmup_steps": 10_000, "clip_grad_norm": 0.25,
        "context_size": 20, "max_timestep": 1000, "embed_size": 128, "num_layers": 3,
        "num_heads": 1, "dropout": 0.1, "rtg_scale": 1000.0, "target_return": 3600.0,
    }  # fmt: skip
    narrow = train_speed.continuous_rows(_args(hidden=[32], batch_size=8), ["bcq"])[0]
    assert {s.spec["hidden"][0] for s in narrow.sides} == {32}  # --hidden reaches every side
    assert {s.spec["batch_size"] for s in narrow.sides} == {8}


@pytest.mark.parametrize(
    "key", ["bcq", "bcq-ts-target", "cql", "crr", "td3bc", "iql", "rebrac", "sacn", "edac", "awac"]
)
def test_our_side_is_the_speed_preset(key: str) -> None:
    """Our algorithm, built as the benchmark builds it, is the ``speed`` preset's, with the
    counts the peers get."""
    spec = {"impl": "ours", "algo": key, "obs_dim": 17, "act_dim": 6, "hidden": [32, 32],
            "buffer_size": 1000, "seed": 0, "batch_size": 8}  # fmt: skip
    algo: Any = sides_continuous.build(spec)[0]
    config: Any = sides_continuous.config(key, [32, 32])
    assert config == make_config(key, "continuous", preset="speed", hidden_sizes=(32, 32),
                                 **({"vae_hidden_sizes": (32, 32)} if "bcq" in key else {}))  # fmt: skip
    critics = getattr(algo, "critics", None) or algo.policy.critics
    assert critics.num_critics == config.num_critics
    widths = {m.out_features for m in algo.policy.modules() if isinstance(m, torch.nn.Linear)}
    assert 32 in widths and 256 not in widths  # the preset's 256 x 256 replaced everywhere
    if hasattr(config, "num_sampled_actions"):
        assert algo.num_sampled_actions == config.num_sampled_actions
    if key == "bcq-ts-target":
        assert algo.perturb_target_actions is False


def test_tianshou_fused_side_is_really_fused() -> None:
    setup = sides_continuous.Setup.make(17, 6)
    for adam, fused in (("fused", True), ("default", False)):
        algo = sides_continuous.ts_td3bc(sides_continuous.config("td3bc", [32, 32]), setup, adam)
        optims = find_optimizers(algo)
        assert len(optims) == 3
        assert all(bool(o.param_groups[0].get("fused")) is fused for o in optims)
        assert all(isinstance(o, torch.optim.Adam) for o in optims)


def test_discrete_peers_share_networks_and_batch() -> None:
    for setting in (sides_discrete.CARTPOLE, sides_discrete.ATARI):
        for row in train_speed.discrete_rows([setting], train_speed.ROW_KEYS):
            d3 = row.side("d3rlpy")
            name = row.key.split(":")[1]
            if name in ("cql", "crr"):  # 200-quantile CQL and CRR: d3rlpy has none
                assert d3 is None
                continue
            assert d3 is not None
            algo = "cql" if name == "cql-mean" else name
            config = setting.config(algo)
            assert config == make_config(algo, "discrete", preset=f"speed-{setting.name}")
            assert d3.spec["batch_size"] == setting.batch_size(algo)
            assert d3.spec["head_hidden"] == list(config.hidden_sizes)
            assert d3.spec["obs_shape"] == list(setting.obs_space.shape)
            assert d3.spec["params"]["lr"] == config.lr
            if name == "cql-mean":  # both run the fewest quantiles Tianshou accepts (2)
                for s in row.sides:
                    if s.key != "d3rlpy":
                        policy = sides_discrete.build(s.spec)[0].policy
                        linear = [m for m in policy.modules() if isinstance(m, torch.nn.Linear)]
                        assert linear[-1].out_features == 2 * setting.num_actions
