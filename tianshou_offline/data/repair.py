"""Repair of a buffer file whose writer was killed (``tianshou-offline repair``).

An append-mode :class:`~tianshou_offline.data.writer.BufferWriter` (the episode recorder)
commits one episode at a time, so a killed process leaves a loadable file whose columns may
hold rows past the last committed episode and whose SWMR flag is still set.
:func:`repair_file` rewrites it as a cleanly closed file holding exactly the committed
episodes; the writer calls it before appending to such a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tianshou_offline.data.atomic import atomic_output, h5_output
from tianshou_offline.data.format import (
    DATA_TYPE_ATTR,
    EXT_GROUP,
    META_GROUP,
    SWMR_LIBVER,
    committed_counts,
    detect_layout,
    open_h5,
)
from tianshou_offline.errors import DatasetFormatError


def repair_file(path: str | os.PathLike[str]) -> Path:
    """Rewrite a buffer file whose writer was killed, keeping its committed episodes.

    The result is a cleanly closed file (readable by Tianshou's ``load_hdf5`` as well);
    the rewrite goes to a temporary file that replaces ``path`` atomically.

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not an HDF5 file, or not a tianshou-offline buffer file (e.g. a
        Tianshou ``save_hdf5`` or D4RL file: ``repair`` mends only files this package writes).
    """
    p = Path(path)
    with open_h5(p) as f:
        layout = detect_layout(f)
    if layout != "tianshou_offline":
        source = "d4rl" if layout == "d4rl" else "tianshou"
        raise DatasetFormatError(
            f"{p}: a {layout} file, not a tianshou-offline buffer; repair rewrites only files "
            "written by tianshou-offline (BufferWriter, EpisodeRecorder, convert, record) "
            f"whose writer was killed (to read this one, 'tianshou-offline convert {source}' "
            "it)"
        )
    with atomic_output(p, overwrite=True, tag="repair") as tmp:
        with open_h5(p) as src, h5_output(tmp, "w", libver=SWMR_LIBVER) as dst:
            n, n_ep = committed_counts(src)
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            dst.attrs["maxsize"] = np.int64(n)
            dst.attrs["_size"] = np.int64(n)

            def copy_group(s: h5py.Group, d: h5py.Group, rows: int | None) -> None:
                for k, v in s.attrs.items():
                    d.attrs[k] = v
                for key in s.keys():
                    item = s[key]
                    if isinstance(item, h5py.Group):
                        copy_group(item, d.create_group(key), rows)
                    else:
                        data = item[:rows] if rows is not None and item.ndim else item[()]
                        kw: dict[str, Any] = {}
                        if item.chunks is not None:
                            kw = {
                                "chunks": item.chunks,
                                "maxshape": (None, *item.shape[1:]),
                                "compression": item.compression,
                                "compression_opts": item.compression_opts,
                            }
                        out = d.create_dataset(key, data=data, **kw)
                        for ak, av in item.attrs.items():
                            out.attrs[ak] = av

            for key in src.keys():
                item = src[key]
                if key == EXT_GROUP:
                    g = dst.create_group(key)
                    for ak, av in item.attrs.items():
                        g.attrs[ak] = av
                    g.attrs["num_transitions"] = np.int64(n)
                    g.attrs["num_episodes"] = np.int64(n_ep)
                    copy_group(item["episodes"], g.create_group("episodes"), n_ep)
                    for sub in item.keys():
                        if sub != "episodes":
                            src.copy(item[sub], g, name=sub)
                elif key in (META_GROUP, "_indices"):
                    if isinstance(item, h5py.Group):
                        copy_group(item, dst.create_group(key), n)
                    else:
                        dst.create_dataset(key, data=item[:n], chunks=item.chunks, maxshape=(None,))
                        for ak, av in item.attrs.items():
                            dst[key].attrs[ak] = av
                elif key == "last_index":
                    dst.create_dataset(key, data=np.array([max(n - 1, 0)], dtype=np.int64))
                    dst[key].attrs[DATA_TYPE_ATTR] = "ndarray"
                else:
                    src.copy(item, dst, name=key)
    return p
