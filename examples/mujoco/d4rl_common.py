"""Shared plumbing of the ``examples/mujoco/d4rl_*.py`` scripts.

- :func:`make_parser`: the flags users know from Tianshou's offline examples, each accepted
  in both spellings (``--expert-data-task`` and ``--expert_data_task``); unknown flags are
  an error.
- :func:`load_dataset`: ``--expert-data-task`` as a buffer file, a D4RL name
  (``halfcheetah-expert-v2``) or a Minari id (``mujoco/halfcheetah/expert-v0``); names are
  converted once into a cached HDF5 file by :mod:`tianshou_offline.converters`.
- :func:`train_and_evaluate`: TensorBoard logging, best (policy weights) and last
  (algorithm weights + optimizer state) checkpoints, ``--resume-path``, ``--watch``, and a
  final evaluation reporting the D4RL-normalised score when reference scores are known.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.data import Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv, SubprocVectorEnv
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils import TensorboardLogger
from torch.utils.tensorboard import SummaryWriter

from tianshou_offline import load_buffer, read_metadata
from tianshou_offline.algorithms import OfflineAlgorithmBase
from tianshou_offline.errors import SourceNotFoundError

log = logging.getLogger("d4rl_example")

D4RL_ENV_IDS = {
    # the gymnasium environments that evaluate policies trained on D4RL locomotion data
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}
_D4RL_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9_]+)*-v\d+$")


# --------------------------------------------------------------------------- flags


class _Parser(argparse.ArgumentParser):
    """``add_argument('--some-flag', ...)`` also accepts ``--some_flag`` (and vice versa)."""

    def add_argument(self, *names: Any, **kwargs: Any) -> Any:
        spelled: list[str] = []
        for name in names:
            spelled.append(name)
            if isinstance(name, str) and name.startswith("--"):
                for alt in (name.replace("-", "_"), name.replace("_", "-")):
                    alt = "--" + alt[2:]
                    if alt != name and alt not in spelled:
                        spelled.append(alt)
        return super().add_argument(*spelled, **kwargs)


def make_parser(description: str, *, task: str, expert_data_task: str) -> argparse.ArgumentParser:
    """The common flags; each script adds its algorithm's hyperparameters."""
    p = _Parser(description=description, allow_abbrev=False)
    p.add_argument(
        "--task",
        default=None,
        help=f"gymnasium env id (default: from the data; {task} for the default data)",
    )
    p.add_argument(
        "--expert-data-task", default=expert_data_task, help="buffer file, D4RL name or Minari id"
    )
    p.add_argument(
        "--data-dir",
        default=os.environ.get(
            "TIANSHOU_OFFLINE_DATA", str(Path.home() / ".cache" / "tianshou_offline")
        ),
        help="where converted datasets are cached",
    )
    p.add_argument(
        "--buffer-size", type=int, default=None, help="use at most this many transitions"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden-sizes", type=int, nargs="*", default=[256, 256])
    p.add_argument("--actor-lr", type=float, default=3e-4)
    p.add_argument("--critic-lr", type=float, default=3e-4)
    p.add_argument("--epoch", type=int, default=200)
    p.add_argument(
        "--step-per-epoch", "--epoch-num-steps", type=int, default=5000, dest="step_per_epoch"
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-step", type=int, default=1)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--tau", type=float, default=0.005)
    p.add_argument(
        "--norm-obs", type=int, default=0, help="1: normalise observations with dataset statistics"
    )
    p.add_argument("--test-num", "--num-test-envs", type=int, default=10, dest="test_num")
    p.add_argument("--subproc-envs", action="store_true", help="evaluate in subprocesses")
    p.add_argument("--logdir", default="log")
    p.add_argument("--logger", default="tensorboard", choices=["tensorboard", "none"])
    p.add_argument("--log-interval", type=int, default=100, help="log training stats every N steps")
    p.add_argument(
        "--render", type=float, default=0.0, help="render the final episode with this delay (s)"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    p.add_argument(
        "--resume-path", default=None, help="a checkpoint to start from (last.pt or policy.pt)"
    )
    p.add_argument(
        "--watch", action="store_true", help="only evaluate the checkpoint in --resume-path"
    )
    p.add_argument("--show-progress", type=int, default=1)
    return p


# --------------------------------------------------------------------------- data


@dataclass
class Dataset:
    buffer: ReplayBuffer | None
    """None when only the metadata was read (``--watch``)."""
    path: Path
    env_id: str | None
    dataset_id: str | None
    observation_space: gym.Space[Any] | None
    action_space: gym.Space[Any] | None
    ref_scores: tuple[float, float] | None


def _convert(module_name: str, name: str, out_dir: Path) -> Path:
    """Convert ``name`` with :mod:`tianshou_offline.converters.<module_name>` into ``out_dir``."""
    try:
        module = importlib.import_module(f"tianshou_offline.converters.{module_name}")
    except ImportError as e:
        raise SourceNotFoundError(
            f"{name}: looks like a {module_name} dataset id, but tianshou_offline.converters."
            f"{module_name} cannot be imported ({e}); pass a buffer file instead"
        ) from e
    out = out_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".hdf5")
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    for fn_name in (f"convert_{module_name}", "convert", "convert_dataset"):
        fn = getattr(module, fn_name, None)
        if callable(fn):
            params = inspect.signature(fn).parameters
            kwargs: dict[str, Any] = {"overwrite": True} if "overwrite" in params else {}
            env_id = D4RL_ENV_IDS.get(name.split("-")[0]) if module_name == "d4rl" else None
            if env_id and "env_id" in params:
                kwargs["env_id"] = env_id
            if "download" in params:
                kwargs["download"] = True
            log.info("converting %s with %s.%s → %s", name, module.__name__, fn_name, out)
            result = fn(name, out, **kwargs)
            return Path(result) if isinstance(result, str | os.PathLike) else out
    raise SourceNotFoundError(
        f"{name}: tianshou_offline.converters.{module_name} has no convert function; "
        f"convert it with `tianshou-offline convert` and pass the file"
    )


def _ref_scores(dataset_id: str | None, extra: dict[str, Any]) -> tuple[float, float] | None:
    """(random, expert) reference returns: stored with the data (Minari's ``ref_min_score``
    / ``ref_max_score``), else D4RL's table for a D4RL dataset name."""
    for source in (extra, extra.get("minari", {}) if isinstance(extra.get("minari"), dict) else {}):
        lo, hi = source.get("ref_min_score"), source.get("ref_max_score")
        if isinstance(lo, int | float) and isinstance(hi, int | float):
            return float(lo), float(hi)
    if dataset_id:
        try:
            from tianshou_offline.converters.d4rl_scores import find_dataset_info
        except ImportError:
            return None
        info = find_dataset_info(dataset_id.split("/")[-1])
        if info is not None:
            return info.ref_min_score, info.ref_max_score
    return None


def load_dataset(
    spec: str, data_dir: str, buffer_size: int | None = None, *, metadata_only: bool = False
) -> Dataset:
    """Resolve ``--expert-data-task`` into a buffer and its metadata."""
    path = Path(spec).expanduser()
    if not path.is_file():
        if "/" in spec:
            path = _convert("minari", spec, Path(data_dir) / "minari")
        elif _D4RL_NAME.match(spec):
            path = _convert("d4rl", spec, Path(data_dir) / "d4rl")
        else:
            raise SourceNotFoundError(
                f"{spec}: not a file, a D4RL name (e.g. halfcheetah-expert-v2) or a Minari id "
                "(e.g. mujoco/halfcheetah/expert-v0)"
            )
    meta = read_metadata(path)
    buffer = None if metadata_only else load_buffer(path)
    if buffer is not None and buffer_size is not None and buffer_size < len(buffer):
        from tianshou_offline.data.buffer import buffer_from_columns

        batch = buffer[np.arange(buffer_size)]
        buffer = buffer_from_columns(
            {k: batch[k] for k in ("obs", "act", "rew", "terminated", "truncated", "obs_next")}
        )
    dataset_id = meta.provenance.dataset_id if meta.provenance else None
    dataset_id = dataset_id or (spec if not Path(spec).is_file() else None)
    env_id = meta.env_id
    if env_id is None and dataset_id and _D4RL_NAME.match(dataset_id):
        env_id = D4RL_ENV_IDS.get(dataset_id.split("-")[0])
    extra = meta.provenance.extra if meta.provenance else {}
    return Dataset(
        buffer=buffer,
        path=path,
        env_id=env_id,
        dataset_id=dataset_id,
        observation_space=meta.observation_space,
        action_space=meta.action_space,
        ref_scores=_ref_scores(dataset_id, extra),
    )


def make_env(args: argparse.Namespace, dataset: Dataset | None) -> gym.Env[Any, Any]:
    """The evaluation environment: ``--task``, else the env id stored with the data."""
    task = args.task or (dataset.env_id if dataset else None)
    if task is None:
        raise SystemExit(
            "error: the dataset does not name its environment; pass --task (a gymnasium id)"
        )
    args.task = task
    return gym.make(task)


# --------------------------------------------------------------------------- training


def normalized_score(mean_return: float, ref: tuple[float, float] | None) -> float | None:
    """D4RL's normalised score: ``100 · (R − R_random) / (R_expert − R_random)``."""
    if ref is None:
        return None
    lo, hi = ref
    return 100.0 * (mean_return - lo) / (hi - lo)


def train_and_evaluate(
    args: argparse.Namespace,
    algo_name: str,
    dataset: Dataset | None,
    algorithm: OfflineAlgorithmBase[Any, Any],
    env: gym.Env[Any, Any],
) -> dict[str, Any]:
    """Train (unless ``--watch``), then evaluate the best policy; returns the final results."""
    task: str = args.task
    env_fns: Sequence[Callable[[], gym.Env[Any, Any]]] = [lambda: gym.make(task)] * args.test_num
    test_envs = SubprocVectorEnv(env_fns) if args.subproc_envs else DummyVectorEnv(env_fns)
    test_envs.seed(args.seed)
    test_collector = Collector[CollectStats](algorithm, test_envs)

    resume = Path(args.resume_path) if args.resume_path else None
    if resume is not None:
        state = torch.load(resume, map_location=args.device, weights_only=True)
        if resume.name.startswith("policy"):
            algorithm.policy.load_state_dict(state)
        else:
            algorithm.load_state_dict(state)
        log.info("loaded %s", resume)
    resume_from_log = bool(
        resume and not args.watch and list(resume.parent.glob("events.out.tfevents*"))
    )
    if resume_from_log and resume is not None:
        log_path = resume.parent
    else:
        now = datetime.datetime.now().strftime("%y%m%d-%H%M%S")
        log_path = Path(args.logdir) / task / algo_name / str(args.seed) / now
    if not args.watch:
        log_path.mkdir(parents=True, exist_ok=True)
        (log_path / "args.json").write_text(json.dumps(vars(args), indent=2, default=str))

    best_path, last_path = log_path / "policy.pt", log_path / "last.pt"

    def save_best_fn(algo: Any) -> None:
        torch.save(algo.policy.state_dict(), best_path)

    untyped: Any = algorithm  # Tianshou's Algorithm.state_dict (with optimizer states) is untyped

    def save_checkpoint_fn(epoch: int, env_step: int, gradient_step: int) -> str:
        torch.save(untyped.state_dict(), last_path)
        return str(last_path)

    result: dict[str, Any] = {"log_path": str(log_path)}
    if not args.watch:
        if dataset is None or dataset.buffer is None:
            raise SystemExit("error: no dataset to train on")
        logger = None
        if args.logger == "tensorboard":
            writer = SummaryWriter(str(log_path))
            writer.add_text("args", str(args))
            logger = TensorboardLogger(writer, save_interval=1, update_interval=args.log_interval)
        elif resume_from_log:
            resume_from_log = False
        info = algorithm.run_training(
            OfflineTrainerParams(
                buffer=dataset.buffer,
                test_collector=test_collector,
                max_epochs=args.epoch,
                epoch_num_steps=args.step_per_epoch,
                test_step_num_episodes=args.test_num,
                batch_size=args.batch_size,
                save_best_fn=save_best_fn,
                save_checkpoint_fn=save_checkpoint_fn,
                resume_from_log=resume_from_log and logger is not None,
                logger=logger,
                show_progress=bool(args.show_progress),
                verbose=False,
            )
        )
        if not last_path.exists():
            torch.save(untyped.state_dict(), last_path)
        result["best_reward"] = info.best_reward
        result["gradient_steps"] = info.update_step
        log.info("training done: best test return %.2f", info.best_reward)
        if best_path.exists():
            algorithm.policy.load_state_dict(torch.load(best_path, weights_only=True))

    test_envs.seed(args.seed)
    test_collector.reset()
    stats = test_collector.collect(n_episode=args.test_num)
    assert stats.returns_stat is not None
    mean, std = float(stats.returns_stat.mean), float(stats.returns_stat.std)
    score = normalized_score(mean, dataset.ref_scores if dataset else None)
    result.update(final_return_mean=mean, final_return_std=std, normalized_score=score)
    line = f"Final reward: {mean:.2f} ± {std:.2f} over {args.test_num} episodes"
    if score is not None:
        line += f", D4RL normalised score {score:.1f}"
    print(line, flush=True)
    if args.render > 0:
        render_env = gym.make(task, render_mode="human")
        Collector[CollectStats](algorithm, render_env).collect(n_episode=1, render=args.render)
    if not args.watch:
        print(f"checkpoints: {best_path} (policy), {last_path} (algorithm)", flush=True)
    return result


def setup(args: argparse.Namespace) -> Dataset | None:
    """Seeds, threads, logging and the dataset (metadata only with ``--watch``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.watch and not args.resume_path:
        raise SystemExit("error: --watch needs --resume-path")
    try:
        return load_dataset(
            args.expert_data_task, args.data_dir, args.buffer_size, metadata_only=args.watch
        )
    except SourceNotFoundError:
        if args.watch and args.task:
            return None
        raise


def spaces(env: gym.Env[Any, Any]) -> tuple[int, int]:
    """Flat observation and action sizes of a Box/Box environment."""
    assert isinstance(env.observation_space, gym.spaces.Box)
    assert isinstance(env.action_space, gym.spaces.Box)
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
