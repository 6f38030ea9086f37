"""The README's complete Python example (between ``<!-- python example ... -->`` and
``<!-- end of the python example -->``; not the ``BEGIN``/``END`` markers of generated
tables) runs as written (issue 23: the README had only fragments),
on a few episodes of Pendulum data where the quickstart would have written its file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    found = re.findall(
        r"<!-- python example [^\n]*-->\n```python\n(.*?)```\n<!-- end of the python example -->",
        text,
        re.S,
    )
    assert len(found) == 1, "README: expected one python-example block between markers"
    return str(found[0])


def test_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gymnasium as gym

    from tianshou_offline import EpisodeRecorder, load_buffer
    from tianshou_offline.recording.policies import load_continuous_policy

    (tmp_path / "qs").mkdir()
    env = EpisodeRecorder(gym.make("Pendulum-v1"), tmp_path / "qs" / "pendulum_expert.hdf5")
    for seed in range(3):  # tiny data: 3 random episodes
        env.reset(seed=seed)
        done = False
        while not done:
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()
    assert len(load_buffer(tmp_path / "qs" / "pendulum_expert.hdf5")) == 600
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md:python-example", "exec"), {"__name__": "readme"})
    assert "mean return over 5 episodes:" in capsys.readouterr().out
    policy = load_continuous_policy(tmp_path / "td3bc_policy.pt")  # the saved policy loads
    assert policy.obs_dim == 3 and policy.act_dim == 1
