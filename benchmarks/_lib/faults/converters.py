"""The converters under fault, each through its command (``tianshou-offline convert ...``):
``convert d4rl`` (a D4RL-layout file), ``convert minari`` (a dataset written by Minari's
``create_dataset_from_buffers``; ``minari-arrow``: the same in its Arrow storage), ``convert
tianshou`` (a Tianshou ``ReplayBuffer.save_hdf5`` file; ``tianshou-vector``: a
``VectorReplayBuffer``'s), ``convert tfds`` (an RLDS dataset of image frames prepared here with
tensorflow-datasets, converted with ``--frame-stack 4``: a buffer and its patch spool;
``tfds-flat``: without it) and
``convert rl-unplugged-atari`` (two RL Unplugged Atari shards, real GZIP TFRecord files of
``tf.train.Example`` records with PNG frames, written without TensorFlow; the second shard
fails after the first is published, which must stay).

Each :class:`Converter` says its command for an output (:meth:`Converter.argv`), so that the
tests run the same commands for two writers, read-only and vanished directories.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from benchmarks._lib.faults.base import OneFile, Ran, buffer_ok, d4rl_source, run_cli


class Converter(OneFile):
    """A converter: its sources are made by :meth:`prepare`, its command writes ``output``."""

    transitions = 0
    """what a finished output holds"""

    def output(self, out: Path) -> Path:
        """The output in the directory ``out`` (what :meth:`argv` takes, what an error names)."""
        return out / self.final

    def argv(self, output: Path) -> list[str]:
        """The command that writes ``output`` (without ``--no-progress``)."""
        raise NotImplementedError

    def run(self, out: Path) -> Ran:
        return run_cli([*self.argv(self.output(out)), "--no-progress"], self.output(out))

    def complete(self, path: Path) -> bool:
        return buffer_ok(path, self.transitions)


class ConvertD4RL(Converter):
    name = "convert d4rl"
    final = "d4rl.hdf5"
    transitions = 2000

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        d4rl_source(src / "d4rl-source.hdf5", self.transitions)

    def argv(self, output: Path) -> list[str]:
        return ["convert", "d4rl", str(self.src / "d4rl-source.hdf5"), "-o", str(output)]


class ConvertMinari(Converter):
    name = "convert minari"
    final = "minari.hdf5"
    lengths = (150, 200, 250, 100, 300)
    transitions = sum(lengths)

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        from benchmarks._lib.fuzz.seeds import _seed_minari

        self.dataset = src / "minari" / "fuzz" / "box-v0"
        if not self.dataset.is_dir():
            _seed_minari(src / "minari", self.lengths)

    def argv(self, output: Path) -> list[str]:
        return ["convert", "minari", str(self.dataset), "-o", str(output)]


class ConvertMinariArrow(ConvertMinari):
    """The same episodes in Minari's Arrow storage (``data_format="arrow"``)."""

    name = "convert minari-arrow"
    final = "minari-arrow.hdf5"

    def prepare(self, src: Path) -> None:
        self.src = src
        from benchmarks._lib.fuzz.seeds import _seed_minari

        self.dataset = src / "minari-arrow" / "fuzz" / "box-v0"
        if not self.dataset.is_dir():
            _seed_minari(src / "minari-arrow", self.lengths, data_format="arrow")


class ConvertTianshou(Converter):
    name = "convert tianshou"
    final = "tianshou.hdf5"
    transitions = 2000

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        from benchmarks._lib.fuzz.seeds import _seed_tianshou

        self.source = src / "tianshou-source.hdf5"
        if not self.source.is_file():
            _seed_tianshou(self.source, vector=False, lengths=[100] * 20, size=2000)

    def argv(self, output: Path) -> list[str]:
        return ["convert", "tianshou", str(self.source), "-o", str(output)]


class ConvertTianshouVector(ConvertTianshou):
    """A Tianshou ``VectorReplayBuffer`` file (3 sub-buffers of 8 rows, wrapped around)."""

    name = "convert tianshou-vector"
    final = "tianshou-vector.hdf5"
    transitions = 24

    def prepare(self, src: Path) -> None:
        self.src = src
        from benchmarks._lib.fuzz.seeds import _seed_tianshou

        self.source = src / "tianshou-vector-source.hdf5"
        if not self.source.is_file():
            _seed_tianshou(self.source, vector=True)


@functools.cache
def rlds_frames_builder() -> Any:
    """A tensorflow-datasets builder of RLDS episodes of 84x84 frames (PNG), as ``rlu_atari``
    stores them: 4 episodes of 40 steps (T + 1 RLDS steps, the last holding only the final
    frame), terminal and cut in turn. Defined once per process (tfds registers it by name)."""
    import numpy as np
    import tensorflow_datasets as tfds

    def info(self: Any) -> Any:
        step = {
            "observation": tfds.features.Image(shape=(84, 84, 1), encoding_format="png"),
            "action": np.int64,
            "reward": np.float32,
            "discount": np.float32,
            "is_first": np.bool_,
            "is_last": np.bool_,
            "is_terminal": np.bool_,
        }
        features = tfds.features.FeaturesDict({"steps": tfds.features.Dataset(step)})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def examples() -> Any:
        rng = np.random.default_rng(11)
        for e in range(ConvertTfds.episodes):
            n = ConvertTfds.length + 1
            last = np.arange(n) == n - 1
            yield e, {"steps": {
                "observation": rng.integers(0, 256, (n, 84, 84, 1), dtype=np.uint8),
                "action": rng.integers(0, 4, n), "reward": rng.normal(size=n).astype(np.float32),
                "discount": np.ones(n, np.float32), "is_first": np.arange(n) == 0,
                "is_last": last, "is_terminal": last & (e % 2 == 0),
            }}  # fmt: skip

    # made with type(): tensorflow-datasets ships no types to subclass
    return type("FaultsRldsFrames", (tfds.core.GeneratorBasedBuilder,), {
        "VERSION": tfds.core.Version("1.0.0"), "_info": info,
        "_split_generators": lambda self, dl_manager: {"train": self._generate_examples()},
        "_generate_examples": lambda self: examples(),
    })  # fmt: skip


class ConvertTfds(Converter):
    name = "convert tfds"
    final = "tfds.hdf5"
    episodes = 4
    length = 40
    transitions = episodes * length

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        self.data_dir = src / "tfds"
        rlds_frames_builder()(data_dir=str(self.data_dir)).download_and_prepare()

    def argv(self, output: Path) -> list[str]:
        return ["convert", "tfds", "faults_rlds_frames", "--data-dir", str(self.data_dir),
                "--frame-stack", "4", "-o", str(output)]  # fmt: skip

    def complete(self, path: Path) -> bool:
        from tianshou_offline.converters.rl_unplugged import load_rl_unplugged

        return buffer_ok(path, self.transitions, load_rl_unplugged)


class ConvertTfdsFlat(ConvertTfds):
    """The same RLDS dataset without ``--frame-stack``: one frame per row, no patch spool."""

    name = "convert tfds-flat"
    final = "tfds-flat.hdf5"

    def argv(self, output: Path) -> list[str]:
        return ["convert", "tfds", "faults_rlds_frames", "--data-dir", str(self.data_dir),
                "-o", str(output)]  # fmt: skip

    def complete(self, path: Path) -> bool:
        return buffer_ok(path, self.transitions)


class ConvertRLUnplugged(Converter):
    """Two shards of one game into ``out/Pong/``: after a failure the first may be there
    (published before the second started), complete; nothing else is."""

    name = "convert rl-unplugged"
    game = "Pong"
    episodes, length = 3, 30
    transitions = episodes * length

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        from benchmarks._lib.fuzz.seeds import rlu_records, write_tfrecord
        from tianshou_offline.converters.rl_unplugged import shard_filename

        self.cache = src / "rlu"
        (self.cache / self.game).mkdir(parents=True, exist_ok=True)
        for k in range(2):
            recs = rlu_records(self.episodes, length=self.length, frame=84, seed=20 + k)
            write_tfrecord(self.cache / self.game / shard_filename(1, k), recs)

    def argv(self, output: Path) -> list[str]:
        return ["convert", "rl-unplugged-atari", "--task", self.game, "--shard-id", "0-1",
                "--cache-dir", str(self.cache), "--output-dir", str(output),
                "--workers", "1"]  # fmt: skip

    def output(self, out: Path) -> Path:
        return out  # the output directory: out/Pong/<shard>.hdf5

    def check(self, out: Path, ran: Ran) -> list[str]:
        from tianshou_offline.converters.rl_unplugged import is_converted, shard_filename

        wrong: list[str] = []
        game = out / self.game
        names = [f"{shard_filename(1, k)}.hdf5" for k in range(2)]
        for p in sorted(game.iterdir()) if game.is_dir() else []:
            if p.name.startswith("."):
                continue  # temporaries: counted by the trial
            if p.name not in names:
                wrong.append(f"{p.relative_to(out)}: not an output of this run")
            elif not is_converted(p, self.cache / self.game / p.name[: -len(".hdf5")]):
                wrong.append(f"{p.relative_to(out)}: published but incomplete")
        if ran.kind == "ok":
            wrong += [
                f"{n}: missing after a finished run" for n in names if not (game / n).is_file()
            ]
        return wrong


_ALL: tuple[type[Converter], ...] = (
    ConvertD4RL, ConvertMinari, ConvertMinariArrow, ConvertTianshou, ConvertTianshouVector,
    ConvertTfds, ConvertTfdsFlat, ConvertRLUnplugged,
)  # fmt: skip
CONVERTERS: dict[str, type[Converter]] = {c.name: c for c in _ALL}
