"""Reference scores for any dataset (``tianshou-offline reference-scores``) and the dataset
card (``inspect --card``) on every layout we read: our files, a converted Minari dataset
(our layout, written by ``convert minari``), a Tianshou ``save_hdf5`` file and a D4RL-keys
file (the last two get a sidecar, their bytes untouched). The scores are checked against an
independent computation: CartPole rollouts with the same seeds, the best episodes' returns
from the raw reward/done columns."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch
from tianshou.utils.net.common import Net

from tianshou_offline.cli import main as cli_main
from tianshou_offline.converters.d4rl_scores import normalized_score
from tianshou_offline.data.buffer import load_buffer
from tianshou_offline.data.reference import (
    read_reference_scores,
    sidecar_path,
    stored_reference_scores,
)
from tianshou_offline.recording.policies import load_policy_checkpoint, save_policy_checkpoint

LAYOUTS = ("ours", "minari", "tianshou", "d4rl")
FOREIGN = ("tianshou", "d4rl")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sources(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """One CartPole recording (6 episodes of the scripted expert with 60 % random actions) in
    every layout."""
    tmp = tmp_path_factory.mktemp("refs")
    ours = tmp / "ours.hdf5"
    assert cli_main(["record", "--env", "CartPole-v1", "--policy", "scripted", "--eps", "0.6",
                     "--seed", "2", "--episodes", "6", "-o", str(ours)]) == 0  # fmt: skip
    buf = load_buffer(ours)
    buf.save_hdf5(str(tmp / "tianshou.hdf5"))
    n = len(buf)
    with h5py.File(tmp / "d4rl.hdf5", "w") as f:
        f["observations"] = np.asarray(buf.obs[:n])
        f["next_observations"] = np.asarray(buf.obs_next[:n])
        f["actions"] = np.asarray(buf.act[:n])
        f["rewards"] = np.asarray(buf.rew[:n], dtype=np.float32)
        f["terminals"] = np.asarray(buf.terminated[:n])
        f["timeouts"] = np.asarray(buf.truncated[:n])
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(tmp / "minari"))
    try:
        assert cli_main(["export", "minari", str(ours), "--dataset-id", "test/cartpole-v0"]) == 0
        assert cli_main(["convert", "minari", "test/cartpole-v0", "-o", str(tmp / "minari.hdf5")]) == 0  # fmt: skip
    finally:
        mp.undo()
    return {name: tmp / f"{name}.hdf5" for name in LAYOUTS}


def _returns(path: Path) -> np.ndarray:
    """Episode returns from the raw reward and done columns (independent of episode_table)."""
    buf = load_buffer(path)
    rew, done = np.asarray(buf.rew[: len(buf)]), np.asarray(buf.done[: len(buf)])
    out, total = [], 0.0
    for r, d in zip(rew, done, strict=True):
        total += float(r)
        if d:
            out.append(total)
            total = 0.0
    return np.asarray(out)


def _random_rollouts(episodes: int, seed: int) -> np.ndarray:
    env = gym.make("CartPole-v1")
    env.action_space.seed(seed)
    env.reset(seed=seed)
    out = []
    for _ in range(episodes):
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            total, done = total + float(r), bool(term or trunc)
        out.append(total)
        env.reset()
    return np.asarray(out)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reference_scores_and_card_on_every_layout(
    layout: str, sources: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / sources[layout].name
    path.write_bytes(sources[layout].read_bytes())
    before = _sha(path)
    args = ["reference-scores", str(path), "--env", "CartPole-v1", "--expert-episodes", "best-2",
            "--episodes", "4", "--seed", "3"]  # fmt: skip
    assert cli_main(args) == 0
    capsys.readouterr()
    refs = read_reference_scores(path)
    assert refs is not None
    random_returns, best = _random_rollouts(4, 3), np.sort(_returns(path))[-2:]
    assert refs.random.mean == pytest.approx(random_returns.mean())
    assert refs.expert.mean == pytest.approx(best.mean()) and refs.expert.episodes == 2
    assert refs.random.std == pytest.approx(random_returns.std())
    assert refs.random.ci_low < refs.random.mean < refs.random.ci_high  # the returns vary
    assert refs.expert.ci_low <= refs.expert.mean <= refs.expert.ci_high
    assert "best 2 of 6 episodes" in refs.expert.source
    assert stored_reference_scores(path) == (refs.random.mean, refs.expert.mean)
    assert normalized_score(path, refs.expert.mean) == pytest.approx(100.0)  # the grid's score
    side = sidecar_path(path)
    if layout in FOREIGN:
        assert side.is_file() and _sha(path) == before  # someone else's file: not modified
    else:
        assert not side.exists() and _sha(path) != before
        assert load_buffer(path).rew.shape == load_buffer(sources[layout]).rew.shape
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name] + ([side.name] if layout in FOREIGN else [])
    )  # no temporaries left

    # stored scores are not replaced without --overwrite
    stored_at = side if layout in FOREIGN else path
    kept = _sha(stored_at)
    assert cli_main(args) == 2
    assert "already has reference scores" in _one_error_line(capsys)
    assert _sha(stored_at) == kept
    assert cli_main([*args[:-1], "5", "--overwrite"]) == 0
    replaced = read_reference_scores(path)
    assert replaced is not None and replaced.seed == 5
    assert replaced.random.mean == pytest.approx(_random_rollouts(4, 5).mean())

    # inspect and the card read them
    capsys.readouterr()
    assert cli_main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"ref\. random: +{replaced.random.mean:.6g} \(95% CI", out), out
    card = tmp_path / "card.md"
    assert cli_main(["inspect", str(path), "--card", str(card)]) == 0
    text = card.read_text()
    image = tmp_path / "card_returns.png"
    assert (
        image.read_bytes().startswith(b"\x89PNG") and "![episode returns](card_returns.png)" in text
    )
    assert f"| random (ref_min_score) | {replaced.random.mean:.6g} |" in text
    assert "| episodes | 6 (" in text and "## Licence" in text
    if layout == "minari":
        assert "- source: minari" in text and "# test/cartpole-v0" in text
    if layout in FOREIGN:
        assert "Not recorded (a " in text and "observation: not recorded" in text
    else:
        assert "- observation: `Box(" in text and "`Discrete(2)`" in text
    assert cli_main(["inspect", str(path), "--card", str(card)]) == 2  # exists
    _one_error_line(capsys)
    assert cli_main(["inspect", str(path), "--card", str(card), "--overwrite"]) == 0


def test_expert_checkpoint_rollouts(
    sources: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    net = Net(state_shape=(4,), action_shape=2, hidden_sizes=(8,))
    space = gym.make("CartPole-v1").action_space
    ckpt = save_policy_checkpoint(tmp_path / "expert.pt", net, state_shape=(4,),
                                  action_space=space, hidden_sizes=(8,))  # fmt: skip
    assert cli_main(["reference-scores", str(sources["ours"]), "--env", "CartPole-v1",
                     "--expert", str(ckpt), "--episodes", "3", "--seed", "1", "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    act = load_policy_checkpoint(ckpt)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=2)  # the expert's series starts at seed + 1
    returns = []
    for _ in range(3):
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs))
            total, done = total + float(r), bool(term or trunc)
        returns.append(total)
        obs, _ = env.reset()
    assert f"expert: {np.mean(returns):.6g} " in out and "checkpoint expert.pt, 3 rollouts" in out
    assert read_reference_scores(sources["ours"]) is None  # --dry-run stores nothing


def test_bad_inputs_are_one_error_line(
    sources: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = str(sources["ours"])
    cases = [
        ["--env", "Pendulum-v1", "--expert-episodes", "best-2"],  # another environment
        ["--env", "CartPole-v1", "--expert-episodes", "best-7"],  # more than the 6 episodes
        ["--env", "CartPole-v1", "--expert", str(tmp_path / "missing.pt")],
        ["--env", "NoSuchEnv-v0", "--expert-episodes", "best-1"],
    ]
    for extra in cases:
        assert cli_main(["reference-scores", ours, *extra, "--episodes", "1"]) == 2, extra
        _one_error_line(capsys)
    for extra in (["--expert-episodes", "best-0"], ["--expert-episodes", "2", "--expert", "x.pt"]):
        with pytest.raises(SystemExit) as e:  # refused by the argument parser
            cli_main(["reference-scores", ours, "--env", "CartPole-v1", *extra])
        assert e.value.code == 2
        assert (
            capsys.readouterr()
            .err.splitlines()[-1]
            .startswith("tianshou-offline reference-scores: error:")
        )
    assert cli_main(["reference-scores", str(tmp_path / "none.hdf5"), "--env", "CartPole-v1",
                     "--expert-episodes", "1"]) == 2  # fmt: skip
    _one_error_line(capsys)
    assert read_reference_scores(sources["ours"]) is None
    card = tmp_path / "card.md"  # a file without reference scores: the card says so
    assert cli_main(["inspect", ours, "--card", str(card)]) == 0
    assert "None stored. Compute them with `tianshou-offline reference-scores" in card.read_text()
