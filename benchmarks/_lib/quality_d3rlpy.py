"""The quality table's worker in d3rlpy's environment (:mod:`benchmarks.quality_table`
``--worker d3rlpy``): train d3rlpy's algorithm on the row's arrays and export its policy
under each acting rule as TorchScript."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def worker_d3rlpy(spec: dict[str, Any]) -> None:
    """In d3rlpy's environment: train, then export the policy of every acting rule of the
    job as TorchScript (``save_policy``; CRR's actor mean: a trace of ``tanh(μ)``; the
    Decision Transformer: its masked acting step, :func:`~benchmarks._lib.d3rlpy_side.export_dt_step`,
    checked against d3rlpy's ``StatefulTransformerWrapper`` on a stored episode)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import d3rlpy
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset, MultiStepTransitionPicker

    from benchmarks._lib.d3rlpy_side import (
        check_dt_context,
        continuous_config,
        discrete_config,
        export_dt_step,
    )

    d3rlpy.seed(int(spec["seed"]))
    torch.manual_seed(int(spec["seed"]))
    data = np.load(spec["arrays"])
    m = spec["d3rlpy"]
    continuous = spec["suite"] == "continuous"
    dt = m["algo"] == "dt"
    p = m["params"]
    picker = None
    if m["n_step"] > 1:
        picker = MultiStepTransitionPicker(n_steps=int(m["n_step"]), gamma=float(m["gamma"]))
    actions = data["actions"]
    dataset = MDPDataset(
        observations=data["observations"],
        actions=actions.astype(np.float32) if continuous else actions.astype(np.int64),
        rewards=data["rewards"],
        terminals=data["terminals"],
        timeouts=data["timeouts"],
        transition_picker=picker,
        action_space=ActionSpace.CONTINUOUS if continuous else ActionSpace.DISCRETE,
        action_size=int(spec["action_size"]),
    )
    obs_dim = int(data["observations"].shape[1])
    batch = int(spec["batch_size"])
    hp = spec["nets"]
    if continuous:
        config = continuous_config({"algo": m["algo"], "params": p, "adam": "fused",
                                    "hidden": hp.get("hidden_sizes", []), "batch_size": batch,
                                    "obs_dim": obs_dim})  # fmt: skip
    else:
        config = discrete_config({
            "algo": m["algo"], "params": p, "adam": "fused", "obs_shape": [obs_dim],
            "obs_dim": obs_dim, "trunk_hidden": hp.get("trunk_sizes", []),
            "head_hidden": hp.get("hidden_sizes", []),
            "channels_last": False, "scale_obs": False, "batch_size": batch,
            "gamma": float(m["gamma"]),
        })  # fmt: skip
    if m["observation_scaler"]:  # our normalize_obs: the data's mean and std
        config.observation_scaler = d3rlpy.preprocessing.StandardObservationScaler()
        if dt:
            config.observation_scaler.fit_with_trajectory_slicer(
                dataset.episodes, dataset.trajectory_slicer
            )
        else:
            config.observation_scaler.fit_with_transition_picker(
                dataset.episodes, dataset.transition_picker
            )
    algo = config.create(
        device="cuda:0" if spec.get("device", "cpu").startswith("cuda") else "cpu:0"
    )
    algo.build_with_dataset(dataset)
    start = time.perf_counter()
    for _ in range(int(spec["gradient_steps"])):
        if dt:  # its fit loop's step: segments ending at uniformly drawn steps
            algo.update(dataset.sample_trajectory_batch(batch, length=config.context_size))
        else:
            algo.update(dataset.sample_transition_batch(batch))
    seconds = time.perf_counter() - start
    probe = torch.as_tensor(data["observations"][:64])
    jit_load: Callable[[str], Any] = torch.jit.load  # untyped in torch
    policies, redrawn = {}, {}
    extra: dict[str, Any] = {}
    if dt:
        (line,) = spec["outputs"]
        path = Path(spec["workdir"]) / f"d3rlpy_policy.{line}.pt"
        export_dt_step(algo, str(path))
        episode = dataset.episodes[0]  # longer than K: the context fills, then slides
        n = min(int(episode.size()), 3 * int(config.context_size))
        received = np.concatenate([[0.0], np.asarray(episode.rewards, np.float32)[: n - 1, 0]])
        worst = check_dt_context(algo, jit_load(str(path)), episode.observations[:n], received,
                                 float(p["target_return"]))  # fmt: skip
        assert worst < 1e-4, f"{line}: DTContext ≠ StatefulTransformerWrapper (max {worst})"
        policies[line], redrawn[line] = str(path), False
        extra["dt"] = {"context": int(config.context_size),
                       "max_timestep": int(config.max_timestep),
                       "action_size": int(spec["action_size"]),
                       "target_return": float(p["target_return"]),
                       "discrete": not continuous,
                       "sample": bool(p.get("sample_actions", False))}  # fmt: skip
    for line, rule in ({} if dt else spec["outputs"]).items():
        path = Path(spec["workdir"]) / f"d3rlpy_policy.{line}.pt"
        if rule == "actor-mean":
            _save_actor_mean(algo, path)
        else:
            algo.save_policy(str(path))
        module = jit_load(str(path))
        first, second = module(probe).numpy(), module(probe).numpy()
        redrawn[line] = not np.array_equal(first, second)
        samples = continuous and (m["algo"] == "bcq" or rule == "critic-weighted")
        if samples:  # BCQ's and CRR's critic-weighted rules draw on every call
            assert redrawn[line], f"{line}: the exported {rule} policy does not redraw its samples"
        else:
            assert not redrawn[line], f"{line}: the exported {rule} policy is not deterministic"
            if rule == "default":
                predicted = algo.predict(probe.numpy())
                assert np.allclose(first, predicted, atol=1e-5), "TorchScript ≠ predict"
        policies[line] = str(path)
    (Path(spec["workdir"]) / "train.json").write_text(json.dumps({
        "train_seconds": seconds, "library": f"d3rlpy {d3rlpy.__version__}",
        "policies": policies, "redrawn": redrawn, **extra,
    }))  # fmt: skip


def _save_actor_mean(algo: Any, path: Path) -> None:
    """TorchScript of d3rlpy's actor mean ``tanh(μ)`` (its ``squashed_mu``), after the
    observation scaler as ``save_policy`` applies it."""
    import torch

    impl = algo.impl
    scaler = algo.config.observation_scaler

    def actor_mean(x: torch.Tensor) -> torch.Tensor:
        if scaler is not None:
            x = scaler.transform(x)
        out: torch.Tensor = impl.modules.policy(x).squashed_mu
        return out

    impl.modules.freeze()
    try:
        dummy = torch.rand(1, *impl.observation_shape, device=impl.device)
        trace: Callable[..., Any] = torch.jit.trace  # untyped in torch
        trace(actor_mean, dummy, check_trace=False).save(str(path))
    finally:
        impl.modules.unfreeze()
