"""Fuzzing the readers with hostile input: seed files, mutants, and a pool of worker processes
that runs every entry point on every mutant under a time and a memory limit.

Used by ``tests/test_fuzz.py`` (a few hundred mutants) and ``python -m benchmarks.fuzz`` (10,000+).

- **Seeds** (:func:`make_seeds`): small valid files written by the package's own writers
  (``BufferWriter``, ``EpisodeRecorder``, the RL Unplugged converter), by Tianshou
  (``ReplayBuffer.save_hdf5``, ``VectorReplayBuffer.save_hdf5``), a D4RL-layout file, a
  Minari dataset written by Minari (``create_dataset_from_buffers``) and an RL Unplugged
  TFRecord shard (GZIP; framing and ``tf.train.Example`` records as TensorFlow writes them,
  built without TensorFlow).
- **Mutants** (:func:`make_mutant`): byte flips, overwritten ranges and truncations (biased
  towards HDF5 metadata, away from the data blocks), and semantic mutations through h5py:
  deleted, renamed and swapped datasets, groups and attributes; wrong dtypes (object, string,
  compound) and shapes (0-d, empty, null dataspace, extra axes); mismatched lengths; declared
  extents far beyond the stored data; NaN/inf; negative and huge indices; corrupt JSON
  attributes; unknown schema versions; dangling links. TFRecord shards get flipped CRCs,
  garbage and huge length fields (with valid CRCs), garbage payloads, malformed Examples,
  bad PNGs, truncation and corrupt gzip streams; Minari datasets get mutated
  ``main_data.hdf5`` and ``metadata.json``.
- **Entry points** (:data:`ENTRY_POINTS`): ``load_buffer`` (in RAM and from disk), the
  ``inspect``, ``convert tianshou``, ``convert d4rl``, ``repack`` and ``repair`` commands,
  the RL Unplugged loader (``load_rl_unplugged``, in RAM and from disk) and converter
  (``convert_shard``), the Minari converter (``convert_minari``) and exporter
  (``export_minari``), each with the option sets of :data:`OPTIONS` (every option of every
  entry point, ``inspect --plot`` included); :data:`UNFUZZED_COMMANDS` names the other
  commands and why.
- **Outcomes**: ``ok`` (loaded, and the buffer passes :func:`check_buffer`; a command exits
  0 and its output loads and passes), ``typed`` (a ``TianshouOfflineError``; a command exits 2
  with exactly one ``error:`` line and no traceback), and the failures ``untyped`` (any other
  exception), ``inconsistent`` (loaded, but :func:`check_buffer` finds a broken invariant;
  an output its own loader refuses; a copy or export holding another number of rows than its
  input), ``timeout`` (over the run's limit: the base one, or a multiple of the unmutated
  seed's own run where that is longer, :func:`relative_time_limits`), ``memory`` (an allocation failed under the memory limit) and ``crash`` (the
  worker process died).
"""

from __future__ import annotations

import os

# TensorBoard (imported by Tianshou) must not import TensorFlow: 10 s and 500 MB per process
import tianshou_offline.cli._no_tensorflow  # noqa: F401  (first)

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks._lib.fuzz.checks import (
    _leaves,
    check_buffer,
)
from benchmarks._lib.fuzz.entries import (
    CLI_ENTRIES,
    ENTRY_POINTS,
    EXPORT_ID,
    OPTIONS,
    UNFUZZED_COMMANDS,
    UNFUZZED_OPTIONS,
    _check_file,
    _check_loaded,
    _check_png,
    _cli,
    _cli_args,
    _Inconsistent,
    _StderrHandler,
    _Timeout,
    check_table,
    run_entry,
)
from benchmarks._lib.fuzz.mutants import (
    _BIG_SPACE,
    _HOSTILE_ATTRS,
    _HOSTILE_JSON,
    _IMPORTANT_ATTRS,
    _byte_mutant,
    _corrupt_text,
    _data_regions,
    _hostile_attr,
    _hostile_values,
    _mutate_example,
    _mutate_h5_once,
    _mutate_json,
    _n_ops,
    _objects,
    _split_records,
    _structural_position,
    _tfrecord_stream,
    _variant,
    _write_variant,
    make_mutant,
    mutate_bytes,
    mutate_h5,
    mutate_minari,
    mutate_tfrecord,
)
from benchmarks._lib.fuzz.outcomes import (
    FAILURES,
    OUTCOMES,
)
from benchmarks._lib.fuzz.pool import (
    _ALLOCATION_FAILED,
    ALLOCATION_REFUSED,
    PROBE_STEPS_GIB,
    SEED_REFUSES,
    GiB,
    Job,
    Pool,
    Result,
    _memory_cgroup,
    _probe_once,
    _probe_refusal,
    _status,
    _worker,
    jobs_for,
    relative_time_limits,
    seed_jobs,
)
from benchmarks._lib.fuzz.seeds import (
    H5_KINDS,
    SEED_ENTRY_POINTS,
    Seed,
    _episodes,
    _masked_crc,
    _png,
    _seed_d4rl,
    _seed_minari,
    _seed_recorder,
    _seed_recorder_killed,
    _seed_tianshou,
    _seed_writer,
    frame_record,
    make_large_seeds,
    make_seeds,
    rlu_records,
    write_tfrecord,
)
from benchmarks._lib.fuzz.summary import (
    Summary,
)

__all__ = [
    "ALLOCATION_REFUSED",
    "CLI_ENTRIES",
    "ENTRY_POINTS",
    "EXPORT_ID",
    "FAILURES",
    "H5_KINDS",
    "OPTIONS",
    "OUTCOMES",
    "PROBE_STEPS_GIB",
    "SEED_ENTRY_POINTS",
    "SEED_REFUSES",
    "UNFUZZED_COMMANDS",
    "UNFUZZED_OPTIONS",
    "_ALLOCATION_FAILED",
    "_BIG_SPACE",
    "_HOSTILE_ATTRS",
    "_HOSTILE_JSON",
    "_IMPORTANT_ATTRS",
    "GiB",
    "Job",
    "Pool",
    "Result",
    "Seed",
    "Summary",
    "_Inconsistent",
    "_StderrHandler",
    "_Timeout",
    "_byte_mutant",
    "_check_file",
    "_check_loaded",
    "_check_png",
    "_cli",
    "_cli_args",
    "_corrupt_text",
    "_data_regions",
    "_episodes",
    "_hostile_attr",
    "_hostile_values",
    "_leaves",
    "_masked_crc",
    "_memory_cgroup",
    "_mutate_example",
    "_mutate_h5_once",
    "_mutate_json",
    "_n_ops",
    "_objects",
    "_png",
    "_probe_once",
    "_probe_refusal",
    "_seed_d4rl",
    "_seed_minari",
    "_seed_recorder",
    "_seed_recorder_killed",
    "_seed_tianshou",
    "_seed_writer",
    "_split_records",
    "_status",
    "_structural_position",
    "_tfrecord_stream",
    "_variant",
    "_worker",
    "_write_variant",
    "check_buffer",
    "check_table",
    "frame_record",
    "jobs_for",
    "make_large_seeds",
    "make_mutant",
    "make_seeds",
    "mutate_bytes",
    "mutate_h5",
    "mutate_minari",
    "mutate_tfrecord",
    "relative_time_limits",
    "rlu_records",
    "run_entry",
    "seed_jobs",
    "write_tfrecord",
]
