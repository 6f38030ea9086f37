"""Files written under the newest h5py (HDF5 2.x) read under h5py on HDF5 1.14, and a file
that really is too new for the installed library says so.

A plain ``pip install`` brings h5py ≥ 3.15 (HDF5 2.0); the ``test``/``tfds`` extras bring
TensorFlow, which pins h5py < 3.15 (HDF5 1.14). A user who writes files with the first and
reads them with the second (or hands them to Tianshou users, MATLAB, …) must be able to. The
h5py this environment does not have is installed with pip into a folder of its own (from the
package registry; pip's cache makes reruns fast) and put first on the path of a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

REPO = Path(__file__).resolve().parents[2]
NEW_H5PY = "3.16.0"
"""An h5py built on HDF5 2.0."""
OLD_H5PY = "3.14.0"
"""An h5py built on HDF5 1.14 (what TensorFlow's pin installs)."""

_WRITE = r"""
import json, shutil, sys
import gymnasium as gym
import h5py
import numpy as np
from tianshou_offline import EpisodeRecorder, load_buffer, save_buffer
from tianshou_offline.data.repack import repack
from tianshou_offline.data.repair import repair_file

out = sys.argv[1]
env = EpisodeRecorder(gym.make("CartPole-v1"), f"{out}/recorded.hdf5")
for seed in range(3):
    env.reset(seed=seed)
    done = False
    while not done:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        done = term or trunc
env.close()
buf = load_buffer(f"{out}/recorded.hdf5")
save_buffer(buf, f"{out}/saved.hdf5")
save_buffer(buf, f"{out}/saved_gzip.hdf5", compression="gzip")
repack(f"{out}/saved_gzip.hdf5", f"{out}/repacked.hdf5")
shutil.copy(f"{out}/recorded.hdf5", f"{out}/repaired.hdf5")
repair_file(f"{out}/repaired.hdf5")
import tianshou_offline.data.h5io as h5io

h5io.SWMR_LIBVER = ("latest", "latest")  # what the writers used before: HDF5 2.0's format
env = EpisodeRecorder(gym.make("CartPole-v1"), f"{out}/latest.hdf5")
env.reset(seed=0)
done = False
while not done:
    _, _, term, trunc, _ = env.step(env.action_space.sample())
    done = term or trunc
env.close()
np.save(f"{out}/obs.npy", buf.obs[: len(buf)])
print(json.dumps({"hdf5": h5py.version.hdf5_version, "n": len(buf)}))
"""

_READ = r"""
import json, sys
import h5py
import numpy as np
from tianshou_offline import load_buffer
from tianshou_offline.errors import DatasetFormatError

out = sys.argv[1]
obs = np.load(f"{out}/obs.npy")
result = {"hdf5": h5py.version.hdf5_version, "read": {}}
for name in ("recorded", "saved", "saved_gzip", "repacked", "repaired"):
    buf = load_buffer(f"{out}/{name}.hdf5")
    result["read"][name] = bool(len(buf) == len(obs) and np.array_equal(buf.obs[: len(buf)], obs))
try:
    load_buffer(f"{out}/latest.hdf5")
    result["latest"] = "read"
except DatasetFormatError as e:
    result["latest"] = str(e)
print(json.dumps(result))
"""


def _h5py_dir(version: str, root: Path) -> Path | None:
    """A folder holding h5py ``version`` (None: the installed h5py is that version)."""
    if h5py.version.version == version:
        return None
    target = root / f"h5py-{version}"
    if not (target / "h5py").is_dir():
        res = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(target), f"h5py=={version}"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, f"pip could not install h5py {version}: {res.stderr[-2000:]}"
    return target


def _run(code: str, h5py_dir: Path | None, out: Path) -> dict[str, object]:
    path = [str(REPO)] + ([str(h5py_dir)] if h5py_dir is not None else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path[::-1], os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300, env=env
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def read_under_hdf5_1_14(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """What a child on HDF5 1.14 reads of the files every writer wrote under HDF5 2.0."""
    root = tmp_path_factory.mktemp("h5py")
    out = tmp_path_factory.mktemp("written")
    wrote = _run(_WRITE, _h5py_dir(NEW_H5PY, root), out)
    assert str(wrote["hdf5"]).startswith("2."), wrote
    read = _run(_READ, _h5py_dir(OLD_H5PY, root), out)
    assert str(read["hdf5"]).startswith("1.14"), read
    return read


def test_files_written_under_hdf5_2_read_under_hdf5_1_14(
    read_under_hdf5_1_14: dict[str, object],
) -> None:
    """Every writer (the recorder's SWMR appends, BufferWriter plain and gzip, repack,
    repair): the data reads back equal under HDF5 1.14. Fails with ``libver="latest"``
    (``bad version number for datatype message``)."""
    assert read_under_hdf5_1_14["read"] == {
        "recorded": True, "saved": True, "saved_gzip": True, "repacked": True, "repaired": True
    }  # fmt: skip


def test_a_file_too_new_for_the_library_says_so(read_under_hdf5_1_14: dict[str, object]) -> None:
    """A file that HDF5 2.0 wrote with ``libver="latest"``: not "corrupt or truncated?" but
    which library cannot read it and what to do."""
    message = str(read_under_hdf5_1_14["latest"])
    assert "newer HDF5" in message and "1.14" in message and "pip install -U h5py" in message
    assert "corrupt or truncated" not in message
