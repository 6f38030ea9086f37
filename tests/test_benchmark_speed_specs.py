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


def _args(**kw: Any) -> Any:
    import argparse

    base = {
        "obs_dim": 17,
        "act_dim": 6,
        "hidden": [256, 256],
        "batch_size": 256,
        "buffer_size": 1000,
        "seed": 0,
    }
    return argparse.Namespace(**{**base, **kw})


def test_continuous_peers_share_networks_batch_and_counts() -> None:
    rows = {
        r.key.split(":")[1]: r for r in train_speed.continuous_rows(_args(), list(train_speed.ROWS))
    }
    for key, row in rows.items():
        specs = {s.key: s.spec for s in row.sides}
        for side_key, spec in specs.items():
            assert spec["batch_size"] == 256, (key, side_key)
            assert spec["hidden"] == [256, 256], (key, side_key)
            assert spec["adam"] == "fused" or side_key == "tianshou-default", (key, side_key)
        hp = sides_continuous.HP[key]
        if key in ("sacn", "edac"):  # neither peer has them
            assert set(specs) == {"ours"}, key
            continue
        p = specs["d3rlpy"]["params"]
        if "num_critics" in hp:
            assert p["n_critics"] == hp["num_critics"]
    samples = {"bcq": 10, "cql": 10, "crr": 4, "awac": 1}  # d3rlpy's defaults: 100, 10, 4, 1
    for key, n in samples.items():
        side = rows[key].side("d3rlpy")
        assert side is not None
        assert side.spec["params"]["n_action_samples"] == n
    assert rows["crr"].side("tianshou-fused") is None  # Tianshou has no continuous CRR


@pytest.mark.parametrize(
    "key", ["bcq", "cql", "crr", "td3bc", "iql", "rebrac", "sacn", "edac", "awac"]
)
def test_our_side_uses_the_shared_hyperparameters(key: str) -> None:
    """Our algorithm, built as the benchmark builds it, has the counts the peers get."""
    setup = sides_continuous.Setup.make(17, 6, (32, 32))
    algo: Any = sides_continuous.OURS[key](setup)
    hp = sides_continuous.HP[key]
    critics = getattr(algo, "critics", None) or algo.policy.critics
    assert critics.num_critics == hp["num_critics"]
    counts = {
        "bcq": ("num_sampled_action", "num_sampled_action"),
        "cql": ("num_sampled_actions", "num_sampled_actions"),
        "crr": ("num_action_samples", "num_action_samples"),
        "awac": ("num_action_samples", "num_action_samples"),
    }
    if key in counts:
        attr, hp_key = counts[key]
        assert getattr(algo, attr) == hp[hp_key]


def test_tianshou_fused_side_is_really_fused() -> None:
    setup = sides_continuous.Setup.make(17, 6, (32, 32))
    for adam, fused in (("fused", True), ("default", False)):
        algo = sides_continuous.ts_td3bc(setup, adam)
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
            assert d3.spec["batch_size"] == setting.batch_size[algo]
            assert d3.spec["head_hidden"] == list(setting.hidden)
            assert d3.spec["obs_shape"] == list(setting.obs_space.shape)
            if name == "cql-mean":  # both run the fewest quantiles Tianshou accepts (2)
                for s in row.sides:
                    if s.key != "d3rlpy":
                        assert s.spec["num_quantiles"] == 2
