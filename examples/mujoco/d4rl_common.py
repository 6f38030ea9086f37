"""Shared plumbing of the ``examples/mujoco/d4rl_*.py`` scripts.

- Flags: each script declares its hyperparameters as a dataclass extending
  :class:`~tianshou_offline.cli.example_args.MujocoConfig` (the flags users know from
  Tianshou's offline examples, each in both spellings: ``--expert-data-task`` and
  ``--expert_data_task``; unknown flags are an error).
- :func:`load_dataset`: ``--expert-data-task`` as a buffer file, a D4RL name
  (``halfcheetah-expert-v2``) or a Minari id (``mujoco/halfcheetah/expert-v0``); names are
  converted once into a cached HDF5 file by ``convert_d4rl`` / ``convert_minari``.
- :func:`setup` / :func:`make_env`: the data loaded and the environment made and checked
  against it (continuous actions, observation and action sizes) before any network is
  built; every problem is a typed error (one ``error:`` line, exit code 2, see
  :func:`~tianshou_offline.cli.example_args.run_example`).
- :func:`train_and_evaluate`: TensorBoard or W&B logging (``--logger``), best and last checkpoints,
  ``--resume-path``, ``--watch``, and a final evaluation reporting the D4RL-normalised score
  when reference scores are known. The log directory is made only then.

Checkpoints, in ``--logdir/TASK/ALGO/SEED/TIME``:

- ``policy.pt``, the best policy: a weights-only policy checkpoint
  (:func:`~tianshou_offline.recording.policies.save_policy_checkpoint`: the policy's
  ``state_dict`` with its sizes, flags and spaces). It replays with
  ``tianshou-offline record --env TASK --policy .../policy.pt --episodes 10 -o out.hdf5`` and
  resumes with ``--resume-path`` / ``--watch`` (which also read a bare ``state_dict`` saved by
  earlier versions);
- ``last.pt``, written at the end of each epoch (after its test): a training checkpoint
  (:mod:`tianshou_offline.training`: the algorithm's ``state_dict`` with its optimizers',
  schedulers' and step count, the random generators, the trainer's counters and state).
  ``--resume-path .../last.pt`` (or ``--resume``: the newest run's, found by task, algorithm
  and seed) continues the run in its directory exactly where it stopped: a run killed at any
  moment and restarted so ends with the same weights as one that was not interrupted and logs
  what it logged (on CPU; every test starts from the same seeded initial states).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
import numpy as np
import torch
from tianshou.data import Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv, SubprocVectorEnv
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils import BaseLogger, TensorboardLogger

from tianshou_offline import load_buffer, read_metadata
from tianshou_offline.algorithms.core import OfflineAlgorithmCore
from tianshou_offline.cli.example_args import (
    MujocoConfig,
    example_logger,
    training_progress,
    write_args,
)
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    MissingDependencyError,
    SourceNotFoundError,
)
from tianshou_offline.loggers import log_summary
from tianshou_offline.recording.policies import CHECKPOINT_FORMAT, save_policy_checkpoint
from tianshou_offline.training import FORMAT as TRAINING_FORMAT
from tianshou_offline.training import (
    holding,
    latest_checkpoint,
    load_training_checkpoint,
    lock_run_directory,
    reseeding_tests,
    run_training,
    save_training_checkpoint,
)

log = logging.getLogger("d4rl_example")

D4RL_ENV_IDS = {
    # the gymnasium environments that evaluate policies trained on D4RL locomotion data
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}
_D4RL_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9_]+)*-v\d+$")
_MINARI_ID = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*/[A-Za-z0-9_-]+-v\d+$")


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


def _cache_path(name: str, out_dir: Path) -> Path:
    return out_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".hdf5")


def _convert(kind: str, name: str, out_dir: Path) -> Path:
    """Convert the D4RL name or Minari id ``name`` once into ``out_dir`` (a cache); returns
    the cached file. A failed conversion leaves no new directory behind."""
    out = _cache_path(name, out_dir)
    if out.exists():
        return out
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("converting %s (%s) → %s", name, kind, out)
    try:
        if kind == "d4rl":
            from tianshou_offline.converters.d4rl import convert_d4rl

            convert_d4rl(name, out, env_id=D4RL_ENV_IDS.get(name.split("-")[0]), overwrite=True)
        else:
            from tianshou_offline.converters.minari import convert_minari

            convert_minari(name, out, download=True, overwrite=True)
    except BaseException:
        for d in made:  # innermost first; only the directories made here, if still empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    return out  # the path passed in (the converters' return value is being changed)


def _ref_scores(path: Path, dataset_id: str | None) -> tuple[float, float] | None:
    """(random, expert) reference returns: stored with the data (computed by
    ``tianshou-offline reference-scores``, in the file or its sidecar; Minari's or D4RL's
    ``ref_min_score`` / ``ref_max_score`` kept by the converters), else D4RL's table for a
    D4RL dataset name."""
    from tianshou_offline.data.reference import stored_reference_scores

    stored = stored_reference_scores(path)
    if stored is not None:
        return stored
    if dataset_id:
        from tianshou_offline.converters.d4rl_scores import find_dataset_info

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
        if path.is_dir() or _MINARI_ID.match(spec):  # a local Minari dataset, or its id
            path = _convert("minari", spec, Path(data_dir) / "minari")
        elif _D4RL_NAME.match(spec):
            path = _convert("d4rl", spec, Path(data_dir) / "d4rl")
        else:
            raise SourceNotFoundError(
                f"{spec}: no such file, and not a D4RL name (e.g. halfcheetah-expert-v2) or a "
                "Minari id (e.g. mujoco/halfcheetah/expert-v0) (--expert-data-task)"
            )
    meta = read_metadata(path)
    buffer = None if metadata_only else load_buffer(path)
    if buffer is not None and buffer_size is not None and buffer_size < len(buffer):
        from tianshou_offline.data.columns import buffer_from_columns

        batch = buffer[np.arange(buffer_size)]
        buffer = buffer_from_columns(
            {k: batch[k] for k in ("obs", "act", "rew", "terminated", "truncated", "obs_next")}
        )
    dataset_id = meta.provenance.dataset_id if meta.provenance else None
    dataset_id = dataset_id or (spec if not Path(spec).is_file() else None)
    env_id = meta.env_id
    if env_id is None and dataset_id and _D4RL_NAME.match(dataset_id):
        env_id = D4RL_ENV_IDS.get(dataset_id.split("-")[0])
    return Dataset(
        buffer=buffer,
        path=path,
        env_id=env_id,
        dataset_id=dataset_id,
        observation_space=meta.observation_space,
        action_space=meta.action_space,
        ref_scores=_ref_scores(path, dataset_id),
    )


def make_env(config: MujocoConfig, dataset: Dataset | None) -> gym.Env[Any, Any]:
    """The evaluation environment (``--task``, else the env id stored with the data; written
    back to ``config.task``), checked against the data: continuous observations and actions
    of the data's sizes.

    :raises SourceNotFoundError: no env id, or gymnasium does not know it.
    :raises MissingDependencyError: the env needs a package that is not installed (MuJoCo).
    :raises DataValidationError: discrete spaces, or sizes that do not match the data.
    """
    task = config.task or (dataset.env_id if dataset else None)
    if task is None:
        where = f"{dataset.path} does not name its environment" if dataset else "no data"
        raise SourceNotFoundError(f"{where}; pass --task (a gymnasium env id)")
    if dataset is not None:
        _check_continuous(f"{dataset.path}: the data's", dataset.action_space)
    try:
        env = gym.make(task)
    except gym.error.DependencyNotInstalled as e:
        raise MissingDependencyError(f"--task {task}: {' '.join(str(e).split())}") from e
    except (gym.error.UnregisteredEnv, gym.error.DeprecatedEnv) as e:
        raise SourceNotFoundError(
            f"--task {task}: not a gymnasium env id ({' '.join(str(e).split())})"
        ) from e
    config.task = task
    _check_continuous(f"--task {task}:", env.action_space)
    _check_continuous(f"--task {task}:", env.observation_space, what="observations")
    if dataset is not None:
        _check_sizes(dataset, env, task)
    return env


def _check_continuous(where: str, space: gym.Space[Any] | None, *, what: str = "actions") -> None:
    if space is None or isinstance(space, gym.spaces.Box):
        return
    raise DataValidationError(
        f"{where} {what} are {space}; these examples need continuous (Box) {what} "
        "(for discrete data see examples/atari or tianshou_offline.algorithms' Discrete*)"
    )


def _check_sizes(dataset: Dataset, env: gym.Env[Any, Any], task: str) -> None:
    """The data's observation and action sizes against the env's (before networks are
    built from the env's)."""
    assert env.observation_space.shape is not None and env.action_space.shape is not None
    expected = {
        "observations": int(np.prod(env.observation_space.shape)),
        "actions": int(np.prod(env.action_space.shape)),
    }
    found: dict[str, tuple[int, ...]] = {}
    if dataset.buffer is not None and len(dataset.buffer) > 0:
        first = dataset.buffer[np.array([0])]
        found["observations"] = tuple(np.asarray(first.obs).shape[1:])
        found["actions"] = tuple(np.asarray(first.act).shape[1:])
    else:  # --watch: only the metadata was read
        for what, space in (
            ("observations", dataset.observation_space),
            ("actions", dataset.action_space),
        ):
            if isinstance(space, gym.spaces.Box):
                found[what] = tuple(space.shape)
    if dataset.buffer is not None:
        act = np.asarray(dataset.buffer.act[: min(len(dataset.buffer), 1)])
        if act.dtype.kind in "iub":
            raise DataValidationError(
                f"{dataset.path}: actions are {act.dtype} (discrete); these examples need "
                "continuous actions (for discrete data see examples/atari)"
            )
    for what, shape in found.items():
        size = int(np.prod(shape)) if shape else 1
        if size != expected[what]:
            raise DataValidationError(
                f"{dataset.path}: {what} have {size} values (shape {shape}); {task}'s have "
                f"{expected[what]} (another environment? pass the right --task)"
            )


# --------------------------------------------------------------------------- training


def normalized_score(mean_return: float, ref: tuple[float, float] | None) -> float | None:
    """D4RL's normalised score: ``100 · (R − R_random) / (R_expert − R_random)``."""
    if ref is None:
        return None
    lo, hi = ref
    return 100.0 * (mean_return - lo) / (hi - lo)


@holding  # the run directory's lock, held to the end
def train_and_evaluate(
    held: ExitStack,
    config: MujocoConfig,
    algo_name: str,
    dataset: Dataset | None,
    algorithm: OfflineAlgorithmCore[Any, Any, Any, Any],
    env: gym.Env[Any, Any],
    *,
    wrap_env: Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None = None,
    save_policy: Callable[[Path, Any], None] | None = None,
) -> dict[str, Any]:
    """Train (unless ``--watch``), then evaluate the best policy; returns the final results.

    :param wrap_env: applied to every evaluation environment (the Decision Transformer's
        ``RewardInInfo``).
    :param save_policy: writes the best policy to ``policy.pt`` (default: a replayable policy
        checkpoint, :func:`~tianshou_offline.recording.policies.save_policy_checkpoint`).
    :raises DatasetFormatError: ``--resume-path`` is not a checkpoint.
    :raises DataValidationError: the checkpoint's networks differ from this run's.
    """
    assert config.task is not None  # set by make_env
    task: str = config.task
    if config.resume:
        resume_latest(config, Path(config.logdir) / task / algo_name / str(config.seed))
    resume = Path(config.resume_path) if config.resume_path else None
    resumed = None
    if resume is not None and not config.watch:
        # a training checkpoint (last.pt): this run continues exactly where that one stopped
        resumed = load_training_checkpoint(resume, algorithm, device=config.device)
    if resume is not None and resumed is None:
        _load_checkpoint(algorithm, resume, config.device)

    def make_test_env() -> gym.Env[Any, Any]:
        made = gym.make(task)
        return wrap_env(made) if wrap_env is not None else made

    env_fns: Sequence[Callable[[], gym.Env[Any, Any]]] = [make_test_env] * config.test_num
    test_envs = SubprocVectorEnv(env_fns) if config.subproc_envs else DummyVectorEnv(env_fns)
    test_envs.seed(config.seed)
    test_collector = Collector[CollectStats](algorithm, test_envs)

    resume_from_log = resumed is not None or bool(
        resume and not config.watch and list(resume.parent.glob("events.out.tfevents*"))
    )
    if resume_from_log and resume is not None:
        log_path = resume.parent
    else:
        now = datetime.datetime.now().strftime("%y%m%d-%H%M%S")
        log_path = Path(config.logdir) / task / algo_name / str(config.seed) / now
    best_path, last_path = log_path / "policy.pt", log_path / "last.pt"

    def save_best_fn(algo: Any) -> None:
        if save_policy is not None:
            save_policy(best_path, algo.policy)
        else:
            save_policy_checkpoint(best_path, algo.policy)  # replays with `record --policy`

    result: dict[str, Any] = {"log_path": str(log_path)}
    logger: BaseLogger | None = None
    if not config.watch:
        if dataset is None or dataset.buffer is None:
            raise SourceNotFoundError("no dataset to train on (--expert-data-task)")
        # data, env and checkpoint are checked: only now the run's directory is made, and
        # held: a second run into it (a second --resume) fails here, writing nothing
        lock_run_directory(held, log_path)
        write_args(config, log_path)
        logger = example_logger(config, log_path, task=task, algo_name=algo_name)
        if resume_from_log and resumed is None and not isinstance(logger, TensorboardLogger):
            resume_from_log = False  # only TensorBoard's events say where a run stopped
        progress_logger, show_progress = training_progress(
            logger,
            enabled=bool(config.show_progress),
            total_steps=config.epoch * config.step_per_epoch,
            desc=f"{algo_name} on {task}",
        )
        run = run_training(  # last.pt at each epoch's end: everything a resumed run needs
            algorithm,
            OfflineTrainerParams(
                buffer=dataset.buffer,
                test_collector=test_collector,
                max_epochs=config.epoch,
                epoch_num_steps=config.step_per_epoch,
                test_step_num_episodes=config.test_num,
                batch_size=config.batch_size,
                save_best_fn=save_best_fn,
                # every test on the same seeded initial states (a resumed run repeats them)
                test_fn=reseeding_tests(test_collector, test_envs, config.seed),
                # from TensorBoard's records (a training checkpoint: run_training resumes)
                resume_from_log=resume_from_log and resumed is None,
                logger=progress_logger,
                show_progress=show_progress,
                verbose=False,  # the epoch lines reach stderr through logging (setup)
            ),
            last_path,
            resumed=resumed,
        )
        info = run.info
        if not last_path.exists():
            save_training_checkpoint(
                last_path, algorithm, epoch=config.epoch, env_step=info.train_step,
                gradient_step=info.update_step,
            )  # fmt: skip
        result["best_reward"] = info.best_reward
        result["gradient_steps"] = info.update_step
        result["test_returns"] = run.test_returns
        log.info("training done: best test return %.2f", info.best_reward)
        if best_path.exists():
            best = torch.load(best_path, map_location=config.device, weights_only=True)
            algorithm.policy.load_state_dict(_policy_weights(best))

    test_envs.seed(config.seed)
    test_collector.reset()
    stats = test_collector.collect(n_episode=config.test_num)
    assert stats.returns_stat is not None
    mean, std = float(stats.returns_stat.mean), float(stats.returns_stat.std)
    score = normalized_score(mean, dataset.ref_scores if dataset else None)
    result.update(final_return_mean=mean, final_return_std=std, normalized_score=score)
    line = f"Final reward: {mean:.2f} ± {std:.2f} over {config.test_num} episodes"
    if score is not None:
        line += f", D4RL normalised score {score:.1f}"
    print(line, flush=True)
    log_summary(logger, {"eval/return_mean": mean, "eval/return_std": std,
                         "eval/normalized_score": score, "eval/episodes": config.test_num})  # fmt: skip
    if config.render > 0:
        render_env = gym.make(task, render_mode="human")
        if wrap_env is not None:
            render_env = wrap_env(render_env)
        Collector[CollectStats](algorithm, render_env).collect(n_episode=1, render=config.render)
    if not config.watch:
        print(f"checkpoints: {best_path} (policy), {last_path} (algorithm)", flush=True)
        if best_path.exists() and save_policy is None:
            print(
                f"replay the policy: tianshou-offline record --env {task} --policy {best_path} "
                "--episodes 10 -o replay.hdf5",
                flush=True,
            )
    return result


def resume_latest(config: MujocoConfig, runs: Path) -> None:
    """``--resume``: ``--resume-path`` becomes the newest run's ``last.pt`` under ``runs``
    (``logdir/TASK/ALGO/SEED``); without one a new run starts."""
    found = latest_checkpoint(runs, "last.pt")
    if found is None:
        log.info("--resume: no earlier run in %s; a new run starts", runs)
        return
    log.info("--resume: continuing %s", found)
    config.resume_path = str(found)


def _load_checkpoint(
    algorithm: OfflineAlgorithmCore[Any, Any, Any, Any], path: Path, device: str
) -> None:
    """A policy checkpoint (``policy.pt``) or ``policy*.pt``: the policy's weights; anything
    else: the algorithm's state."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a text file, a truncated or pickled (non-weights) file
        raise DatasetFormatError(
            f"{path}: not a weights checkpoint written by torch.save "
            f"({type(e).__name__}: {' '.join(str(e).split())[:80]}…)"
        ) from e
    if isinstance(state, dict) and state.get("format") == TRAINING_FORMAT:
        state = state["algorithm"]  # a training checkpoint's weights (--watch, fine-tuning)
    is_policy = isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT
    try:
        if is_policy or path.name.startswith("policy"):
            algorithm.policy.load_state_dict(_policy_weights(state))
        else:
            algorithm.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        raise DataValidationError(
            f"{path}: the checkpoint does not fit this script's networks (other "
            f"--hidden-sizes or algorithm?): {' '.join(str(e).split())[:300]}"
        ) from e
    log.info("loaded %s", path)


def _policy_weights(state: Any) -> Any:
    """A policy checkpoint's ``state_dict`` (``policy.pt`` as written by this module), or
    ``state`` itself (a bare ``state_dict``, as earlier versions wrote)."""
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        return state.get("state_dict")
    return state


def setup(config: MujocoConfig) -> Dataset | None:
    """Threads, seeds, logging and the dataset (metadata only with ``--watch``).

    :raises TianshouOfflineError: missing data, checkpoint or D4RL/Minari dataset; a file
        that is not a buffer.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if config.threads:
        torch.set_num_threads(config.threads)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.resume_path and not Path(config.resume_path).is_file():
        raise SourceNotFoundError(f"{config.resume_path}: no such checkpoint (--resume-path)")
    try:
        return load_dataset(
            config.expert_data_task,
            config.data_dir,
            config.buffer_size,
            metadata_only=config.watch,
        )
    except SourceNotFoundError:
        if config.watch and config.task:
            return None
        raise


def build_algorithm(
    config: MujocoConfig, env: gym.Env[Any, Any]
) -> OfflineAlgorithmCore[Any, Any, Any, Any]:
    """The algorithm of the script's flags (its ``*Config`` at the ``mujoco`` preset, with
    the flags applied) for ``env``'s spaces, on ``--device``."""
    algorithm = config.build_algorithm(env.observation_space, env.action_space)
    assert isinstance(algorithm, OfflineAlgorithmCore)
    return algorithm
