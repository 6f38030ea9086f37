"""Rewrite a buffer file so that its columns can be memory-mapped (``tianshou-offline repack``).

A disk-backed buffer (:mod:`tianshou_offline.data.ondisk`) maps each column's bytes straight
from the file, which HDF5 allows for a dataset stored as one contiguous, unfiltered block. The
writer stores columns chunked (they grow while a file is written) and optionally compressed;
:func:`repack` copies a file with every dataset rewritten contiguous and uncompressed, and
everything else (groups, attributes, the episode table, stack patches) as it is. The output
is written to a temporary file beside it and renamed into place
(:func:`~tianshou_offline.data.atomic.publish`): never over an existing file unless
``overwrite``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tianshou_offline.data.atomic import atomic_output, check_new_output, h5_output
from tianshou_offline.data.format import WRITE_LIBVER, check_disk_shard, detect_layout, open_h5
from tianshou_offline.data.validators import check_extent
from tianshou_offline.errors import DatasetFormatError, OutputExistsError, SourceNotFoundError
from tianshou_offline.progress import progress as progress_bar

log = logging.getLogger(__name__)

_BLOCK_BYTES = 64 << 20


def _copy_attrs(src: h5py.AttributeManager, dst: h5py.AttributeManager) -> None:
    for name in src:
        aid = src.get_id(name)
        dst.create(name, src[name], dtype=aid.dtype, shape=aid.shape)


def _is_mappable(ds: h5py.Dataset) -> bool:
    dcpl = ds.id.get_create_plist()
    return bool(dcpl.get_layout() == h5py.h5d.CONTIGUOUS and dcpl.get_nfilters() == 0)


def unmappable_datasets(path: str | os.PathLike[str]) -> list[str]:
    """Names of the array datasets of ``path`` that are chunked or filtered (empty: every
    column can be mapped, no repack needed)."""
    out: list[str] = []
    with open_h5(path) as f:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.shape and not _is_mappable(obj):
                out.append("/" + name)

        f.visititems(visit)
    return out


def unmappable_columns(path: str | os.PathLike[str]) -> list[str]:
    """Which of ``/_meta/obs`` and ``/_meta/obs_next`` (the columns a disk-backed buffer
    maps) are stored chunked or filtered; only those two datasets are looked at."""
    out: list[str] = []
    with open_h5(path) as f:
        meta = f.get("_meta")
        if not isinstance(meta, h5py.Group):
            return out
        for name in ("obs", "obs_next"):
            ds = meta.get(name)
            if isinstance(ds, h5py.Dataset) and ds.shape and not _is_mappable(ds):
                out.append(f"/_meta/{name}")
    return out


def repack_into(src: h5py.File, dst: h5py.File, *, bar: Any = None) -> None:
    """Copy every group, attribute and dataset of ``src`` into the empty ``dst``; array
    datasets become contiguous and unfiltered (copied in 64 MiB blocks), scalars are copied
    as they are.

    :raises DatasetFormatError: a dataset declares more rows than the file stores
        (:func:`~tianshou_offline.data.validators.check_extent`), or a soft or external
        link (which the copy would drop).
    """
    _copy_attrs(src.attrs, dst.attrs)

    def copy_group(s: h5py.Group, d: h5py.Group) -> None:
        for name, obj in s.items():
            link = s.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):  # not part of the format: not copied
                raise DatasetFormatError(
                    f"{src.filename}: '{s.name.rstrip('/')}/{name}' is a "
                    f"{type(link).__name__}; expected a dataset or group (buffer files hold "
                    "no links, and a repacked copy would lose what it points to)"
                )
            if isinstance(obj, h5py.Group):
                g = d.create_group(name)
                _copy_attrs(obj.attrs, g.attrs)
                copy_group(obj, g)
            elif isinstance(obj, h5py.Dataset):
                if obj.shape:  # an extent the file cannot hold would be copied as fill values
                    check_extent(obj, obj.shape[0])
                if not obj.shape or obj.dtype.kind not in "biufcS":
                    s.copy(obj, d, name=name)  # scalars, strings, opaque data: as stored
                    continue
                out = d.create_dataset(name, shape=obj.shape, dtype=obj.dtype)
                _copy_attrs(obj.attrs, out.attrs)
                row = max(1, int(np.prod(obj.shape[1:], dtype=np.int64)) * obj.dtype.itemsize)
                step = max(1, _BLOCK_BYTES // row)
                for a in range(0, obj.shape[0], step):
                    b = min(obj.shape[0], a + step)
                    block = np.empty((b - a, *obj.shape[1:]), dtype=obj.dtype)
                    obj.read_direct(block, np.s_[a:b])
                    out.write_direct(block, dest_sel=np.s_[a:b])
                    if bar is not None:
                        bar.update((b - a) * row)
                # a failed write raises here: libhdf5 may hold the data until the dataset is
                # closed, and h5py only prints an error raised when a dataset is collected
                out.flush()

    copy_group(src, dst)


def _array_bytes(f: h5py.File) -> int:
    total = 0

    def visit(_: str, obj: Any) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset) and obj.shape:
            total += int(np.prod(obj.shape, dtype=np.int64)) * obj.dtype.itemsize

    f.visititems(visit)
    return total


def check_source(f: h5py.File, path: str) -> None:
    """Refuse, before anything is written, a source whose copy the loaders would refuse: a
    file of no layout :func:`~tianshou_offline.data.buffer.load_buffer` reads, and a
    tianshou-offline file that fails the disk-backed loader's own checks
    (:func:`~tianshou_offline.data.format.check_disk_shard`, every column, ``info`` included:
    a repacked file is written for ``memory="disk"``). Tianshou's and D4RL's layouts, which
    the disk-backed loader does not read, are copied as they are.

    :raises DatasetFormatError: naming the file and what the loader would refuse (a string
        column, a column of too few rows, a malformed episode table, ...).
    """
    if detect_layout(f) != "tianshou_offline":
        return
    try:
        check_disk_shard(f, path, include_info=True)
    except DatasetFormatError as e:
        raise type(e)(f"{e}; not repacked: load_buffer(memory='disk') would refuse the copy") from e


def repack_file(src: Path, tmp: Path, *, progress: bool | None = None) -> None:
    """Write the repacked copy of ``src`` to ``tmp`` (which must not exist); no rename.

    :raises DatasetFormatError: the source fails :func:`check_source` (nothing is written).
    """
    with open_h5(src) as f:
        check_source(f, str(src))
        total = _array_bytes(f)
        show = progress if progress is not None else total >= (1 << 30)
        with (
            progress_bar(
                total=total, unit="B", unit_scale=True, desc=f"repack {src.name}", enabled=show
            ) as bar,
            h5_output(tmp, "x", libver=WRITE_LIBVER) as out,
        ):
            repack_into(f, out, bar=bar)


def repack(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Copy ``source`` to ``output`` with every column contiguous and uncompressed, so that
    ``load_buffer(output, memory="disk")`` maps it (the data and metadata are unchanged).

    :param overwrite: replace an existing ``output`` (never ``source`` itself).
    :param progress: show a progress bar (default: for more than 1 GiB).
    :returns: the output path.
    :raises SourceNotFoundError: no such source, or no output directory.
    :raises OutputExistsError: ``output`` exists and ``overwrite`` is False, or it is ``source``.
    :raises DatasetFormatError: the source is not an HDF5 file, or one whose copy the
        loaders would refuse (:func:`check_source`: checked before anything is written).
    """
    src = Path(source)
    out = Path(output)
    if not src.exists():
        raise SourceNotFoundError(f"{src}: no such file")
    if out.exists() and out.resolve() == src.resolve():
        raise OutputExistsError(f"{out}: is the source file; repack writes a new file")
    check_new_output(out, overwrite=overwrite, directory=True)
    with atomic_output(out, overwrite=overwrite, tag="repack") as tmp:
        repack_file(src, tmp, progress=progress)
    log.info("%s -> %s: repacked (contiguous, uncompressed columns)", src, out)
    return out
