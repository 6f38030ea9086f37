"""The Atari workflow end to end: gymnasium preprocessing, compact recording with
``tianshou-offline record``, every ``examples/atari/atari_*.py`` on a recorded Pong buffer
(a few updates, one short evaluation episode per test), Tianshou's own saved buffers and
checkpoints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")

from tianshou.data import Batch, Collector, CollectStats, VectorReplayBuffer

from tests.helpers.examples import import_example
from tianshou_offline import load_buffer
from tianshou_offline.algorithms import (
    AtariTrunk,
    FrameDataset,
    QuantileQNet,
    QValuePolicy,
)
from tianshou_offline.cli import main as cli_main
from tianshou_offline.recording.atari import (
    compact_recorder,
    is_atari_env_id,
    make_atari_env,
    make_atari_vector_env,
)
from tianshou_offline.recording.policies import make_policy, save_atari_checkpoint

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "atari"
TASK = "PongNoFrameskip-v4"
RECORD_STEPS = 3000


@pytest.fixture(scope="session")
def pong_buffer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few thousand recorded Pong steps (random policy), written by the CLI compactly."""
    path = tmp_path_factory.mktemp("pong") / "pong.hdf5"
    code = cli_main(
        [
            "record",
            "--env",
            TASK,
            "--policy",
            "random",
            "--steps",
            str(RECORD_STEPS),
            "--max-episode-steps",
            "1000",
            "--seed",
            "3",
            "-o",
            str(path),
        ]
    )
    assert code == 0
    return path


def test_env_factory() -> None:
    assert is_atari_env_id(TASK) and is_atari_env_id("ALE/Breakout-v5")
    assert not is_atari_env_id("CartPole-v1")
    env = make_atari_env("ALE/Pong-v5", seed=0, max_episode_steps=10)
    assert env.observation_space.shape == (4, 84, 84)
    assert env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and (obs[0] == obs[3]).all()  # first frame repeated
    for _ in range(10):
        obs, _, terminated, truncated, _ = env.step(0)
    assert truncated and not terminated  # the limit counts agent steps
    with pytest.raises(ValueError, match="not an ale-py"):
        make_atari_env("CartPole-v1")


def test_compact_recording_rebuilds_exact_stacks(tmp_path: Path) -> None:
    env = make_atari_env(TASK, max_episode_steps=120)
    rec = compact_recorder(env, tmp_path / "pong.hdf5")
    stacks = []
    for episode in range(2):
        obs, _ = rec.reset(seed=episode)
        stacks.append(obs)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = rec.step(rec.action_space.sample())
            stacks.append(obs)
            done = terminated or truncated
        stacks.pop()  # the final observation is not stored (obs_next is rebuilt)
    rec.close()
    buf = load_buffer(tmp_path / "pong.hdf5")
    assert buf.stack_num == 4 and buf._meta.obs.shape == (240, 84, 84)  # one frame per step
    batch = buf[np.arange(len(buf))]
    np.testing.assert_array_equal(batch.obs, np.stack(stacks))
    # obs_next = the next stack inside an episode
    np.testing.assert_array_equal(batch.obs_next[:119], np.stack(stacks[1:120]))
    dataset = FrameDataset.from_buffer(buf)
    got = dataset.gather(torch.arange(len(buf)))
    np.testing.assert_array_equal(got.obs.numpy(), batch.obs)
    np.testing.assert_array_equal(got.obs_next.numpy(), batch.obs_next)


def test_recorder_rejects_bad_compact_settings(tmp_path: Path) -> None:
    from tianshou_offline.recording import EpisodeRecorder

    env = make_atari_env(TASK, frame_stack=4)
    with pytest.raises(ValueError, match="store_obs_next=False"):
        EpisodeRecorder(env, tmp_path / "a.hdf5", stack_num=4, save_only_last_obs=True)
    with pytest.raises(ValueError, match="stack_num"):
        EpisodeRecorder(
            gym.make("CartPole-v1"),
            tmp_path / "b.hdf5",
            stack_num=4,
            save_only_last_obs=True,
            store_obs_next=False,
        )


def _example(name: str) -> Any:
    """Import ``examples/atari/<name>.py`` (its ``main(argv)`` runs the script in-process)."""
    return import_example(EXAMPLES, name)


def _main_in_process(
    script: str, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run an example's ``main`` in this process as its ``__main__`` block does: returns
    (exit code, stdout, stderr)."""
    from tianshou_offline.errors import TianshouOfflineError

    code = 0
    try:
        _example(script).main(list(args))
    except SystemExit as e:  # argparse
        code = int(e.code or 0)
    except TianshouOfflineError as e:  # run_example prints this and exits 2
        print(f"error: {e}", file=sys.stderr)
        code = 2
    out, err = capsys.readouterr()
    return code, out, err


def _run_example(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


SHORT_RUN = (
    "--epoch",
    "1",
    "--update_per_epoch",  # the underscore spelling
    "10",
    "--test-num",
    "1",
    "--max-episode-steps",
    "60",
    "--threads",
    "1",
)
"""A smoke-sized run (10 updates, evaluation episodes cut at 60 steps): these tests check that
each example trains, evaluates, checkpoints and resumes, not what it learns."""


@pytest.mark.parametrize("algo", ["il", "bcq", "cql", "crr"])
def test_example_runs_on_recorded_pong(
    algo: str, pong_buffer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each example trains on the recorded buffer, evaluates, writes its checkpoints, resumes
    the best one with ``--watch``, and its actor records new data. ``atari_il.py`` runs as a
    script in a new interpreter (its ``__main__`` block, imports and exit code); the others
    run their ``main`` in this process, as that block does, to spare an interpreter start
    (torch and Tianshou imports) each."""
    extra = {
        "bcq": ["--target-update-freq", "100"],
        "cql": ["--num_quantiles", "50", "--min-q-weight", "1"],
        "crr": ["--policy-improvement-mode", "binary"],
        "il": [],
    }[algo]
    argv = ("--task", TASK, "--load-buffer-name", str(pong_buffer), "--logdir", str(tmp_path),
            *SHORT_RUN, *extra)  # fmt: skip
    if algo == "il":
        p = _run_example(f"atari_{algo}.py", *argv)
        code, out, err = p.returncode, p.stdout, p.stderr
    else:
        code, out, err = _main_in_process(f"atari_{algo}", *argv, capsys=capsys)
    assert code == 0, out[-3000:] + err[-3000:]
    assert f"Replay buffer size: {len(load_buffer(pong_buffer))}" in out
    assert "Mean return over 1 episodes" in out
    runs = list(tmp_path.glob(f"{TASK}/{algo}/*/*"))
    assert len(runs) == 1
    for name in ("policy.pth", "last.pth", "policy_actor.pt", "last_actor.pt"):
        assert (runs[0] / name).exists(), name
    # the best checkpoint resumes (weights only) and the actor records new data
    code, out, err = _main_in_process(
        f"atari_{algo}",
        "--resume-path",
        str(runs[0] / "policy.pth"),
        "--watch",
        "--test-num",
        "1",
        "--max-episode-steps",
        "30",
        *extra,
        capsys=capsys,
    )
    assert code == 0, out[-3000:] + err[-3000:]
    assert "Loaded agent from" in out
    recorded = tmp_path / "recorded.hdf5"
    code = cli_main(
        [
            "record",
            "--env",
            TASK,
            "--policy",
            str(runs[0] / "policy_actor.pt"),
            "--eps",
            "0.2",
            "--steps",
            "30",
            "--max-episode-steps",
            "30",
            "-o",
            str(recorded),
        ]
    )
    assert code == 0
    assert len(load_buffer(recorded)) == 30


def test_dt_example_runs_on_recorded_pong(
    pong_buffer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``atari_dt.py`` at a tiny size: trains on segments of the recorded frames, evaluates
    with the return-conditioned policy (rewards through ``RewardInInfo``), writes its
    checkpoints, and ``--watch`` resumes the best one."""
    tiny = ("--context", "4", "--embed-dim", "16", "--n-layers", "1", "--n-heads", "2",
            "--batch-size", "4", "--warmup-steps", "5", "--target-return", "5")  # fmt: skip
    code, out, err = _main_in_process(
        "atari_dt",
        "--task",
        TASK,
        "--load-buffer-name",
        str(pong_buffer),
        "--logdir",
        str(tmp_path),
        *SHORT_RUN,
        *tiny,
        capsys=capsys,
    )
    assert code == 0, out[-3000:] + err[-3000:]
    assert "Mean return over 1 episodes" in out
    runs = list(tmp_path.glob(f"{TASK}/dt/*/*"))
    assert len(runs) == 1
    for name in ("policy.pth", "last.pth", "policy_actor.pt", "last_actor.pt"):
        assert (runs[0] / name).exists(), name
    code, out, err = _main_in_process(
        "atari_dt", "--resume-path", str(runs[0] / "policy.pth"), "--watch", "--test-num", "1",
        "--max-episode-steps", "30", *tiny, capsys=capsys,
    )  # fmt: skip
    assert code == 0, out[-3000:] + err[-3000:]
    assert "Loaded agent from" in out


ATARI_SCRIPTS = sorted(p.stem for p in EXAMPLES.glob("atari_*.py"))
ATARI_SMALL = {"atari_dt": ["--context", "4", "--embed-dim", "16", "--n-layers", "1",
                            "--n-heads", "2", "--warmup-steps", "5", "--target-return", "5"]}  # fmt: skip


@pytest.mark.parametrize("name", ATARI_SCRIPTS)
def test_every_atari_example_killed_midway_resumes_exactly(
    name: str, pong_buffer: Path, tmp_path: Path
) -> None:
    """Every Atari example SIGKILLed at a random gradient step of its second epoch and
    restarted with ``--resume`` ends with the weights, optimizer states and counters of an
    uninterrupted run and writes to TensorBoard what that run wrote after the checkpoint,
    value for value (timings aside), with equal test returns, best test and final
    evaluation (the test policy acts epsilon-greedily: the tests draw from numpy's
    generator). Checked to fail on the code before the resume restored the trainer's state
    and reseeded the test environments for each test (other test returns after the resume,
    the checkpoint's test logged again)."""
    import random

    from tests.helpers.resume import (
        after,
        assert_same_training,
        killed_in_fork,
        logged,
        run_in_process,
    )
    from tianshou_offline.training import read_training_checkpoint

    script = EXAMPLES / f"{name}.py"
    steps = 6
    args = ["--task", TASK, "--load-buffer-name", str(pong_buffer), "--epoch", "2",
            "--update-per-epoch", str(steps), "--batch-size", "16", "--test-num", "1",
            "--max-episode-steps", "120", "--threads", "1", "--eps-test", "0.5",
            "--logger", "tensorboard", "--log-interval", "1", "--show-progress", "0",
            *ATARI_SMALL.get(name, [])]  # fmt: skip
    straight = run_in_process(script, [*args, "--logdir", str(tmp_path / "a")])
    killed_in_fork(script, [*args, "--logdir", str(tmp_path / "b")],
                   kill_at=random.Random(name).randint(steps + 1, 2 * steps))  # fmt: skip
    (last,) = (tmp_path / "b").glob(f"{TASK}/*/*/*/last.pth")
    at_kill = read_training_checkpoint(last)
    assert at_kill is not None and at_kill["epoch"] == 1
    counters = (at_kill["epoch"], at_kill["env_step"], at_kill["gradient_step"])
    before = set(last.parent.glob("events.out.tfevents*"))
    resumed = run_in_process(script, [*args, "--logdir", str(tmp_path / "b"), "--resume"])
    (done,) = (tmp_path / "a").glob(f"{TASK}/*/*/*/last.pth")
    assert_same_training(done, last, (2, 2 * steps * 16, 2 * steps))
    (straight_events,) = done.parent.glob("events.out.tfevents*")
    (resumed_events,) = set(last.parent.glob("events.out.tfevents*")) - before
    expected = after(logged(straight_events), counters)
    assert any(tag.startswith("test/") for tag, _, _ in expected)
    assert logged(resumed_events) == expected
    assert any(ret != 0 for _, ret in straight["test_returns"])  # Pong scored: returns differ
    for key in ("test_returns", "best_reward", "final_return_mean"):
        assert resumed[key] == straight[key], key


def test_example_flags(
    pong_buffer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _main_in_process("atari_il", "--no-such-flag", "1", capsys=capsys)
    assert code == 2 and "unrecognized arguments: --no-such-flag" in err
    pkl = tmp_path / "buffer.pkl"
    pkl.write_bytes(b"not really a pickle")
    code, _, err = _main_in_process(
        "atari_il", "--load-buffer-name", str(pkl), "--test-num", "1", capsys=capsys
    )
    assert code == 2 and "--allow-pickle" in err
    code, _, err = _main_in_process(
        "atari_il",
        "--load_buffer_name",
        str(tmp_path / "missing.hdf5"),
        "--test-num",
        "1",
        capsys=capsys,
    )
    assert code == 2 and "tianshou-offline record" in err
    code, _, err = _main_in_process(
        "atari_il",
        "--task",
        "ALE/Breakout-v5",  # 4 actions, Pong data has 6
        "--load-buffer-name",
        str(pong_buffer),
        "--test-num",
        "1",
        "--logdir",
        str(tmp_path),
        capsys=capsys,
    )
    assert code == 2 and "actions span" in err
    code, _, err = _main_in_process(
        "atari_il",
        "--frames-stack",
        "2",  # the file stores stacks of 4
        "--load-buffer-name",
        str(pong_buffer),
        "--test-num",
        "1",
        "--logdir",
        str(tmp_path),
        capsys=capsys,
    )
    assert code == 2
    assert f"{pong_buffer}: stores frame stacks of stack_num=4; --frames-stack 2 was" in err


@pytest.mark.parametrize("frames_stack", ["1", "2"])
def test_record_append_with_another_frames_stack_is_refused(
    pong_buffer: Path, tmp_path: Path, frames_stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Appending to a stack_num=4 recording with another --frames-stack: one error line naming
    the file and both values, the file unchanged (before: --frames-stack 2 appended silently
    into the 4-stack file, 1 failed with "column 'obs_next' was given but the writer has
    store_obs_next=False")."""
    out = tmp_path / "pong.hdf5"
    shutil.copyfile(pong_buffer, out)
    before = out.read_bytes()
    code = cli_main(
        ["record", "--env", TASK, "--policy", "random", "--steps", "5", "--append",
         "--frames-stack", frames_stack, "-o", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {out}: stores stack_num=4 (save_only_last_obs=True); appending with " in err
    assert f"stack_num={frames_stack} " in err and "--frames-stack 4" in err
    assert out.read_bytes() == before


def test_example_reads_tianshou_saved_buffer_and_rl_unplugged_output(
    pong_buffer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a buffer as Tianshou's Atari examples collect it: VectorReplayBuffer, one frame per
    # step, saved with Tianshou's own save_hdf5
    envs = make_atari_vector_env(TASK, 2, seed=0, max_episode_steps=150)
    env = make_atari_env(TASK)
    net = QuantileQNet(AtariTrunk(4, 84, 84), 6, 8, [32])
    policy = QValuePolicy(model=net, action_space=env.action_space, eps_inference=0.5)
    buf = VectorReplayBuffer(
        600, buffer_num=2, ignore_obs_next=True, save_only_last_obs=True, stack_num=4
    )
    collector = Collector[CollectStats](policy, envs, buf, exploration_noise=True)
    collector.reset()
    collector.collect(n_step=500)
    saved = tmp_path / "tianshou_buffer.hdf5"
    buf.save_hdf5(str(saved))
    common = ("--task", TASK, "--logdir", str(tmp_path), *SHORT_RUN, "--update-per-epoch", "50")
    code, out, err = _main_in_process(
        "atari_il", "--load-buffer-name", str(saved), *common, capsys=capsys
    )
    assert code == 0, out[-3000:] + err[-3000:]
    assert "Replay buffer size: 500" in out

    import tianshou_offline.converters.rl_unplugged  # noqa: F401  (a broken import fails)

    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "run_1-00000-of-00100.hdf5").symlink_to(pong_buffer)
    code, out, err = _main_in_process(
        "atari_il",
        "--buffer_from_rl_unplugged",
        "--load-buffer-name",
        str(shards),
        *common,
        capsys=capsys,
    )
    assert code == 0, out[-3000:] + err[-3000:]
    assert f"Replay buffer size: {len(load_buffer(pong_buffer))}" in out


@pytest.mark.parametrize("quantiles", [0, 7])
def test_record_with_tianshou_atari_checkpoint(quantiles: int, tmp_path: Path) -> None:
    """A ``policy.pth`` saved by Tianshou's Atari DQN / QR-DQN examples (an algorithm
    ``state_dict``) drives ``record``: same actions as Tianshou's own policy."""
    from tianshou.algorithm.modelfree.dqn import DQN, DiscreteQLearningPolicy
    from tianshou.algorithm.modelfree.qrdqn import QRDQN, QRDQNPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.env.atari.atari_network import DQNet, QRDQNet

    env = make_atari_env(TASK, max_episode_steps=30)
    torch.manual_seed(0)
    algorithm: DQN[DiscreteQLearningPolicy[Any]] | QRDQN[QRDQNPolicy]
    if quantiles:
        qnet = QRDQNet(c=4, h=84, w=84, action_shape=6, num_quantiles=quantiles)
        qpolicy = QRDQNPolicy(model=qnet, action_space=env.action_space)
        algorithm = QRDQN(
            policy=qpolicy,
            optim=AdamOptimizerFactory(),
            num_quantiles=quantiles,
            target_update_freq=10,
        )
    else:
        dnet = DQNet(4, 84, 84, 6)
        dpolicy: DiscreteQLearningPolicy[Any] = DiscreteQLearningPolicy(
            model=dnet, action_space=env.action_space
        )
        algorithm = DQN(policy=dpolicy, optim=AdamOptimizerFactory(), target_update_freq=10)
    ckpt = tmp_path / "policy.pth"
    saved: Any = algorithm  # Tianshou's Algorithm.state_dict (with optimizers) is untyped
    torch.save(saved.state_dict(), ckpt)
    act = make_policy(str(ckpt), env)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 255, size=(8, 4, 84, 84), dtype=np.uint8)
    theirs = algorithm.policy(Batch(obs=obs, info={})).act
    ours = [act(o) for o in obs]
    np.testing.assert_array_equal(np.asarray(theirs), np.asarray(ours))
    out = tmp_path / "expert.hdf5"
    code = cli_main(
        [
            "record",
            "--env",
            TASK,
            "--policy",
            str(ckpt),
            "--eps",
            "0.2",
            "--episodes",
            "1",
            "--max-episode-steps",
            "30",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    assert len(load_buffer(out)) == 30


def test_atari_checkpoint_roundtrip(tmp_path: Path) -> None:
    env = make_atari_env(TASK)
    net = QuantileQNet(AtariTrunk(4, 84, 84, scale_obs=True), 6, 11, [16])
    path = save_atari_checkpoint(
        tmp_path / "actor.pt",
        net,
        head="quantiles",
        num_actions=6,
        num_quantiles=11,
        hidden_sizes=[16],
    )
    act = make_policy(str(path), env)
    obs = np.random.default_rng(1).integers(0, 255, size=(4, 84, 84), dtype=np.uint8)
    with torch.no_grad():
        expected = int(net(torch.as_tensor(obs)[None]).mean(dim=2).argmax(dim=1).item())
    assert act(obs) == expected
