"""The quality table's workers in this environment (:mod:`benchmarks.quality_table`
``--worker ours|evaluate``): our side trained and evaluated under each acting rule, and
d3rlpy's exported policies evaluated by the same code on the same episodes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._lib.quality_specs import ACTING


def _worker_setup(spec: dict[str, Any]) -> None:
    import torch

    import tianshou_offline.cli._no_tensorflow  # noqa: F401  (before Tianshou: no TensorFlow)

    torch.set_num_threads(1)
    torch.manual_seed(int(spec["seed"]))


def build_ours(spec: dict[str, Any], env: Any) -> Any:
    """Our algorithm for ``spec`` (its preset entry), for ``env``'s spaces:
    :func:`~tianshou_offline.algorithms.registry.make_algorithm`, the registry's builder, at
    the job's preset; the settings must be the ones the job was keyed with."""
    from tianshou_offline.algorithms.registry import make_algorithm, make_config

    overrides = spec.get("overrides", {})
    config = make_config(spec["algo"], env.action_space, preset=spec["preset"], **overrides)
    if config.hyperparameters() != spec["hp"]:
        raise RuntimeError(
            f"{spec['algo']}: the preset {spec['preset']!r} now gives other settings than the "
            f"job's: {config.hyperparameters()} != {spec['hp']}"
        )
    return make_algorithm(spec["algo"], env.observation_space, env.action_space,
                          preset=spec["preset"], device=spec.get("device", "cpu"),
                          **overrides)  # fmt: skip


def _policy_for(algorithm: Any, acting: str) -> Any:
    """The policy our trained ``algorithm`` is evaluated with under the rule ``acting``."""
    from tianshou_offline.algorithms.continuous.policies import (
        CriticWeightedPolicy,
        GaussianPolicy,
    )

    policy = algorithm.policy
    if acting == "default":
        return policy
    if not isinstance(policy, GaussianPolicy) or isinstance(policy, CriticWeightedPolicy):
        raise ValueError(f"acting rule {acting!r}: expected an algorithm with a GaussianPolicy")
    if acting == "actor-mean":
        if not policy.deterministic_eval:
            raise ValueError("actor-mean: the GaussianPolicy samples at evaluation")
        return policy
    if acting == "critic-weighted":  # the trained actor and critics, CRR's m samples, T = 1
        if policy.observation_space is None:
            raise ValueError("critic-weighted: the policy has no observation space")
        cwp = CriticWeightedPolicy(
            actor=policy.actor, critics=algorithm.critics, action_space=policy.action_space,
            observation_space=policy.observation_space,
            num_sampled_actions=algorithm.num_sampled_actions,
            squash=policy.squash, normalize_obs=policy.obs_normalizer.enabled,
        )  # fmt: skip
        cwp.obs_normalizer.load_state_dict(policy.obs_normalizer.state_dict())
        return cwp.to(policy.device)
    raise ValueError(f"acting rule {acting!r}: expected one of {', '.join(ACTING)}")


def train_ours(
    spec: dict[str, Any],
) -> tuple[dict[int, dict[str, Callable[[Any], Any]]], float]:
    """Train our algorithm on the file for ``gradient_steps``, every seed of the job (several:
    as one seed batch); returns each seed's policy under each of the job's acting rules
    (seed → line → obs → env action) and the training wall time in seconds (of all seeds)."""
    import numpy as np
    import torch
    from tianshou.data import Batch
    from tianshou.utils.torch_utils import policy_within_training_step

    from tianshou_offline import load_buffer
    from tianshou_offline.datasets import EnvSource
    from tianshou_offline.recording.dt_policies import ReturnConditionedActFn, is_dt_policy

    env = EnvSource(spec["env"]).make()
    seeds = [int(s) for s in spec.get("seeds", [spec.get("seed", 0)])]
    algorithm = build_ours(spec, env)  # seed 0's, or the only seed's (checks the settings)
    members = [algorithm]
    if len(seeds) > 1:
        from tianshou_offline.algorithms.seeds import make_seed_batch

        algorithm = make_seed_batch(spec["algo"], env.observation_space, env.action_space,
                                    seeds=seeds, preset=spec["preset"],
                                    device=spec.get("device", "cpu"),
                                    **spec.get("overrides", {}))  # fmt: skip
        members = list(algorithm.members)
    env.close()
    buffer = algorithm.process_buffer(load_buffer(spec["file"]))
    start = time.perf_counter()  # the gradient steps only (as d3rlpy's side)
    with policy_within_training_step(algorithm.policy):
        for _ in range(int(spec["gradient_steps"])):
            algorithm.update(buffer=buffer, sample_size=int(spec["batch_size"]))
    seconds = time.perf_counter() - start

    def acting(policy: Any, seed: int) -> Callable[[Any], Any]:
        if is_dt_policy(policy):  # acts on the episode so far (evaluate tells it the rewards)
            return ReturnConditionedActFn(policy, seed=seed)  # its own seed's, batched or not
        policy.eval()

        def act(obs: Any) -> Any:
            with torch.no_grad():
                out = policy(Batch(obs=np.asarray(obs, dtype=np.float32)[None], info=Batch()))
            a = policy.map_action(out.act)
            return a[0] if spec["suite"] == "continuous" else int(np.asarray(a).reshape(-1)[0])

        return act

    rules = spec["outputs"].items()
    policies = {
        seed: {line: acting(_policy_for(member, rule), seed) for line, rule in rules}
        for seed, member in zip(seeds, members, strict=True)
    }
    return policies, seconds


def evaluate_policy(spec: dict[str, Any], act: Callable[[Any], Any]) -> dict[str, Any]:
    """Return statistics and the normalised score (the file's reference returns), on the
    seed's evaluation episodes; torch's generator seeded the same for every policy (the
    rules that sample draw from it)."""
    import numpy as np
    import torch

    from tianshou_offline.converters.d4rl_scores import normalized_score
    from tianshou_offline.datasets import EnvSource
    from tianshou_offline.datasets.online import evaluate

    start = time.perf_counter()
    seed = 10_000 + int(spec["seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec["seed"]) + 1)
        mean, std, returns = evaluate(
            act, EnvSource(spec["env"]), episodes=int(spec["eval_episodes"]), seed=seed
        )
    return {
        "return_mean": mean,
        "return_std": std,
        "returns": returns,
        "score": normalized_score(spec["file"], mean),  # the family's reference returns
        "eval_seconds": time.perf_counter() - start,
        "eval_seed": seed,
        "final_return_min": float(np.min(returns)),
    }


def worker_ours(spec: dict[str, Any]) -> None:
    _worker_setup(spec)
    import tianshou_offline

    policies, seconds = train_ours(spec)
    k = len(policies)
    out: dict[str, dict[str, Any]] = {}
    for seed, by_line in policies.items():
        out[str(seed)] = {}
        for line, act in by_line.items():
            figures = evaluate_policy({**spec, "seed": seed}, act)
            figures.update(train_seconds=seconds / k, seed_batch=k, batch_train_seconds=seconds,
                           library=f"tianshou-offline {tianshou_offline.__version__}")  # fmt: skip
            out[str(seed)][line] = figures
    (Path(spec["workdir"]) / "result.json").write_text(json.dumps(out))


def worker_evaluate(spec: dict[str, Any]) -> None:
    """In this environment: evaluate d3rlpy's exported policies as ours are evaluated."""
    _worker_setup(spec)
    import numpy as np
    import torch

    train = json.loads((Path(spec["workdir"]) / "train.json").read_text())
    jit_load: Callable[[str], Any] = torch.jit.load  # untyped in torch
    continuous = spec["suite"] == "continuous"
    out = {}
    for line, path in train["policies"].items():
        module = jit_load(path)

        def act(obs: Any, module: Any = module) -> Any:
            with torch.no_grad():
                a = module(torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])).numpy()
            return a[0] if continuous else int(a.reshape(-1)[0])

        if "dt" in train:
            out[line] = evaluate_policy(spec, _d3rlpy_dt_act(module, train["dt"]))
        else:
            out[line] = evaluate_policy(spec, act)
        out[line].update(train_seconds=train["train_seconds"], library=train["library"],
                         redrawn_every_call=train["redrawn"][line])  # fmt: skip
    (Path(spec["workdir"]) / "result.json").write_text(json.dumps({str(spec["seed"]): out}))


def _d3rlpy_dt_act(step: Any, settings: dict[str, Any]) -> Callable[[Any], Any]:
    """d3rlpy's Decision Transformer acting by its rule
    (:class:`~benchmarks._lib.d3rlpy_side.DTContext` around its exported ``step``), as an act
    function that :func:`~tianshou_offline.datasets.online.evaluate` tells where each episode
    starts and which reward each step received (the protocol of
    :class:`~tianshou_offline.recording.dt_policies.ReturnConditionedActFn`)."""
    from benchmarks._lib.d3rlpy_side import DTContext
    from tianshou_offline.recording.dt_policies import ReturnConditionedActFn

    context = DTContext(step, **settings)

    class D3rlpyDTActFn(ReturnConditionedActFn):
        # ReturnConditionedActFn's protocol only: no Tianshou policy to set up
        def __init__(self) -> None:
            self.received = 0.0

        def start_episode(self) -> None:
            context.reset()
            self.received = 0.0

        def observe(self, reward: float) -> None:
            self.received = float(reward)

        def __call__(self, obs: Any) -> Any:
            return context(obs, self.received)

    return D3rlpyDTActFn()
