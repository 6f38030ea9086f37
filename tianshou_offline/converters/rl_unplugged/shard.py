"""Converting one RL Unplugged Atari shard (TFRecord file) into one buffer file."""

from __future__ import annotations

import collections
import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
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
    PngError,
    RecordChunk,
    TFRecordChunkReader,
    png_decoder,
)
from tianshou_offline.converters.result import ConversionResult
from tianshou_offline.converters.rl_unplugged.sources import (
    CONVERTER_NAME,
    CONVERTER_VERSION,
    PREPROCESSING,
    atari_num_actions,
)
from tianshou_offline.data.atomic import atomic_output, check_new_output, remove_temp, temp_path
from tianshou_offline.data.format import Provenance
from tianshou_offline.data.framestack import (
    KEY_OBS,
    KEY_OBS_NEXT,
    PatchSpool,
)
from tianshou_offline.data.writer import BufferWriter, Compression
from tianshou_offline.errors import (
    DatasetFormatError,
    SourceNotFoundError,
)
from tianshou_offline.progress import progress as progress_bar

log = logging.getLogger(__name__)


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
    except PngError as e:
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
    check_new_output(out, overwrite=overwrite, flag="--overwrite or --resume", directory=True)
    task = task or src.parent.name
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    decoder_name, _ = png_decoder(decoder)
    file_size = src.stat().st_size
    bar = progress_bar(
        total=file_size, unit="B", unit_scale=True, desc=f"convert {src.name}", enabled=progress
    )
    reader = TFRecordChunkReader(src, max_records=chunk_records, on_read=bar.update)
    chunks = iter(reader)
    spool: PatchSpool | None = None
    n_actions = num_actions
    # a file that appeared at ``out`` meanwhile is kept unless overwrite
    with atomic_output(out, overwrite=overwrite, tag="rlu") as tmp_main:
        try:
            first = next(chunks, None)
            if first is None:
                raise DatasetFormatError(
                    f"{src}: holds no records; expected tf.train.Example records"
                )
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
                    os.replace(tmp_packed, tmp_main)
                finally:
                    remove_temp(tmp_packed)
        finally:
            bar.close()
            if spool is not None:
                spool.discard()
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
