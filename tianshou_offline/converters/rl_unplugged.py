"""RL Unplugged Atari shards → compact, exact tianshou-offline buffers (no TensorFlow needed).

The data: per game and run (1–5), 100 GZIP-compressed TFRecord shards
``{Game}/run_{N}-{shard:05d}-of-00100`` of ``tf.train.Example`` records with features
``o_t``/``o_tp1`` (4 PNG frames, 84×84 grayscale, oldest first), ``a_t``/``a_tp1`` (int64),
``r_t``/``d_t`` (float32; ``d_t`` is the discount, 0 at a terminal), ``episode_id`` (int64) and
``episode_return`` (float32).

The conversion streams a shard (bounded memory), verifies every record CRC, decodes one PNG
per record in worker processes and writes one row per record:

- ``obs``: the newest frame of ``o_t``, ``(84, 84)`` uint8; the file has Tianshou's
  ``stack_num=4``, ``save_only_last_obs=True``, ``ignore_obs_next=True`` settings, so a
  loaded buffer rebuilds ``obs``/``obs_next`` stacks of shape ``(4, 84, 84)``;
- ``act = a_t`` (int64), ``rew = r_t`` (float32), ``terminated = d_t == 0``,
  ``truncated`` where the next record starts another episode without a terminal; the last
  record of a shard ends its episode as cut (neither flag) unless it is terminal;
- ``info``: ``episode_id`` (int64), ``episode_return`` (float32), ``a_tp1`` (int64),
  ``discount`` (``d_t``, float32);
- every rebuilt ``obs``/``obs_next`` is checked against the record while converting; where
  they differ (e.g. padding frames at episode starts, the final ``obs_next`` of an episode),
  the exact stack is stored in ``/tianshou_offline/stack_patches`` (see
  :mod:`tianshou_offline.data.framestack`). :func:`load_rl_unplugged` returns a
  :class:`FrameStackReplayBuffer` whose ``buffer[i].obs``/``.obs_next`` equal the records.

No padding: a shard of N records gives exactly N transitions.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import difflib
import json
import logging
import multiprocessing
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from tianshou_offline.converters._rlu_decode import (
    ChunkResult,
    ChunkTask,
    check_png_frame,
    init_worker,
    parse_example,
    process_chunk,
)
from tianshou_offline.converters._tfrecord import (
    RecordChunk,
    TFRecordChunkReader,
    png_decoder,
)
from tianshou_offline.converters.result import ConversionResult
from tianshou_offline.data.atomic import publish, remove_stale_temps, remove_temp, temp_path
from tianshou_offline.data.format import Provenance, read_metadata
from tianshou_offline.data.framestack import (
    KEY_OBS,
    KEY_OBS_NEXT,
    FrameStackReplayBuffer,
    PatchSpool,
    load_framestack_files,
)
from tianshou_offline.data.ondisk import Memory
from tianshou_offline.data.writer import BufferWriter, Compression
from tianshou_offline.errors import (
    DatasetFormatError,
    OutputExistsError,
    SourceNotFoundError,
    TianshouOfflineError,
)
from tianshou_offline.progress import progress as progress_bar

log = logging.getLogger(__name__)

CONVERTER_NAME = "tianshou_offline.converters.rl_unplugged"
CONVERTER_VERSION = "1"
URL_PREFIX = "http://storage.googleapis.com/rl_unplugged/atari"
DEFAULT_CACHE_DIR = Path("~/.rl_unplugged/cache")
DEFAULT_OUTPUT_DIR = Path("~/.rl_unplugged/buffers")
TOTAL_NUM_SHARDS = 100

#: The 46 games of RL Unplugged Atari (the 9 tuning games and the test games).
GAMES: tuple[str, ...] = (
    "Alien", "Amidar", "Assault", "Asterix", "Atlantis", "BankHeist", "BattleZone",
    "BeamRider", "Boxing", "Breakout", "Carnival", "Centipede", "ChopperCommand",
    "CrazyClimber", "DemonAttack", "DoubleDunk", "Enduro", "FishingDerby", "Freeway",
    "Frostbite", "Gopher", "Gravitar", "Hero", "IceHockey", "Jamesbond", "Kangaroo", "Krull",
    "KungFuMaster", "MsPacman", "NameThisGame", "Phoenix", "Pong", "Pooyan", "Qbert",
    "Riverraid", "RoadRunner", "Robotank", "Seaquest", "SpaceInvaders", "StarGunner",
    "TimePilot", "UpNDown", "VideoPinball", "WizardOfWor", "YarsRevenge", "Zaxxon",
)  # fmt: skip

#: How the frames were made (Dopamine's Atari preprocessing, recorded in every file).
PREPROCESSING = {
    "frame_skip": 4,
    "max_pool_last_two_frames": True,
    "screen_size": 84,
    "grayscale": True,
    "frame_stack": 4,
    "sticky_actions_probability": 0.25,
    "action_set": "minimal",
    "max_episode_frames": 108000,
}


def shard_filename(run_id: int, shard_id: int, total_num_shards: int = TOTAL_NUM_SHARDS) -> str:
    """``run_{run_id}-{shard_id:05d}-of-{total:05d}``, the name of a shard in the bucket."""
    return f"run_{run_id}-{shard_id:05d}-of-{total_num_shards:05d}"


def shard_url(task: str, run_id: int, shard_id: int, url_prefix: str = URL_PREFIX) -> str:
    """Public URL of one shard."""
    return f"{url_prefix.rstrip('/')}/{task}/{shard_filename(run_id, shard_id)}"


def check_game(task: str) -> str:
    """Return ``task`` if it is an RL Unplugged Atari game, else raise with a suggestion."""
    if task in GAMES:
        return task
    close = difflib.get_close_matches(task, GAMES, n=3) or [
        g for g in GAMES if g.lower() == task.lower()
    ]
    hint = (
        f"; did you mean {', '.join(close)}?" if close else f"; expected one of {', '.join(GAMES)}"
    )
    raise SourceNotFoundError(f"unknown RL Unplugged Atari game {task!r}{hint}")


_SPEC = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_shard_spec(
    tokens: Sequence[str], total_num_shards: int = TOTAL_NUM_SHARDS
) -> tuple[list[int], list[Path]]:
    """Split ``--shard-id`` arguments into shard ids and explicit file paths.

    ``"1"``, ``"0-99"``, ``"1,3,7-9"`` are ids (sorted, de-duplicated); anything else is a path.

    :raises SourceNotFoundError: an id outside ``0..total_num_shards-1``.
    """
    ids: set[int] = set()
    paths: list[Path] = []
    for tok in tokens:
        if _SPEC.match(tok) and not Path(tok).exists():
            for part in tok.split(","):
                a, _, b = part.partition("-")
                lo, hi = int(a), int(b or a)
                if lo > hi:
                    raise SourceNotFoundError(f"shard range {part!r} is empty (start > end)")
                if hi >= total_num_shards:
                    raise SourceNotFoundError(
                        f"shard id {hi} does not exist; expected 0..{total_num_shards - 1}"
                    )
                ids.update(range(lo, hi + 1))
        else:
            paths.append(Path(tok))
    return sorted(ids), paths


# --------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------


def download_file(url: str, dest: Path, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically (``.part`` file renamed when complete).

    :raises SourceNotFoundError: HTTP 404 or the server cannot be reached.
    :raises DatasetFormatError: the download is shorter than the server announced.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)
    tmp = temp_path(dest, "part")
    try:
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise SourceNotFoundError(f"{url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            raise SourceNotFoundError(f"{url}: cannot download: {e}") from e
        with resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            got = 0
            with (
                open(tmp, "wb") as fh,
                progress_bar(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=f"download {dest.name}",
                    enabled=progress,
                ) as bar,
            ):
                while True:
                    block = resp.read(1 << 20)
                    if not block:
                        break
                    fh.write(block)
                    got += len(block)
                    bar.update(len(block))
        if total is not None and got != total:
            raise DatasetFormatError(
                f"{url}: download incomplete: got {got} of {total} bytes; try again"
            )
        publish(tmp, dest, overwrite=True)  # another download of the same shard: same bytes
    finally:
        remove_temp(tmp)
    return dest


# --------------------------------------------------------------------------------------
# conversion of one shard
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardResult(ConversionResult):
    """What converting (or skipping) one shard did: a :class:`ConversionResult` with the
    shard's frame-stack counts."""

    obs_patches: int = 0
    """Rows whose ``obs`` stack is stored whole (it differs from Tianshou's stacking)."""
    obs_next_patches: int = 0
    """Rows whose ``obs_next`` stack is stored whole."""
    pixel_compares: int = 0
    """Stacks compared pixel by pixel against the records."""


def atari_num_actions(task: str) -> int | None:
    """Size of the game's minimal action set (what RL Unplugged's ``a_t`` indexes), via
    ``ale-py``; None when ale-py is not installed or does not know the game."""
    try:
        import ale_py
    except ImportError:
        return None
    try:
        gym.register_envs(ale_py)
        env = gym.make(f"ALE/{task}-v5")
        try:
            space = env.action_space
            return int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        finally:
            env.close()
    except Exception as e:  # unknown game, missing ROM
        log.warning("ale-py cannot create ALE/%s-v5 (%s); action space not known", task, e)
        return None


def _mp_context(name: str | None) -> multiprocessing.context.BaseContext:
    if name is None:
        name = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(name)


def _inspect_first_record(
    source: Path, first: RecordChunk, decoder: str
) -> tuple[int, tuple[int, int]]:
    """Stack size and frame shape from the first record (its PNG header is checked before
    the frame is decoded: 8-bit grayscale, at most ``MAX_FRAME_SIDE`` pixels a side)."""
    offset = int(first.stream_offsets[0])
    o_t, _, _, _ = parse_example(first.record(0), path=str(source), record=0, offset=offset)
    check_png_frame(
        o_t[-1],
        None,
        where=f"{source}: record 0 (uncompressed byte offset {offset})",
        what=f"o_t[{len(o_t) - 1}]",
    )
    _, decode = png_decoder(decoder)
    try:
        img = decode(o_t[-1])
    except Exception as e:
        raise DatasetFormatError(
            f"{source}: record 0 (uncompressed byte offset {int(first.stream_offsets[0])}): "
            f"o_t[{len(o_t) - 1}] is not a valid PNG: {e}"
        ) from e
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2 or img.dtype != np.uint8:
        raise DatasetFormatError(
            f"{source}: record 0: frames decode to {img.shape} {img.dtype} images; expected "
            "8-bit grayscale frames"
        )
    return len(o_t), (int(img.shape[0]), int(img.shape[1]))


def _make_tasks(
    source: Path,
    chunks: Iterator[RecordChunk],
    first: RecordChunk,
    stack_num: int,
    frame_shape: tuple[int, int],
    num_actions: int | None = None,
) -> Iterator[ChunkTask]:
    """Chunks → worker tasks with ``S - 1`` records of context and one look-ahead record."""
    ctx_recs: list[bytes] = []
    ctx_offs: list[int] = []
    current = first
    while True:
        nxt = next(chunks, None)
        recs = [current.record(i) for i in range(len(current))]
        offs = [int(x) for x in current.stream_offsets]
        look = nxt is not None
        records = ctx_recs + recs + ([nxt.record(0)] if nxt is not None else [])
        offsets = ctx_offs + offs + ([int(nxt.stream_offsets[0])] if nxt is not None else [])
        yield ChunkTask(
            path=str(source),
            records=records,
            n_context=len(ctx_recs),
            has_lookahead=look,
            first_row=current.first_record,
            stream_offsets=offsets,
            stack_num=stack_num,
            frame_shape=frame_shape,
            num_actions=num_actions,
        )
        if nxt is None:
            return
        keep = stack_num - 1
        all_recs = ctx_recs + recs
        all_offs = ctx_offs + offs
        ctx_recs = all_recs[len(all_recs) - keep :] if keep else []
        ctx_offs = all_offs[len(all_offs) - keep :] if keep else []
        current = nxt


def _ordered_map(
    fn: Callable[[ChunkTask], ChunkResult],
    tasks: Iterator[ChunkTask],
    workers: int,
    decoder: str,
    mp_context: str | None,
) -> Iterator[ChunkResult]:
    """Run ``fn`` over ``tasks`` in worker processes, in order, with a bounded window."""
    if workers <= 1:
        init_worker(decoder)
        for t in tasks:
            yield fn(t)
        return
    window = 2 * workers
    with cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_mp_context(mp_context),
        initializer=init_worker,
        initargs=(decoder,),
    ) as pool:
        pending: collections.deque[cf.Future[ChunkResult]] = collections.deque()
        try:
            for t in tasks:
                pending.append(pool.submit(fn, t))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def convert_shard(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    task: str | None = None,
    run_id: int | None = None,
    shard_id: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    compression: Compression = None,
    num_actions: int | None = None,
    decoder: str = "auto",
    chunk_records: int = 1024,
    mp_context: str | None = None,
    progress: bool = False,
    contiguous: bool = False,
) -> ShardResult:
    """Convert one RL Unplugged Atari TFRecord shard into a compact, exact buffer file.

    :param source: the (GZIP-compressed) TFRecord shard.
    :param output: the ``.hdf5`` file to write (atomically; nothing is left there on error).
    :param task: the game (``Breakout``), recorded in the file and used for the env id and
        action space; inferred from the source's directory name when omitted.
    :param run_id: run number, recorded in the provenance.
    :param shard_id: shard number, recorded in the provenance.
    :param workers: decoding processes (default: all cores; ``1`` decodes in-process).
    :param overwrite: replace an existing output.
    :param compression: HDF5 compression of the output (``None``, ``"gzip"``, ``"lzf"``).
    :param num_actions: size of the discrete action space (default: the game's minimal action
        set via ale-py; else 18, the full Atari action set).
    :param decoder: PNG decoder: ``"auto"``, ``"pyspng"``, ``"cv2"`` or ``"pillow"``.
    :param chunk_records: records per worker task.
    :param mp_context: multiprocessing start method (default ``fork`` on Linux).
    :param progress: show a tqdm progress bar (stderr).
    :param contiguous: store the columns contiguous and uncompressed (rewritten once at the
        end), the layout ``load_rl_unplugged(..., memory="disk")`` memory-maps; not with
        ``compression``.
    :returns: counts and timing.
    :raises SourceNotFoundError: no such source file.
    :raises DatasetFormatError: CRC mismatch, truncated file, malformed record (the message
        names the file, the record number and its byte offset).
    :raises OutputExistsError: ``output`` exists and ``overwrite`` is False.
    """
    t0 = time.perf_counter()
    src = Path(source)
    out = Path(output)
    if contiguous and compression is not None:
        raise ValueError("contiguous=True stores uncompressed columns; drop compression")
    if not src.exists():
        raise SourceNotFoundError(f"{src}: no such file")
    remove_stale_temps(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{out}: output exists; pass overwrite=True (CLI: --overwrite or --resume) to replace it"
        )
    if not out.parent.is_dir():
        raise SourceNotFoundError(f"{out.parent}: output directory does not exist")
    task = task or src.parent.name
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    decoder_name, _ = png_decoder(decoder)
    file_size = src.stat().st_size
    bar = progress_bar(
        total=file_size, unit="B", unit_scale=True, desc=f"convert {src.name}", enabled=progress
    )
    reader = TFRecordChunkReader(src, max_records=chunk_records, on_read=bar.update)
    chunks = iter(reader)
    tmp_main = temp_path(out, "rlu")
    spool: PatchSpool | None = None
    n_actions = num_actions
    try:
        first = next(chunks, None)
        if first is None:
            raise DatasetFormatError(f"{src}: holds no records; expected tf.train.Example records")
        stack_num, frame_shape = _inspect_first_record(src, first, decoder_name)
        if n_actions is None:
            n_actions = atari_num_actions(task)
        if n_actions is None:
            n_actions = 18
            log.warning("%s: action space unknown (install ale-py); using Discrete(18)", task)
        dataset_id = f"{task}/{src.name}"
        provenance = Provenance(
            source="rl_unplugged",
            dataset_id=dataset_id,
            converter=CONVERTER_NAME,
            extra={
                "game": task,
                "run_id": run_id,
                "shard_id": shard_id,
                "source_file": src.name,
                "source_size": file_size,
                "preprocessing": PREPROCESSING,
                "frame_order": "oldest first; obs[-1] is the newest frame",
            },
        )
        obs_space = gym.spaces.Box(0, 255, (stack_num, *frame_shape), np.uint8)
        spool = PatchSpool(out, (stack_num, *frame_shape), np.dtype(np.uint8))
        rows = 0
        pixel_compares = 0
        with BufferWriter(
            tmp_main,
            observation_space=obs_space,
            action_space=gym.spaces.Discrete(n_actions),
            env_id=f"ALE/{task}-v5",
            provenance=provenance,
            compression=compression,
            store_obs_next=False,
            stack_num=stack_num,
            save_only_last_obs=True,
            overwrite=True,
            extra_attrs={
                "rlu.converter_version": CONVERTER_VERSION,
                "rlu.preprocessing": json.dumps(PREPROCESSING, sort_keys=True),
            },
        ) as writer:
            tasks = _make_tasks(src, chunks, first, stack_num, frame_shape, n_actions)
            for res in _ordered_map(process_chunk, tasks, workers, decoder_name, mp_context):
                if res.first_row != rows:  # pragma: no cover - ordering invariant
                    raise AssertionError(f"chunk order broken: {res.first_row} != {rows}")
                writer.add_transitions(
                    obs=res.frames,
                    act=res.act,
                    rew=res.rew,
                    terminated=res.terminated,
                    truncated=res.truncated,
                    done=res.done,
                    info={
                        "episode_id": res.episode_id,
                        "episode_return": res.episode_return,
                        "a_tp1": res.a_tp1,
                        "discount": res.discount,
                    },
                )
                for row, key, stack in res.patches:
                    spool.add(row, key, stack)
                rows += len(res.frames)
                pixel_compares += res.pixel_compares
            num_episodes = writer.num_episodes
        n_obs = spool.count(KEY_OBS)
        n_next = spool.count(KEY_OBS_NEXT)
        spool.attach(
            tmp_main,
            compression=compression,
            attrs={
                "rlu.records": rows,
                "rlu.source_file": src.name,
                "rlu.source_size": file_size,
                "rlu.verified": "obs,obs_next",
                "rlu.obs_patches": n_obs,
                "rlu.obs_next_patches": n_next,
                "rlu.pixel_compares": pixel_compares,
            },
        )
        if contiguous:
            from tianshou_offline.data.repack import repack_file

            tmp_packed = temp_path(out, "repack")
            try:
                repack_file(tmp_main, tmp_packed)
            except BaseException:
                remove_temp(tmp_packed)
                raise
            remove_temp(tmp_main)
            tmp_main = tmp_packed
        # a file that appeared at ``out`` meanwhile is kept unless overwrite
        publish(tmp_main, out, overwrite=overwrite)
    finally:
        bar.close()
        if spool is not None:
            spool.discard()
        remove_temp(tmp_main)
    seconds = time.perf_counter() - t0
    if rows and (n_obs + n_next) > 0.1 * rows:
        log.warning(
            "%s: %d of %d records did not continue the previous ones (%d obs / %d obs_next "
            "stacks stored in full); the records may not be in sequence",
            src,
            n_obs + n_next,
            rows,
            n_obs,
            n_next,
        )
    log.info(
        "%s -> %s: %d transitions, %d episodes, %d+%d patches, %.1fs (%.0f transitions/s)",
        src,
        out,
        rows,
        num_episodes,
        n_obs,
        n_next,
        seconds,
        rows / seconds if seconds else 0.0,
    )
    return ShardResult(
        source=src,
        outputs=(out,),
        num_transitions=rows,
        num_episodes=num_episodes,
        obs_patches=n_obs,
        obs_next_patches=n_next,
        pixel_compares=pixel_compares,
        seconds=seconds,
    )


def is_converted(
    output: str | os.PathLike[str], source: str | os.PathLike[str] | None = None
) -> bool:
    """Whether ``output`` is a complete, verified conversion (of ``source``, when given).

    Checks that the file opens, was written by this converter with verification, holds as
    many transitions as records were read, and (when ``source`` exists) that the source
    file's size matches the one recorded.
    """
    out = Path(output)
    if not out.exists():
        return False
    try:
        meta = read_metadata(out)
    except TianshouOfflineError as e:
        log.warning("%s: unreadable (%s); it will be converted again", out, e)
        return False
    ea = meta.extra_attrs
    try:
        records = int(ea.get("rlu.records", -1))
        size = int(ea.get("rlu.source_size", -1))
    except ValueError:
        return False
    if ea.get("rlu.verified") != "obs,obs_next" or records != meta.num_transitions or records < 1:
        return False
    if source is not None and Path(source).exists() and Path(source).stat().st_size != size:
        log.warning("%s: converted from a source of another size; it will be converted again", out)
        return False
    return True


ShardJob = tuple[Path, Path, str, int | None, int | None]
"""(source, output, game, run id, shard id) of one shard to convert (:func:`plan_conversion`)."""


def _plan_jobs(
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    task: str | None,
    run_id: int,
    shard_ids: Sequence[int],
    cache_dir: str | os.PathLike[str],
    total_num_shards: int,
) -> list[ShardJob]:
    """The shards :func:`convert_rl_unplugged_atari` converts, in order."""
    cache = Path(cache_dir).expanduser()
    outdir = Path(output).expanduser()
    jobs: list[ShardJob] = []
    if shard_ids:
        if task is None:
            raise SourceNotFoundError("--task is required with shard ids")
        check_game(task)
        for sid in shard_ids:
            if not 0 <= sid < total_num_shards:
                raise SourceNotFoundError(
                    f"shard id {sid} does not exist; expected 0..{total_num_shards - 1}"
                )
            name = shard_filename(run_id, sid, total_num_shards)
            jobs.append((cache / task / name, outdir / task / f"{name}.hdf5", task, run_id, sid))
    for p in paths:
        src = Path(p).expanduser()
        game = task or src.resolve().parent.name
        jobs.append((src, outdir / game / f"{src.name}.hdf5", game, None, None))
    if not jobs:
        raise SourceNotFoundError("no shards given: pass shard ids (--shard-id 0-99) or files")
    return jobs


def shard_outputs(
    source: Sequence[str | os.PathLike[str]] = (),
    output: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
    *,
    task: str | None = None,
    run_id: int = 1,
    shard_ids: Sequence[int] = (),
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
    total_num_shards: int = TOTAL_NUM_SHARDS,
) -> list[Path]:
    """The output files :func:`convert_rl_unplugged_atari` writes for these arguments (and
    their downloads, for shard ids), in order; nothing is read or written."""
    jobs = _plan_jobs(
        source,
        output,
        task=task,
        run_id=run_id,
        shard_ids=shard_ids,
        cache_dir=cache_dir,
        total_num_shards=total_num_shards,
    )
    return [out for _, out, *_ in jobs] + [src for src, _, _, _, sid in jobs if sid is not None]


def plan_conversion(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    task: str | None,
    run_id: int,
    shard_ids: Sequence[int],
    cache_dir: str | os.PathLike[str],
    total_num_shards: int,
    resume: bool,
    overwrite: bool,
    download: bool,
) -> tuple[list[str | os.PathLike[str]], str | None, list[ShardJob]]:
    """The checks and the plan of :func:`convert_rl_unplugged_atari` (also used by
    :mod:`tianshou_offline.scale`, which runs the same shards as Ray tasks): the explicit
    source files, the game, and the shards to convert, in order.

    :raises OutputExistsError: an output exists and neither ``resume`` nor ``overwrite``.
    :raises SourceNotFoundError: a source file is missing (and cannot be downloaded).
    """
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    if shard_ids and task is None and len(paths) == 1 and isinstance(paths[0], str):
        if not Path(paths[0]).expanduser().exists():  # ("Breakout", out, shard_ids=[0])
            task, paths = paths[0], []
    jobs = _plan_jobs(
        paths,
        output,
        task=task,
        run_id=run_id,
        shard_ids=shard_ids,
        cache_dir=cache_dir,
        total_num_shards=total_num_shards,
    )
    # refuse early, before hours of work
    if not (resume or overwrite):
        existing = [str(o) for _, o, *_ in jobs if o.exists()]
        if existing:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise OutputExistsError(
                f"{existing[0]}{more}: output exists; pass --resume to skip converted shards "
                "or --overwrite to replace them"
            )
    for src, _, _game, job_run, job_sid in jobs:
        if src.exists():
            continue
        if download and job_sid is not None and job_run is not None:
            continue
        hint = " (pass --download to fetch it)" if job_sid is not None else ""
        raise SourceNotFoundError(f"{src}: no such file{hint}")
    return paths, task, jobs


def resumed_result(src: Path, out: Path) -> ShardResult | None:
    """The result of a shard that ``resume`` skips: ``out`` is converted and verified
    (:func:`is_converted`, against ``src`` when it exists); None when it must be converted."""
    if not is_converted(out, src if src.exists() else None):
        return None
    meta = read_metadata(out)
    log.info("%s: already converted and verified; skipped", out)
    return ShardResult(
        source=src,
        outputs=(out,),
        num_transitions=meta.num_transitions,
        num_episodes=meta.num_episodes or 0,
        obs_patches=int(meta.extra_attrs.get("rlu.obs_patches", 0)),
        obs_next_patches=int(meta.extra_attrs.get("rlu.obs_next_patches", 0)),
        pixel_compares=int(meta.extra_attrs.get("rlu.pixel_compares", 0)),
        seconds=0.0,
        skipped=True,
    )


def convert_rl_unplugged_atari(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = (),
    output: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
    *,
    task: str | None = None,
    run_id: int = 1,
    shard_ids: Sequence[int] = (),
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
    total_num_shards: int = TOTAL_NUM_SHARDS,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    download: bool = False,
    url_prefix: str = URL_PREFIX,
    compression: Compression = None,
    contiguous: bool = False,
    num_actions: int | None = None,
    decoder: str = "auto",
    progress: bool = False,
    on_result: Callable[[ShardResult], None] | None = None,
) -> ConversionResult:
    """Convert many shards, one output file each: ``{output}/{task}/{shard}.hdf5``.

    :param source: shard files (one or a sequence; converted after the ``shard_ids``), or
        the game's name when it is a name, not a file (same as ``task``).
    :param output: the output directory.
    :param task: the game; required with ``shard_ids`` (optional with explicit files,
        where it defaults to each file's directory name).
    :param shard_ids: shard numbers, read from ``{cache_dir}/{task}/run_{run_id}-XXXXX-of-00100``.
    :param resume: skip shards whose output is already converted and verified
        (:func:`is_converted`); other existing outputs are converted again.
    :param overwrite: replace existing outputs.
    :param contiguous: write every shard with contiguous, uncompressed columns, ready for
        ``load_rl_unplugged(..., memory="disk")`` (see :func:`convert_shard`).
    :param download: fetch missing shards from ``url_prefix`` into ``cache_dir`` first.
    :param on_result: called after every shard (e.g. to report a line).
    :returns: every shard's output (``outputs``, ``parts``: one :class:`ShardResult` per
        shard, in order, ``skipped`` for shards left as they were), total counts and time.
    :raises OutputExistsError: an output exists and neither ``resume`` nor ``overwrite`` is set
        (checked for every shard before any work starts).
    """
    start = time.perf_counter()
    paths, task, jobs = plan_conversion(
        source,
        output,
        task=task,
        run_id=run_id,
        shard_ids=shard_ids,
        cache_dir=cache_dir,
        total_num_shards=total_num_shards,
        resume=resume,
        overwrite=overwrite,
        download=download,
    )
    results: list[ShardResult] = []
    for src, out, game, job_run, job_sid in jobs:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        done = resumed_result(src, out) if resume else None
        if done is not None:
            res = done
        else:
            if not src.exists():
                assert job_run is not None and job_sid is not None
                download_file(shard_url(game, job_run, job_sid, url_prefix), src, progress=progress)
            res = convert_shard(
                src,
                out,
                task=game,
                run_id=job_run,
                shard_id=job_sid,
                workers=workers,
                overwrite=True if (resume or overwrite) else False,
                compression=compression,
                contiguous=contiguous,
                num_actions=num_actions,
                decoder=decoder,
                progress=progress,
            )
        results.append(res)
        if on_result is not None:
            on_result(res)
    return ConversionResult(
        source=", ".join([*([task] if shard_ids and task else []), *map(str, paths)]),
        outputs=tuple(r.output for r in results),
        num_transitions=sum(r.num_transitions for r in results),
        num_episodes=sum(r.num_episodes for r in results),
        seconds=time.perf_counter() - start,
        parts=tuple(results),
    )


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------


def load_rl_unplugged(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    join_episodes: bool = True,
    include_info: bool = True,
    progress: bool | None = None,
    memory: Memory = "ram",
) -> FrameStackReplayBuffer:
    """Open one or several converted shards as one exact Tianshou buffer.

    ``buffer[i].obs`` and ``buffer[i].obs_next`` are ``(4, 84, 84)`` uint8 stacks equal to the
    records' ``o_t``/``o_tp1``; ``act``, ``rew``, ``terminated`` as converted. Shards are
    concatenated in the given order; an episode cut at the end of one shard and continued by
    the next is joined (see :func:`~tianshou_offline.data.framestack.load_framestack_files`).

    :param paths: a file, a directory (all ``*.hdf5`` in it, sorted), or a list of files
        and directories.
    :param memory: ``"ram"`` reads the frames into memory; ``"disk"`` keeps them in the
        shards, memory-mapped (a :class:`~tianshou_offline.data.ondisk.DiskReplayBuffer`,
        sampling uniformly over all shards; shards converted with ``contiguous=True`` or
        rewritten by ``tianshou-offline repack``); ``"auto"``: disk when the frames exceed
        half of the available memory (logged).
    """
    if isinstance(paths, str | os.PathLike):
        p = Path(paths)
        files = sorted(p.glob("*.hdf5")) if p.is_dir() else [p]
        if not files:
            raise SourceNotFoundError(f"{p}: no .hdf5 files")
    else:
        files = []
        for x in paths:
            p = Path(x)
            found = sorted(p.glob("*.hdf5")) if p.is_dir() else [p]
            if not found:
                raise SourceNotFoundError(f"{p}: no .hdf5 files")
            files += found
    if memory != "ram":
        from tianshou_offline.data.ondisk import choose_memory, load_disk_files, observation_bytes

        where = f"{len(files)} shard(s)"
        if choose_memory(memory, observation_bytes(files), where) == "disk":
            return load_disk_files(files, join_episodes=join_episodes, include_info=include_info)
    return load_framestack_files(
        files, join_episodes=join_episodes, include_info=include_info, progress=progress
    )
