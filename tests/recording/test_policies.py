"""Policy checkpoints (``tianshou_offline.recording.policies``): every policy the package saves
replays with ``tianshou-offline record --policy FILE``; a checkpoint made for another env, a
typo, a text file or ``--policy scripted`` off CartPole is one ``error:`` line (exit code 2)
and leaves no output file.

Round trips run against the real gymnasium envs (Pendulum-v1, CartPole-v1): the loaded
policy acts exactly as the saved one (its deterministic action, scaled to the env's
bounds), and ``record`` writes episodes with it.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.helpers.examples import folder_on_path
from tests.helpers.pendulum import SHORT_TASK
from tianshou_offline import EpisodeRecorder, load_buffer
from tianshou_offline.algorithms import (
    VAE,
    BCQPolicy,
    ContinuousPolicy,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    Perturbation,
)
from tianshou_offline.cli import main as cli_main
from tianshou_offline.errors import DatasetFormatError, DataValidationError, SourceNotFoundError
from tianshou_offline.recording.policies import (
    CHECKPOINT_FORMAT,
    load_policy_checkpoint,
    make_policy,
    read_policy_state_dict,
    save_policy_checkpoint,
)

ROOT = Path(__file__).resolve().parents[2]
PENDULUM = gym.make("Pendulum-v1")
OBS, ACT = PENDULUM.observation_space, PENDULUM.action_space


def _deterministic() -> ContinuousPolicy:
    policy = DeterministicPolicy(
        actor=DeterministicActor(3, 1, (16, 8)),
        action_space=ACT,
        observation_space=OBS,
        normalize_obs=True,
    )
    policy.obs_normalizer.fit(np.random.default_rng(0).normal(1.0, 3.0, size=(100, 3)))
    return policy


def _gaussian_squashed() -> ContinuousPolicy:  # as CQL's
    return GaussianPolicy(actor=GaussianActor(3, 1, (16,)), action_space=ACT, observation_space=OBS)


def _gaussian_clipped() -> ContinuousPolicy:  # as CRR's and Gaussian behaviour cloning's
    return GaussianPolicy(
        actor=GaussianActor(3, 1, (16, 16), conditioned_std=False, log_std_bounds=(-5.0, 1.0)),
        action_space=ACT,
        observation_space=OBS,
        squash=False,
    )


def _bcq() -> ContinuousPolicy:
    return BCQPolicy(
        vae=VAE(3, 1, (16, 16), latent_dim=3, latent_clip=0.4),
        perturbation=Perturbation(3, 1, (16,), phi=0.1),
        critics=CriticEnsemble(3, 1, (16, 16), num_critics=3),
        action_space=ACT,
        observation_space=OBS,
        num_sampled_actions=7,
        normalize_obs=True,
    )


KINDS: dict[str, Callable[[], ContinuousPolicy]] = {
    "deterministic": _deterministic,
    "gaussian-squashed": _gaussian_squashed,
    "gaussian-clipped": _gaussian_clipped,
    "bcq": _bcq,
}


def _record(env_id: str, policy: str, out: Path, *extra: str) -> int:
    return cli_main(
        ["record", "--env", env_id, "--policy", policy, "--episodes", "2", "-o", str(out), *extra]
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_continuous_policy_round_trip_and_record(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    policy = KINDS[kind]()
    path = save_policy_checkpoint(tmp_path / f"{kind}.pt", policy)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT and payload["version"] == 2
    assert payload["net"]["policy"] == type(policy).__name__
    assert payload["action_space"]["type"] == "Box" and payload["observation_space"]["shape"] == [3]

    act = make_policy(str(path), gym.make("Pendulum-v1"), seed=3)
    obs = np.asarray([OBS.sample() for _ in range(5)])
    ours = np.stack([act(o) for o in obs])
    assert ours.shape == (5, 1) and ours.dtype == np.float32
    assert np.all(ours >= -2.0) and np.all(ours <= 2.0)
    policy.eval()
    if kind == "bcq":  # stochastic candidates: reproducible by seed
        again = make_policy(str(path), gym.make("Pendulum-v1"), seed=3)
        np.testing.assert_array_equal(ours, np.stack([again(o) for o in obs]))
    else:  # the saved policy's own deterministic action, in the env's units
        theirs = np.stack([np.reshape(policy.compute_action(o), (1,)) for o in obs])
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    loaded = read_policy_state_dict(path)
    for name, tensor in policy.state_dict().items():
        torch.testing.assert_close(loaded[name], tensor)

    out = tmp_path / "replay.hdf5"
    assert _record("Pendulum-v1", str(path), out, "--seed", "1") == 0
    buffer = load_buffer(out)
    assert len(buffer) == 400
    if kind != "bcq":  # the recorded actions are the policy's actions on the recorded obs
        expected = np.stack([np.reshape(policy.compute_action(o), (1,)) for o in buffer.obs[:20]])
        np.testing.assert_allclose(np.asarray(buffer.act[:20]), expected, atol=1e-6)


def test_mlp_checkpoint_round_trip_on_cartpole(tmp_path: Path) -> None:
    from tianshou.utils.net.common import Net

    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    net = Net(state_shape=4, action_shape=2, hidden_sizes=[16])
    path = save_policy_checkpoint(
        tmp_path / "mlp.pt",
        net,
        state_shape=(4,),
        action_space=env.action_space,
        hidden_sizes=[16],
        observation_space=env.observation_space,
    )
    assert torch.load(path, weights_only=True)["version"] == 1  # older readers load it
    act = make_policy(str(path), env)
    obs = env.observation_space.sample()
    with torch.no_grad():
        expected = int(net(torch.as_tensor(obs[None]))[0].argmax().item())
    assert act(obs) == expected
    out = tmp_path / "replay.hdf5"
    assert _record("CartPole-v1", str(path), out) == 0
    assert load_buffer(out).act.dtype.kind in "iu"


def test_old_mlp_checkpoints_still_load(tmp_path: Path) -> None:
    """Version 1 as the first releases wrote it: no spaces, the discrete action size only in
    ``net.action_shape``."""
    from tianshou.utils.net.common import Net

    net = Net(state_shape=(4,), action_shape=2, hidden_sizes=(8,))
    path = tmp_path / "old.pt"
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "net": {"type": "mlp", "state_shape": [4], "action_shape": 2, "hidden_sizes": [8]},
            "action": {"type": "discrete"},
            "state_dict": net.state_dict(),
        },
        path,
    )
    assert make_policy(str(path), gym.make("CartPole-v1"))(np.zeros(4, np.float32)) in (0, 1)
    with pytest.raises(DataValidationError, match="'net.state_shape' has shape"):
        make_policy(str(path), gym.make("Pendulum-v1"))


def test_spaces_are_checked_before_acting(tmp_path: Path) -> None:
    path = save_policy_checkpoint(tmp_path / "det.pt", _deterministic())
    with pytest.raises(
        DataValidationError,
        match=r"'observation_space' has shape \(3,\); expected shape \(4,\) \(CartPole-v1's",
    ):
        make_policy(str(path), gym.make("CartPole-v1"))
    bounds = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    with pytest.raises(DataValidationError, match="'action_space'.*other action bounds"):
        load_policy_checkpoint(path, observation_space=OBS, action_space=bounds)
    with pytest.raises(SourceNotFoundError, match="'random', 'scripted'"):
        make_policy(str(tmp_path / "typo.pt"), PENDULUM)
    with pytest.raises(DataValidationError, match="scripted"):
        make_policy("scripted", PENDULUM)
    bare = tmp_path / "bare.pt"
    torch.save(_deterministic().state_dict(), bare)
    with pytest.raises(DatasetFormatError, match="bare policy state_dict"):
        make_policy(str(bare), PENDULUM)
    assert set(read_policy_state_dict(bare)) == set(_deterministic().state_dict())


# ------------------------------------------------------------------- bad input, real processes


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tianshou_offline.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def bad_policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tianshou.utils.net.common import Net

    d = tmp_path_factory.mktemp("policies")
    cartpole = gym.make("CartPole-v1")
    save_policy_checkpoint(
        d / "bc_policy.pt",
        Net(state_shape=4, action_shape=2, hidden_sizes=[8]),
        state_shape=(4,),
        action_space=cartpole.action_space,
        hidden_sizes=[8],
    )
    save_policy_checkpoint(d / "td3bc_policy.pt", _deterministic())
    (d / "notes.txt").write_text("these are my notes, not a policy\n")
    torch.save({"env": PENDULUM}, d / "pickled.pt")
    return d


BAD = {
    # id: (env, --policy, fragments of the error line)
    "cartpole-policy-on-pendulum": (
        "Pendulum-v1", "bc_policy.pt",
        ["bc_policy.pt", "'net.state_shape'", "(4,)", "(3,)", "Pendulum-v1"],
    ),
    "pendulum-policy-on-cartpole": (
        "CartPole-v1", "td3bc_policy.pt",
        ["td3bc_policy.pt", "'observation_space'", "(3,)", "(4,)", "CartPole-v1"],
    ),
    "typo": ("CartPole-v1", "bc_polcy.pt", ["bc_polcy.pt", "'random'", "'scripted'", "checkpoint"]),
    "text-file": ("CartPole-v1", "notes.txt", ["notes.txt", "weights-only", "text"]),
    "pickled": ("Pendulum-v1", "pickled.pt", ["pickled.pt", "pickled objects"]),
    "scripted-off-cartpole": ("Pendulum-v1", "scripted", ["scripted", "Pendulum-v1"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_policy_is_one_error_line(case: str, bad_policies: Path, tmp_path: Path) -> None:
    env_id, policy, fragments = BAD[case]
    spec = policy if policy == "scripted" else str(bad_policies / policy)
    out = tmp_path / "out.hdf5"
    p = _cli("record", "--env", env_id, "--policy", spec, "--episodes", "1", "-o", str(out),
             cwd=tmp_path)  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), p.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert sorted(x.name for x in tmp_path.iterdir()) == [], "left behind"


def test_continuous_checkpoint_replays_in_a_real_process(
    bad_policies: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.hdf5"
    p = _cli("record", "--env", "Pendulum-v1", "--policy", str(bad_policies / "td3bc_policy.pt"),
             "--episodes", "1", "-o", str(out), cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "recorded 1 episodes, 200 steps" in p.stdout and len(load_buffer(out)) == 200


# ------------------------------------------------------------------- the MuJoCo examples' policy.pt


@pytest.fixture
def mujoco_examples() -> Iterator[None]:
    with folder_on_path(ROOT / "examples" / "mujoco"):
        yield


@pytest.fixture(scope="module")
def pendulum_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pendulum.hdf5"
    env = EpisodeRecorder(gym.make("Pendulum-v1"), path)
    env.action_space.seed(0)
    for i in range(2):
        env.reset(seed=i)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()
    return path


@pytest.mark.parametrize("example", ["d4rl_il", "d4rl_bcq", "d4rl_cql", "d4rl_crr", "d4rl_td3_bc"])
def test_mujoco_example_policy_replays(
    example: str,
    pendulum_data: Path,
    tmp_path: Path,
    mujoco_examples: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module: Any = importlib.import_module(example)
    argv = [
        "--expert-data-task", str(pendulum_data), "--epoch", "1", "--step-per-epoch", "10",
        "--task", SHORT_TASK,  # Pendulum in 20-step episodes: short tests and evaluations
        "--batch-size", "32", "--hidden-sizes", "16", "16", "--test-num", "1",
        "--logdir", str(tmp_path / "log"), "--logger", "none", "--show-progress", "0",
    ]  # fmt: skip
    if example == "d4rl_bcq":
        argv += ["--vae-hidden-sizes", "16", "16", "--num-candidate-actions", "5"]
    if example == "d4rl_il":
        argv += ["--actor", "gaussian"]
    result = module.main(argv)
    policy_pt = Path(result["log_path"]) / "policy.pt"
    printed = capsys.readouterr().out
    assert f"--policy {policy_pt}" in printed  # the run says which file replays
    out = tmp_path / "replay.hdf5"
    assert _record("Pendulum-v1", str(policy_pt), out) == 0
    assert len(load_buffer(out)) == 400
    watched = module.main([*argv, "--watch", "--resume-path", str(policy_pt)])
    assert np.isfinite(watched["final_return_mean"])
