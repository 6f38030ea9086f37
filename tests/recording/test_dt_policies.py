"""Replayable Decision Transformer checkpoints (``recording.dt_policies``): a saved policy is
rebuilt without the training code — target return, context length, return scale and
observation statistics travel with it — and acts exactly as the policy that was saved; it
replays step by step (``record --policy``), exports to TorchScript and ONNX graphs of its
context, is refused by the off-policy estimators with a reason, and a grid cell trains,
evaluates and saves one.

Each comparison is against the saved policy object acting as Tianshou's ``Collector`` drives
it (``policy(Batch(obs, info=Batch(reward)), state)``, the state emptied at an episode's
end), on the same observations and rewards: a checkpoint that dropped the target return, the
context length or the normaliser's statistics would act differently.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.data import Batch

import tianshou_offline.algorithms as A
from tianshou_offline.cli import main as cli_main
from tianshou_offline.deploy import FORMATS, ExportFormat, export_policy
from tianshou_offline.errors import DatasetFormatError, DataValidationError
from tianshou_offline.recording.dt_policies import ReturnConditionedActFn, load_dt_policy
from tianshou_offline.recording.policies import (
    load_continuous_policy,
    load_discrete_policy,
    load_policy_checkpoint,
    save_policy_checkpoint,
)

PENDULUM = gym.make("Pendulum-v1")
CARTPOLE = gym.make("CartPole-v1")
FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
K = 4
JIT_LOAD: Any = torch.jit.load  # untyped in torch's stubs


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def dt_policy(kind: str, *, sample: bool = False) -> A.ContinuousDTPolicy | A.DiscreteDTPolicy:
    """A small untrained policy with a target return, context and scale unlike the
    configs' defaults (and, continuous, fitted observation statistics)."""
    torch.manual_seed(0)
    obs_space = {"continuous": PENDULUM.observation_space, "discrete": CARTPOLE.observation_space,
                 "frames": FRAMES}[kind]  # fmt: skip
    discrete = kind != "continuous"
    model = A.DecisionTransformerNet(
        state_encoder=A.state_encoder(obs_space, 16), act_dim=6 if kind == "frames" else
        2 if discrete else 1, discrete=discrete, hidden=16, layers=1, heads=2, context=K,
        max_timestep=50, dropout=0.1,
    )  # fmt: skip
    if not discrete:
        policy = A.ContinuousDTPolicy(
            model=model, action_space=PENDULUM.action_space, observation_space=obs_space,
            target_return=-321.0, rtg_scale=150.0, normalize_obs=True,
        )  # fmt: skip
        rng = np.random.default_rng(0)
        policy.obs_normalizer.fit(rng.normal(1.0, 3.0, size=(64, 3)).astype(np.float32))
        return policy.eval()
    return A.DiscreteDTPolicy(
        model=model, action_space=gym.spaces.Discrete(6 if kind == "frames" else 2),
        observation_space=obs_space, target_return=37.0, rtg_scale=10.0, sample_actions=sample,
    ).eval()  # fmt: skip


def observations(kind: str, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "frames":
        return rng.integers(0, 256, size=(n, *FRAMES.shape), dtype=np.uint8)
    return rng.normal(size=(n, 3 if kind == "continuous" else 4)).astype(np.float32)


def rollout(policy: Any, obs: np.ndarray, rewards: np.ndarray, ends: set[int]) -> tuple[
    list[np.ndarray], list[Any]
]:  # fmt: skip
    """Actions (the policy's own range) and states, one environment, as the Collector drives
    it: the reward of the previous step in ``info``, the state emptied after steps in
    ``ends``."""
    state: Any = None
    acts, states = [], []
    for t in range(len(obs)):
        info = Batch(reward=np.array([0.0 if t == 0 or t - 1 in ends else rewards[t - 1]]))
        out = policy(Batch(obs=obs[t : t + 1], info=info), state)
        state = out.state
        acts.append(np.asarray(out.act).copy())
        states.append(Batch(state, copy=True))
        if t in ends:
            state.empty_(np.array([0]))
    return acts, states


@pytest.mark.parametrize("kind", ["continuous", "discrete", "frames"])
def test_checkpoint_rebuilds_the_policy_that_acts_the_same(kind: str, tmp_path: Path) -> None:
    policy = dt_policy(kind)
    path = save_policy_checkpoint(tmp_path / "dt.pt", policy)
    loaded = load_dt_policy(path, observation_space=policy.observation_space,
                            action_space=policy.action_space)  # fmt: skip
    assert type(loaded) is type(policy) and not loaded.training
    assert (loaded.target_return, loaded.rtg_scale) == (policy.target_return, policy.rtg_scale)
    assert loaded.model.sizes == policy.model.sizes and loaded.model.context == K
    for (name, ours), theirs in zip(loaded.state_dict().items(), policy.state_dict().values(),
                                    strict=True):  # fmt: skip
        torch.testing.assert_close(ours, theirs, msg=name)
    n = 9
    obs, rewards = observations(kind, n), np.random.default_rng(2).normal(size=n)
    expected, _ = rollout(policy, obs, rewards, ends={5})
    got, _ = rollout(loaded, obs, rewards, ends={5})
    for t, (a, b) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"step {t}")
    # another target return can be asked for at load time: the actions follow it
    other = load_dt_policy(path, target_return=policy.target_return + 500.0)
    assert other.target_return == policy.target_return + 500.0
    if kind == "continuous":
        moved, _ = rollout(other, obs, rewards, ends={5})
        assert not np.allclose(np.concatenate(moved), np.concatenate(expected))


@pytest.fixture(scope="module")
def pendulum_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three random-action Pendulum episodes of 20 steps."""
    data = tmp_path_factory.mktemp("dt_data") / "pendulum-random.hdf5"
    assert cli_main(["record", "--env", "Pendulum-v1", "--policy", "random", "--episodes", "3",
                     "--max-episode-steps", "20", "--seed", "0", "-o", str(data)]) == 0  # fmt: skip
    return data


def test_the_loaders_of_markov_policies_refuse_it_with_the_reason(
    tmp_path: Path, pendulum_data: Path
) -> None:
    path = save_policy_checkpoint(tmp_path / "dt.pt", dt_policy("continuous"))
    for load in (load_continuous_policy, load_discrete_policy):
        with pytest.raises(DatasetFormatError, match="decision_transformer.*Markov policy"):
            load(path)
    assert cli_main(["evaluate", str(path), "--ope", "wis", "--data", str(pendulum_data)]) == 2


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_record_replays_it_step_by_step(kind: str, tmp_path: Path) -> None:
    """``record --policy dt.pt``: the recorded actions are the saved policy's on the recorded
    observations, the context restarting at each episode and lowered by each reward."""
    from tianshou_offline import load_buffer

    policy = dt_policy(kind)
    path = save_policy_checkpoint(tmp_path / "dt.pt", policy)
    out = tmp_path / "rec.hdf5"
    env = "Pendulum-v1" if kind == "continuous" else "CartPole-v1"
    assert cli_main(["record", "--env", env, "--policy", str(path), "--episodes", "2",
                     "--max-episode-steps", "7", "--seed", "3", "-o", str(out)]) == 0  # fmt: skip
    buf = load_buffer(out)
    n = len(buf)
    done = np.flatnonzero(np.asarray(buf.done[:n]))
    assert len(done) == 2
    acts, _ = rollout(policy, np.asarray(buf.obs[:n]), np.asarray(buf.rew[:n]), ends={int(done[0])})
    expected = np.concatenate(acts)
    if kind == "continuous":
        expected = policy.map_action(expected)
    np.testing.assert_allclose(np.asarray(buf.act[:n]).reshape(expected.shape), expected,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    fn = load_policy_checkpoint(path)
    assert isinstance(fn, ReturnConditionedActFn)
    with pytest.raises(DataValidationError, match="start_episode"):
        fn(buf.obs[0])
    fn.start_episode()
    fn(buf.obs[0])
    with pytest.raises(DataValidationError, match="observe"):
        fn(buf.obs[1])


@pytest.mark.parametrize("kind", ["continuous", "frames"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_acts_on_the_context(kind: str, fmt: ExportFormat, tmp_path: Path) -> None:
    """The exported graph maps a context (raw observations, the actions taken in the env's
    units, returns-to-go in reward units, timesteps, mask) to the policy's next action in the
    env's units; the file's metadata carries the context length, target return and scale.
    A sampling discrete policy exports only its deterministic form, when asked."""
    ort = pytest.importorskip("onnxruntime")
    policy = dt_policy(kind, sample=kind == "frames")
    path = save_policy_checkpoint(tmp_path / "dt.pt", policy)
    out = tmp_path / ("dt.onnx" if fmt == "onnx" else "dt.ts")
    if kind == "frames":
        with pytest.raises(DataValidationError, match="deterministic"):
            export_policy(path, out, format=fmt)
        policy.sample_actions = False  # the deterministic form: the most likely action
    result = export_policy(path, out, format=fmt, deterministic=True)
    meta = result.metadata["decision_transformer"]
    assert meta == {"context": K, "target_return": policy.target_return,
                    "rtg_scale": policy.rtg_scale}  # fmt: skip
    n = 7
    obs, rewards = observations(kind, n), np.random.default_rng(2).normal(size=n)
    acts, states = rollout(policy, obs, rewards, ends=set())
    for t in (1, 6):  # a padded context and a full one
        s = states[t]
        mask = np.arange(K)[None] >= (K - np.asarray(s.length))[:, None]
        act_in = policy.map_action(s.act) if kind == "continuous" else s.act
        inputs = {"obs": s.obs, "actions": np.asarray(act_in, dtype=s.act.dtype),
                  "rtg": (s.rtg * policy.rtg_scale).astype(np.float32), "timesteps": s.t,
                  "mask": mask}  # fmt: skip
        expected = policy.map_action(acts[t]) if kind == "continuous" else acts[t]
        if fmt == "onnx":
            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            (got,) = session.run(None, inputs)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                graph = JIT_LOAD(str(out))
            got = graph(*(torch.as_tensor(v) for v in inputs.values())).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"step {t}")


def test_a_grid_cell_trains_and_saves_a_replayable_dt(pendulum_data: Path, tmp_path: Path) -> None:
    """``tianshou-offline grid`` offers ``dt``: a cell trains it, evaluates it conditioned on
    the dataset's best episode return (no ``target_return`` override) with rewards reported
    to the policy, and saves a checkpoint that conditions on the same return."""
    import tianshou_offline.scale.grid as sg
    from tianshou_offline.data.stats import episode_table
    from tianshou_offline.scale.algorithms import algorithm_names

    assert "dt" in algorithm_names(PENDULUM.action_space)
    assert "dt" in algorithm_names(CARTPOLE.action_space)
    data = pendulum_data
    budget = sg.Budget(epochs=1, steps_per_epoch=3, batch_size=8, test_episodes=1,
                       eval_episodes=1)  # fmt: skip
    cell = sg.Cell("dt", str(data), seed=0, overrides={"context": 5}, budget=budget)
    result = sg.run_cell(cell, tmp_path)
    best = float(np.max(episode_table(data).returns))
    assert result["target_return"] == pytest.approx(best)
    assert len(result["returns"]) == 1 and np.isfinite(result["final_return_mean"])
    loaded = load_dt_policy(Path(result["dir"]) / "policy.pt")
    assert loaded.target_return == pytest.approx(best) and loaded.model.context == 5
