"""Hostile input: every mutant of a valid file is either read into a consistent buffer or
refused with one typed error, within a time and a memory limit.

A seeded run over a few hundred mutants of small valid files (``benchmarks/_lib/fuzz/`` writes the
seeds with the package's writers, Tianshou, Minari and a TFRecord shard, and mutates them:
byte flips, truncations, semantic h5py mutations, corrupt records) through every reading
entry point: ``load_buffer``, ``tianshou-offline inspect``, ``convert tianshou``, ``convert
d4rl``, the Minari and RL Unplugged readers. Each run happens in a worker process under a
time limit and an address-space limit (``RLIMIT_AS``). ``python -m benchmarks.fuzz`` runs the same at
10,000+ mutants and prints the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("minari")
pytest.importorskip("crc32c")

from benchmarks._lib import fuzz as _fuzz

TIME_LIMIT_S = 20.0
MEMORY_LIMIT = 1 << 30
N_MUTANTS = 336  # 28 of each of the 12 seeds
SEED = 12


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[_fuzz.Seed]:
    return _fuzz.make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="module")
def pool() -> Iterator[_fuzz.Pool]:
    # importing every entry point before the workers are forked keeps each run fast
    import tianshou_offline.cli
    import tianshou_offline.converters.d4rl
    import tianshou_offline.converters.minari
    import tianshou_offline.converters.rl_unplugged
    import tianshou_offline.converters.tianshou
    import tianshou_offline.data.stats  # noqa: F401

    yield _fuzz.Pool(workers=2, time_limit=TIME_LIMIT_S, mem_limit=MEMORY_LIMIT)


def test_seeds_load_and_convert(seeds: list[_fuzz.Seed], pool: _fuzz.Pool, tmp_path: Path) -> None:
    """The unmutated seeds pass every entry point: the harness reports real failures only
    (the large seeds too, written here at 2 MB)."""
    large = _fuzz.make_large_seeds(tmp_path, 2)
    results = list(pool.run(_fuzz.seed_jobs([*seeds, *large], variants=2)))
    assert {s.name for s in [*seeds, *large]} == set(_fuzz.SEED_ENTRY_POINTS)
    bad = [
        f"{r.job.entry} {r.job.seed}: {r.outcome} {r.detail}" for r in results if r.outcome != "ok"
    ]
    assert not bad, "\n".join(bad)


def test_mutants_are_refused_with_typed_errors_or_load_consistently(
    seeds: list[_fuzz.Seed], pool: _fuzz.Pool, tmp_path: Path
) -> None:
    summary = _fuzz.Summary()
    jobs = _fuzz.jobs_for(seeds, N_MUTANTS, SEED, tmp_path, entries_per_mutant=1)
    for result in pool.run(jobs):
        summary.add(result)
    counts = {o: sum(c[o] for c in summary.counts.values()) for o in _fuzz.OUTCOMES}
    assert len(summary.mutants) == N_MUTANTS
    assert counts["typed"] > N_MUTANTS // 5 and counts["ok"] > N_MUTANTS // 10, summary.table()
    assert set(summary.counts) == set(_fuzz.ENTRY_POINTS), summary.table()
    assert not summary.failures, summary.report()


def test_the_checker_catches_a_buffer_that_crosses_an_episode_end(
    seeds: list[_fuzz.Seed],
) -> None:
    """``check_buffer`` is not vacuous: a buffer whose ``done`` lost an episode end (as
    Tianshou's ``from_data`` leaves ``last_index``) is reported."""
    from tianshou_offline import load_buffer

    buf = load_buffer(next(s.path for s in seeds if s.name == "writer"))
    assert _fuzz.check_buffer(buf) is None
    untyped: Any = buf  # a list where Tianshou declares an array, as from_data leaves it
    untyped.last_index = [0]
    assert _fuzz.check_buffer(buf) is not None


def test_the_checker_reads_an_empty_buffer(seeds: list[_fuzz.Seed]) -> None:
    """A file whose episode table is empty loads as an empty buffer, which has no columns in
    Tianshou (``buf.done`` raises): the checker compares it with the file's episode table
    instead of failing itself (fuzz mutant recorder#6912)."""
    from tianshou.data import ReplayBuffer

    writer = next(s.path for s in seeds if s.name == "writer")
    assert _fuzz.check_buffer(ReplayBuffer(8)) is None
    problem = _fuzz.check_table(ReplayBuffer(8), writer)
    assert problem is not None and "the buffer: 0 starting at []" in problem


@pytest.mark.slow
def test_many_mutants(seeds: list[_fuzz.Seed], pool: _fuzz.Pool, tmp_path: Path) -> None:
    summary = _fuzz.Summary()
    for result in pool.run(_fuzz.jobs_for(seeds, 400, SEED + 1, tmp_path)):
        summary.add(result)
    assert not summary.failures, summary.report()


def test_the_harness_runs_every_option_of_every_entry_point() -> None:
    """Every option of the fuzzed commands (their parsers) and functions (their signatures)
    is in some option set of the harness, or named as left out with a reason: the harness
    that missed ``inspect --plot`` of infinite rewards ran only the default paths."""
    import argparse
    import inspect as pyinspect

    from tianshou_offline.cli import build_parser
    from tianshou_offline.converters.minari import convert_minari, export_minari
    from tianshou_offline.converters.rl_unplugged import convert_shard, load_rl_unplugged
    from tianshou_offline.data.buffer import load_buffer

    def used(entry: str) -> set[str]:
        sets = _fuzz.OPTIONS[entry]
        return {a for opts in sets for a in (opts if isinstance(opts, list) else opts.keys())}

    def subparser(*names: str) -> argparse.ArgumentParser:
        parser = build_parser()
        for name in names:
            action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = action.choices[name]
        return parser

    commands = {"inspect": ("inspect",), "convert_tianshou": ("convert", "tianshou"),
                "convert_d4rl": ("convert", "d4rl"), "repack": ("repack",),
                "repair": ("repair",)}  # fmt: skip
    assert set(commands) == set(_fuzz.CLI_ENTRIES)
    for entry, names in commands.items():
        options = {a.option_strings[-1] for a in subparser(*names)._actions if a.option_strings}
        missing = options - used(entry) - {"--help", "--output"} - set(_fuzz.UNFUZZED_OPTIONS)
        assert not missing, (entry, missing)
    functions: dict[str, Callable[..., Any]] = {"load_buffer": load_buffer, "load_rl_unplugged": load_rl_unplugged,
                 "convert_minari": convert_minari, "convert_shard": convert_shard,
                 "export_minari": export_minari}  # fmt: skip
    for entry, fn in functions.items():
        params = {p.name for p in pyinspect.signature(fn).parameters.values()
                  if p.kind is not p.VAR_KEYWORD}  # fmt: skip
        missing = params - used(entry) - {"path", "paths", "source", "output"}
        assert not missing - set(_fuzz.UNFUZZED_OPTIONS), (entry, missing)
    assert "--plot" in used("inspect")
    # every command is an entry point, or runs one (with every option), or is named as left
    # out with a reason: the harness once fuzzed neither repack, repair nor export minari
    leaves = []
    for a in build_parser()._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                groups = [x for x in sub._actions if isinstance(x, argparse._SubParsersAction)]
                leaves += [f"{name} {s}" for g in groups for s in g.choices] or [name]
    fuzzed = {" ".join(names) for names in commands.values()}
    assert set(leaves) - fuzzed == set(_fuzz.UNFUZZED_COMMANDS), set(leaves) - fuzzed


def test_error_boundaries_let_bugs_of_ours_through(tmp_path: Path) -> None:
    """The boundary around Minari's parsers turns what they raise into a typed error, but an
    exception raised by our own code inside it is a bug and passes through untyped (it was
    counted as a typed refusal of the data); checked to fail before. So does one that never
    went through Minari (numpy refusing an operation of ours, raised in C: no frame of ours
    on top), which was typed before the boundary was narrowed (checked to fail with the old
    `except Exception` + raised_by_us boundary)."""
    from minari.dataset.minari_storage import MinariStorage

    from tianshou_offline.converters.minari.source import minari_errors
    from tianshou_offline.data.stats import describe
    from tianshou_offline.errors import DatasetFormatError, raised_by_us

    (tmp_path / "metadata.json").write_text("{")
    with pytest.raises(DatasetFormatError, match="Minari cannot read"):
        with minari_errors(tmp_path):
            MinariStorage.read_raw_metadata(tmp_path)  # Minari's parser on bad data
    not_an_array: Any = None
    with pytest.raises(AttributeError) as info:
        with minari_errors(tmp_path):
            describe(not_an_array)  # our code fails inside the boundary
    assert raised_by_us(info.value)
    with pytest.raises(ValueError, match="cannot reshape") as info2:
        with minari_errors(tmp_path):
            np.arange(2).reshape(3)  # no Minari frame on the way
    assert not isinstance(info2.value, DatasetFormatError)


def _allocating_entry(entry: str, path: Path, workdir: Path, variant: int) -> tuple[str, str]:
    """A stand-in entry point that asks for ``variant`` MiB and touches it; a refused request
    is reported as libhdf5 reports one (a typed error)."""
    try:
        block = np.ones(variant << 17)  # variant MiB of float64
    except MemoryError:
        return "typed", "DatasetFormatError: memory allocation failed"
    return "ok", f"{block.nbytes} bytes"


def test_refused_allocations_are_probed_without_the_address_space_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A typed 'allocation failed' is rerun with more address space and then none (in a
    memory cgroup): a request no machine grants stays typed, with its size bound recorded; one
    that is granted and used is a blow-up (`memory`; under a cgroup the rerun is killed at
    the cap instead of using the memory). Before, the rerun gave 3 GiB more only and recorded
    neither the size nor whether the request is refused without the limit."""
    import resource

    from benchmarks._lib.fuzz import pool

    monkeypatch.setattr(pool, "run_entry", _allocating_entry)  # the name the probe calls
    base = _fuzz._status("VmSize")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = base + (256 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        huge = _fuzz.Job("load_buffer", str(tmp_path), 0, "seed", "test", variant=1 << 30)  # 1 PiB
        outcome, detail = _fuzz._probe_refusal(
            huge, tmp_path, limit, 256 << 20, "DatasetFormatError: memory allocation failed"
        )
        assert outcome == "typed" and detail.startswith(_fuzz.ALLOCATION_REFUSED), detail
        assert "requested > 128 GiB beyond the limit" in detail
        cgroups = _fuzz._memory_cgroup(1 << 30)
        if cgroups is not None:
            cgroups.rmdir()
            assert "refused without an address-space limit too" in detail
        half = _fuzz.Job("load_buffer", str(tmp_path), 0, "seed", "test", variant=512)
        outcome, detail = _fuzz._probe_refusal(
            half, tmp_path, limit, 256 << 20, "DatasetFormatError: memory allocation failed"
        )
        assert outcome == "memory" and "with 3 GiB more" in detail, detail
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


@pytest.mark.parametrize("decoder", ["pyspng", "cv2", "pillow"])
def test_png_boundary_types_bad_frames_and_lets_bugs_of_ours_through(
    decoder: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A frame that is no PNG is one typed error naming the record, with every decoder; an
    exception of another kind raised inside a decoder (a bug of ours, here an
    AttributeError) passes through as itself. Before, both boundaries around the decoders
    caught any Exception (checked to fail with the old ``except Exception``: the
    AttributeError came out as DatasetFormatError)."""
    pytest.importorskip({"pillow": "PIL"}.get(decoder, decoder))
    from tianshou_offline.converters import _tfrecord
    from tianshou_offline.converters.rl_unplugged import convert_shard
    from tianshou_offline.errors import DatasetFormatError

    records = _fuzz.rlu_records(1, length=3)
    (tmp_path / "Pong").mkdir()
    good = _fuzz.write_tfrecord(tmp_path / "Pong" / "good.tfrecord", records)
    example = _tfrecord.example_class()()
    example.ParseFromString(records[0])
    example.features.feature["o_t"].bytes_list.value[-1] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    bad = _fuzz.write_tfrecord(
        tmp_path / "Pong" / "bad.tfrecord", [example.SerializeToString(), *records[1:]]
    )
    with pytest.raises(DatasetFormatError, match=r"bad\.tfrecord: record 0.*not a valid PNG"):
        convert_shard(bad, tmp_path / "bad.hdf5", task="Pong", num_actions=6, workers=1,
                      decoder=decoder)  # fmt: skip

    def buggy() -> Callable[[bytes], Any]:
        def decode(png: Any) -> Any:
            return png.shape  # bytes have no shape: a bug of ours inside the boundary

        return decode

    monkeypatch.setitem(_tfrecord._DECODERS, decoder, buggy)
    with pytest.raises(AttributeError):
        convert_shard(good, tmp_path / "good.hdf5", task="Pong", num_actions=6, workers=1,
                      decoder=decoder)  # fmt: skip


def test_loaded_buffer_check_lets_bugs_of_our_buffer_classes_through() -> None:
    """``verify_buffer`` turns Tianshou refusing to index a loaded buffer into a typed error,
    but a failure raised by a buffer class of ours (frame stacks, disk-backed) is a bug and
    passes through (before: any IndexError/ValueError/TypeError/KeyError became a
    DatasetFormatError; checked to fail so)."""
    from tianshou.data import Batch, ReplayBuffer

    from tianshou_offline.data.columns import verify_buffer

    def filled(cls: type[ReplayBuffer]) -> ReplayBuffer:
        buf = cls(3)
        for t in range(3):
            buf.add(Batch(obs=np.zeros(2), act=0, rew=0.0, terminated=t == 2, truncated=False,
                          obs_next=np.zeros(2), info={}))  # fmt: skip
        return buf

    class Broken(ReplayBuffer):
        def __getitem__(self, index: Any) -> Any:
            raise IndexError("a bug in a buffer class")

    verify_buffer(filled(ReplayBuffer), "ok.hdf5")
    with pytest.raises(IndexError, match="a bug in a buffer class"):
        verify_buffer(filled(Broken), "x.hdf5")


def _sleeping_entry(entry: str, path: Path, workdir: Path, variant: int) -> tuple[str, str]:
    """A stand-in entry point that takes ``variant`` tenths of a second."""
    import time

    time.sleep(variant / 10)
    return "ok", ""


def test_time_limits_are_relative_to_the_unmutated_seeds_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A mutant's run may take ``factor`` times as long as the unmutated seed's run of the
    same entry point and option set (never less than the base limit), and the pool holds
    each job to its own limit. Before, one flat limit held a 250 MB seed's conversion to
    the 10 s meant for kilobyte files (the kept run counted the unmutated seed as a
    timeout)."""
    from benchmarks._lib.fuzz import pool

    def result(seed: str, entry: str, variant: int, seconds: float) -> _fuzz.Result:
        return _fuzz.Result(_fuzz.Job(entry, "", -1, seed, "seed", variant), "ok", "", seconds, 0)

    n = len(_fuzz.OPTIONS["convert_tianshou"])
    limits = _fuzz.relative_time_limits(
        [result("large", "convert_tianshou", 1, 4.0), result("large", "convert_tianshou", 1, 3.0),
         result("large", "inspect", 0, 1.0), result("writer", "convert_tianshou", 1, 0.1)],
        base=10.0, factor=5.0,
    )  # fmt: skip
    assert limits == {("large", "convert_tianshou", 1): 20.0}
    seed = _fuzz.Seed("large", tmp_path / "large.hdf5")
    seed.path.write_bytes(b"\x00" * 64)
    _fuzz.SEED_ENTRY_POINTS["large"] = ("convert_tianshou",)
    try:
        jobs = [j for j, _ in _fuzz.jobs_for([seed], 40, 0, tmp_path, time_limits=limits)]
    finally:
        del _fuzz.SEED_ENTRY_POINTS["large"]
    assert {j.time_limit for j in jobs if j.variant % n == 1} == {20.0}
    assert {j.time_limit for j in jobs if j.variant % n != 1} == {None}
    # all option sets of every entry point on every unmutated seed, under the seed limit
    seeds = [_fuzz.Seed(k, tmp_path) for k in ("writer", "framestack")]
    runs = {(j.seed, j.entry, j.variant) for j, _ in _fuzz.seed_jobs(seeds, time_limit=99)}
    for s in seeds:
        for e in _fuzz.SEED_ENTRY_POINTS[s.name]:
            refused = _fuzz.SEED_REFUSES.get((s.name, e), set())
            want = {v for v, o in enumerate(_fuzz.OPTIONS[e]) if not set(o) & refused}
            assert {v for k, x, v in runs if (k, x) == (s.name, e)} == want, (s.name, e)
    assert {j.time_limit for j, _ in _fuzz.seed_jobs(seeds, time_limit=99)} == {99}

    monkeypatch.setattr(pool, "run_entry", _sleeping_entry)  # before the workers fork
    p = _fuzz.Pool(workers=1, time_limit=0.3, mem_limit=MEMORY_LIMIT)
    out = list(p.run(iter([(_fuzz.Job("load_buffer", "", 0, "s", "", 8), None),
                           (_fuzz.Job("load_buffer", "", 1, "s", "", 8, time_limit=3.0), None)])))  # fmt: skip
    assert [(r.outcome, r.detail) for r in out] == [("timeout", "over 0.3 s"), ("ok", "")]


def test_the_issues_findings_are_mutations_the_harness_makes(
    seeds: list[_fuzz.Seed], tmp_path: Path
) -> None:
    """The independent harness's findings (issue 25): ``inspect --plot`` of boolean rewards
    and of rewards that are all infinite, ``convert tianshou`` of a column with a
    zero-length dimension. The harness's own mutations make each of them (before, it made
    neither a zero-length dimension nor a column whose every value is infinite), and the
    entry points refuse or read them (typed or ok, never untyped)."""
    import random

    import h5py

    tianshou = next(s.path for s in seeds if s.name == "tianshou")
    with h5py.File(tianshou) as f:
        rew, obs = f["_meta/rew"][()], f["_meta/obs"][()]

    def find(column: np.ndarray, wanted: Callable[[str, Any], bool]) -> Any:
        for i in range(5000):
            name, value = _fuzz._variant(column, random.Random(i))
            if wanted(name, value):
                return value
        raise AssertionError("the harness never makes this mutation")

    cases = {
        "boolean rewards": ("rew", find(rew, lambda n, v: n == "dtype bool")),
        "every reward infinite": ("rew", find(rew, lambda n, v: n == "values"
                                              and np.isinf(v).all() and (v < 0).all())),
        "zero-length dimension": ("obs", find(obs, lambda n, v: n == "zero-length axis"
                                              and v.shape == (len(obs), 0))),
    }  # fmt: skip
    plot = next(i for i, o in enumerate(_fuzz.OPTIONS["inspect"]) if o == ["--plot", "PLOT"])
    for what, (key, value) in cases.items():
        path = tmp_path / f"{key}-{len(value)}.hdf5"
        path.write_bytes(tianshou.read_bytes())
        with h5py.File(path, "r+") as f:
            del f[f"_meta/{key}"]
            _fuzz._write_variant(f["_meta"], key, value, {})
        work = tmp_path / what
        work.mkdir()
        for entry, variant in (("inspect", plot), ("convert_tianshou", 0)):
            outcome, detail = _fuzz.run_entry(entry, path, work, variant)
            assert outcome in ("ok", "typed"), (what, entry, outcome, detail)


def test_a_run_is_replayed_in_part(seeds: list[_fuzz.Seed], tmp_path: Path) -> None:
    """``python -m benchmarks.fuzz --only writer_dict#13 --entries ...`` replays part of a
    run: ``jobs_for`` with ``only`` and ``entries`` gives exactly the jobs of the whole run
    for those mutants and entry points (the same mutation, byte for byte, and option set),
    and ``--only`` checks that a number is a mutant of the seed it names."""
    import hashlib

    import benchmarks.fuzz as cli

    def jobs(workdir: Path, **kw: Any) -> list[tuple[int, str, str, int, str]]:
        workdir.mkdir()
        out = []
        for job, done in _fuzz.jobs_for(seeds, 30, 4, workdir, **kw):
            p = Path(job.path)
            data = p.read_bytes() if p.is_file() else (p / "main_data.hdf5").read_bytes()
            out.append((job.mutant, job.entry, job.description, job.variant,
                        hashlib.sha256(data).hexdigest()))  # fmt: skip
            assert done is not None
            done()
        return out

    entries = {"export_minari", "load_buffer", "convert_minari"}
    full = jobs(tmp_path / "full")
    part = jobs(tmp_path / "part", only={13, 23, 25}, entries=entries)
    want = [j for j in full if j[0] in {13, 23, 25} and j[1] in entries]
    assert part == want and {j[0] for j in part} == {13, 23, 25}
    assert list((tmp_path / "part").iterdir()) == []  # each mutant deleted after its jobs
    names = [s.name for s in seeds]
    assert names[13 % len(seeds)] == "writer_dict"
    assert cli._only([cli._mutant_number("writer_dict#13"), (None, 25)], seeds, 0, 30) == {13, 25}
    assert cli._only([(None, 40)], seeds, 0, 30) == set()  # a large seed's mutant
    with pytest.raises(SystemExit, match="mutant 13 is a mutant of writer_dict, not of writer"):
        cli._only([cli._mutant_number("writer#13")], seeds, 0, 30)
