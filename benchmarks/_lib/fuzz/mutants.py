"""The mutants (:func:`make_mutant`): byte-level, h5py-level, TFRecord and Minari mutations of a
seed."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from benchmarks._lib.fuzz.seeds import Seed, _png, frame_record


def _data_regions(path: Path) -> list[tuple[int, int]]:
    """Byte ranges of the datasets' raw data (the rest of the file is HDF5 metadata)."""
    regions: list[tuple[int, int]] = []

    def visit(_: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        with contextlib.suppress(Exception):
            layout = obj.id.get_create_plist().get_layout()
            if layout == h5py.h5d.CONTIGUOUS:
                off = obj.id.get_offset()
                if off is not None:
                    regions.append((off, off + obj.id.get_storage_size()))
            elif layout == h5py.h5d.CHUNKED:
                for i in range(obj.id.get_num_chunks()):
                    info = obj.id.get_chunk_info(i)
                    regions.append((info.byte_offset, info.byte_offset + info.size))

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except Exception:
        return []
    return sorted(regions)


def _structural_position(rng: random.Random, size: int, regions: list[tuple[int, int]]) -> int:
    for _ in range(20):
        pos = rng.randrange(size)
        if not any(a <= pos < b for a, b in regions):
            return pos
    return rng.randrange(size)


def mutate_bytes(data: bytearray, rng: random.Random, regions: list[tuple[int, int]]) -> str:
    """One byte-level mutation of ``data`` in place; returns its description."""
    size = len(data)
    if size == 0:
        data.extend(b"\x00")
        return "grow empty file"
    pick = rng.random()
    structural = rng.random() < 0.8

    def pos() -> int:
        return _structural_position(rng, size, regions) if structural else rng.randrange(size)

    if pick < 0.45:
        k = rng.choice([1, 1, 2, 3, 4, 8, 16])
        where = []
        for _ in range(k):
            p = pos()
            data[p] ^= 1 << rng.randrange(8)
            where.append(p)
        return f"flip {k} bits at {where[:4]}"
    if pick < 0.65:
        p = pos()
        n = rng.choice([1, 2, 4, 8, 16, 64])
        value = rng.choice([b"\x00", b"\xff", None])
        chunk = bytes(rng.randrange(256) for _ in range(n)) if value is None else value * n
        data[p : p + n] = chunk[: max(0, min(n, size - p))]
        return f"overwrite {n} bytes at {p} with {'random' if value is None else value.hex()}"
    if pick < 0.85:
        cut = rng.choice([0, 8, 96, 512, size // 2, size - 1, rng.randrange(size), pos(), pos()])
        del data[cut:]
        return f"truncate to {cut} bytes"
    if pick < 0.93:
        p = pos()
        n = rng.choice([1, 8, 64])
        del data[p : p + n]
        return f"delete {n} bytes at {p}"
    junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 100, 5000])))
    data.extend(junk)
    return f"append {len(junk)} bytes"


_BIG_SPACE = json.dumps(
    {
        "type": "Box",
        "shape": [100000, 100000],
        "dtype": "<f4",
        "low": {"fill": 0},
        "high": {"fill": 1},
    }
)
_HOSTILE_ATTRS: list[Any] = [
    0, -1, 1, 2, 3, 2**31, 2**62, -(2**62), np.uint64(2**64 - 1), 1e308, float("nan"),
    float("inf"), -0.5, "", "abc", "{", "[]", "null", "1", "2", "-1", '{"type": "Box"}',
    _BIG_SPACE, "[" * 50000, b"\xff\xfe\xfa", np.array([1, 2, 3]), np.zeros(0),
    np.array([[1.5]]), True, False,
]  # fmt: skip
_IMPORTANT_ATTRS = (
    "format_version", "num_episodes", "num_transitions", "stack_num", "_size", "maxsize",
    "_insertion_idx", "buffer_num", "observation_space", "action_space", "provenance.extra",
    "version", "__data_type__", "save_only_last_obs", "_save_only_last_obs", "_save_obs_next",
    "_sample_avail", "obs_next_stored", "env_spec", "total_steps", "seed", "id",
)  # fmt: skip
_HOSTILE_JSON: list[Any] = [
    None, -1, 0, 10**30, -(10**30), 1e308, "x", "inf", [], {}, [1, 2], {"a": 1}, True, 2.5,
    [10**9, 10**9], "Box", "Discrete", "<U4", "|O", "<f4",
]  # fmt: skip


def _mutate_json(doc: Any, rng: random.Random) -> Any:
    """Replace one node of a JSON document with a hostile value."""
    if isinstance(doc, dict) and doc and rng.random() < 0.8:
        key = rng.choice(list(doc))
        if rng.random() < 0.15:
            doc.pop(key)
            return doc
        doc[key] = _mutate_json(doc[key], rng)
        return doc
    if isinstance(doc, list) and doc and rng.random() < 0.8:
        i = rng.randrange(len(doc))
        doc[i] = _mutate_json(doc[i], rng)
        return doc
    return rng.choice(_HOSTILE_JSON)


def _corrupt_text(text: str, rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.4:
        try:
            return json.dumps(_mutate_json(json.loads(text), rng))
        except (ValueError, RecursionError):
            pass
    if pick < 0.7 and text:
        cut = rng.randrange(len(text))
        return text[:cut]
    if text:
        i = rng.randrange(len(text))
        return text[:i] + rng.choice(['"', "{", "]", "9", "\\", "\x00", "é"]) + text[i + 1 :]
    return rng.choice(["{", "x"])


def _hostile_attr(old: Any, rng: random.Random) -> Any:
    if rng.random() < 0.4:
        text = old.decode(errors="replace") if isinstance(old, bytes) else old
        if isinstance(text, str) and text:
            return _corrupt_text(text, rng)
        if isinstance(old, int | np.integer) and not isinstance(old, bool | np.bool_):
            return rng.choice([int(old) + 1, int(old) - 1, -int(old), int(old) * 1000, 2**40])
    return rng.choice(_HOSTILE_ATTRS)


def _objects(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visit(names.append)
    return names


def _hostile_values(data: np.ndarray, rng: random.Random) -> np.ndarray:
    out = np.array(data, copy=True)
    if out.size == 0:
        return out
    flat = out.reshape(-1)
    k = rng.choice([1, 2, max(1, flat.size // 4), flat.size])  # flat.size: every value
    idx = list(range(flat.size)) if k == flat.size else [rng.randrange(flat.size) for _ in range(k)]
    kind = out.dtype.kind
    if kind == "f":
        flat[idx] = rng.choice([np.nan, np.inf, -np.inf, 1e38, -1e38])
    elif kind in "iu":
        n = out.shape[0] if out.ndim else 1
        info = np.iinfo(out.dtype)
        choices = [-1, -(2**62), 2**62, n, n + 1, 2**31 - 1, 0, int(info.max), int(info.min)]
        flat[idx] = rng.choice([c for c in choices if info.min <= c <= info.max])
    elif kind == "b":
        flat[idx] = ~flat[idx]
    elif rng.random() < 0.5 and out.ndim:
        out = out[::-1].copy()
    return out


def _variant(data: Any, rng: random.Random) -> tuple[str, Any]:
    """A replacement for a dataset's value: ``(description, array | spec)``."""
    arr = np.asarray(data) if not isinstance(data, h5py.Empty) else np.zeros(0)
    if arr.dtype.kind == "O":
        arr = np.asarray([str(x) for x in arr.reshape(-1)], dtype=object)
    n = arr.shape[0] if arr.ndim else 1
    ops: list[tuple[str, Callable[[], Any]]] = [
        *[("values", lambda: _hostile_values(arr, rng))] * 5,
        ("dtype f8", lambda: arr.astype(np.float64) if arr.dtype.kind in "biuf" else arr),
        ("dtype i1", lambda: arr.astype(np.int8) if arr.dtype.kind in "biuf" else arr),
        ("dtype u8", lambda: np.abs(arr).astype(np.uint64) if arr.dtype.kind in "biuf" else arr),
        ("dtype bool", lambda: arr.astype(bool) if arr.dtype.kind in "biuf" else arr),
        ("dtype f2", lambda: arr.astype(np.float16) if arr.dtype.kind in "biuf" else arr),
        ("dtype S4", lambda: arr.astype("S4")),
        ("dtype vlen str", lambda: ("vlen", np.asarray([str(x) for x in arr.reshape(-1)], object))),
        ("dtype compound", lambda: ("compound", arr)),
        ("extra axis", lambda: arr[..., None]),
        ("extra axis x2", lambda: np.stack([arr, arr], axis=-1)),
        ("zero-length axis", lambda: (arr if arr.ndim >= 2 else arr.reshape(-1, 1))[..., :0]),
        ("flatten", lambda: arr.reshape(-1)),
        ("first column", lambda: arr[:, 0] if arr.ndim >= 2 else arr.reshape(-1)[:1]),
        ("0-d", lambda: arr.reshape(-1)[0] if arr.size else np.int64(7)),
        ("empty", lambda: arr[:0]),
        ("null dataspace", lambda: ("empty", arr.dtype)),
        ("one row fewer", lambda: arr[:-1]),
        ("one row more", lambda: np.concatenate([arr, arr[:1]]) if arr.ndim else arr),
        ("half", lambda: arr[: n // 2]),
        ("doubled", lambda: np.concatenate([arr, arr]) if arr.ndim else arr),
        ("huge extent", lambda: ("huge", arr, rng.choice([2**20, 2**31, 2**40, 2**50]))),
        ("chunked gzip", lambda: ("gzip", arr)),
        ("reversed", lambda: arr[::-1].copy() if arr.ndim else arr),
        ("scalar 7", lambda: np.int64(7)),
    ]
    name, make = rng.choice(ops)
    return name, make()


def _write_variant(group: h5py.Group, key: str, value: Any, attrs: dict[str, Any]) -> None:
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        tag = value[0]
        if tag == "vlen":
            ds = group.create_dataset(key, data=value[1], dtype=h5py.string_dtype())
        elif tag == "compound":
            arr = value[1]
            if arr.ndim == 0 or arr.dtype.kind not in "biuf":
                ds = group.create_dataset(key, data=arr)
            else:
                dt = np.dtype([("a", arr.dtype, arr.shape[1:]), ("b", np.int32)])
                rec = np.zeros(arr.shape[0], dtype=dt)
                rec["a"] = arr
                ds = group.create_dataset(key, data=rec)
        elif tag == "empty":
            dtype = value[1] if value[1].kind in "biufS" else np.dtype("f4")
            ds = group.create_dataset(key, data=h5py.Empty(dtype))
        elif tag == "huge":
            arr, rows = value[1], value[2]
            if arr.ndim == 0 or arr.dtype.kind not in "biufS" or arr.shape[0] == 0:
                ds = group.create_dataset(key, data=arr)
            else:
                ds = group.create_dataset(
                    key, data=arr, maxshape=(None, *arr.shape[1:]), chunks=(1, *arr.shape[1:])
                )
                ds.resize(rows, axis=0)
        elif tag == "gzip":
            arr = value[1]
            if arr.ndim == 0 or arr.dtype.kind == "O" or arr.size == 0:
                ds = group.create_dataset(key, data=arr)
            else:
                ds = group.create_dataset(key, data=arr, compression="gzip", chunks=True)
        else:  # pragma: no cover
            raise ValueError(tag)
    else:
        ds = group.create_dataset(key, data=value)
    for k, v in attrs.items():
        with contextlib.suppress(Exception):
            ds.attrs[k] = v


def mutate_h5(path: Path, rng: random.Random) -> str:
    """One semantic mutation of an HDF5 file through h5py; returns its description (a few
    tries: h5py refuses some values, e.g. strings with NUL characters)."""
    for _ in range(5):
        try:
            return _mutate_h5_once(path, rng)
        except Exception:
            continue
    return "no-op"


def _mutate_h5_once(path: Path, rng: random.Random, only_under: str | None = None) -> str:
    with h5py.File(path, "r+") as f:
        names = [n for n in _objects(f) if only_under is None or n.startswith(only_under)]
        holders = ["/", *names]
        pick = rng.random()
        if pick < 0.3 and names:  # replace a dataset's value
            datasets = [n for n in names if isinstance(f.get(n, getlink=False), h5py.Dataset)]
            if datasets:
                name = rng.choice(datasets)
                ds = f[name]
                attrs = dict(ds.attrs)
                data = ds[()]
                what, value = _variant(data, rng)
                parent, key = ds.parent, name.rsplit("/", 1)[-1]
                del parent[key]
                if rng.random() < 0.1:
                    attrs = {}
                _write_variant(parent, key, value, attrs)
                return f"{name}: {what}"
        if pick < 0.5:  # set an attribute to a hostile value
            holder = rng.choice(holders)
            obj = f[holder]
            keys = list(obj.attrs)
            if keys and rng.random() < 0.7:
                key = rng.choice(keys)
                old = obj.attrs[key]
            else:
                key, old = rng.choice(_IMPORTANT_ATTRS), None
            value = _hostile_attr(old, rng)
            obj.attrs[key] = value
            return f"{holder}@{key} = {str(value)[:40]!r}"
        if pick < 0.6:  # delete an attribute
            holder = rng.choice(holders)
            keys = list(f[holder].attrs)
            if keys:
                key = rng.choice(keys)
                del f[holder].attrs[key]
                return f"delete {holder}@{key}"
        if pick < 0.75 and names:  # delete an object
            name = rng.choice(names)
            if name in f:
                del f[name]
                return f"delete {name}"
        if pick < 0.85 and len(names) >= 2:  # rename or swap
            a, b = rng.sample(names, 2)
            if a in f and b in f and not b.startswith(a + "/") and not a.startswith(b + "/"):
                if rng.random() < 0.5:
                    f.move(a, "__tmp__")
                    f.move(b, a)
                    f.move("__tmp__", b)
                    return f"swap {a} <-> {b}"
                f.move(a, a + "_renamed")
                return f"rename {a}"
        if pick < 0.92 and names:  # a link where an object was
            name = rng.choice(names)
            if name in f:
                target = rng.choice([*names, "/nowhere", "/"])
                del f[name]
                if rng.random() < 0.7:
                    f[name] = h5py.SoftLink(target if target.startswith("/") else "/" + target)
                    return f"{name} -> soft link {target}"
                f[name] = h5py.ExternalLink("missing.h5", "/x")
                return f"{name} -> external link"
        # a group becomes a dataset, or gains an unexpected member
        groups = [n for n in names if isinstance(f.get(n), h5py.Group)]
        if groups:
            name = rng.choice(groups)
            if rng.random() < 0.5:
                del f[name]
                f[name] = np.arange(3)
                return f"group {name} -> dataset"
            f[name].create_dataset("zzz_extra", data=np.arange(rng.choice([0, 1, 5, 1000])))
            return f"extra dataset in {name}"
    return "no-op"


def _tfrecord_stream(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _split_records(stream: bytes) -> list[bytes]:
    recs, pos = [], 0
    while pos + 12 <= len(stream):
        (n,) = struct.unpack_from("<Q", stream, pos)
        recs.append(stream[pos + 12 : pos + 12 + n])
        pos += 16 + n
    return recs


def _mutate_example(payload: bytes, rng: random.Random) -> tuple[str, bytes]:
    from tianshou_offline.converters._tfrecord import example_class

    ex = example_class()()
    try:
        ex.ParseFromString(payload)
    except Exception:  # an earlier mutation garbled it: garble it more
        b = bytearray(payload or b"\x00")
        b[rng.randrange(len(b))] = rng.randrange(256)
        return "garbage payload byte", bytes(b)
    feats = ex.features.feature
    key = rng.choice(["o_t", "o_tp1", "a_t", "a_tp1", "r_t", "d_t", "episode_id", "episode_return"])
    pick = rng.random()
    if pick < 0.2:
        del feats[key]
        return f"delete feature {key}", ex.SerializeToString()
    if key in ("o_t", "o_tp1"):
        frames = list(feats[key].bytes_list.value)
        what = rng.choice(["drop", "add", "garbage", "rgb", "size", "16bit", "empty", "many"])
        if what == "drop":
            frames = frames[:-1]
        elif what == "add":
            frames.append(frames[0])
        elif what == "garbage":
            frames[rng.randrange(len(frames))] = bytes(rng.randrange(256) for _ in range(50))
        elif what == "rgb":
            from PIL import Image

            bio = io.BytesIO()
            Image.new("RGB", (12, 12)).save(bio, format="PNG")
            frames[-1] = bio.getvalue()
        elif what == "size":
            frames[rng.randrange(len(frames))] = _png(
                np.zeros((rng.choice([1, 13, 300]), 12), np.uint8)
            )
        elif what == "16bit":
            from PIL import Image

            bio = io.BytesIO()
            Image.fromarray(np.zeros((12, 12), np.uint16)).save(bio, format="PNG")
            frames[-1] = bio.getvalue()
        elif what == "empty":
            frames = []
        else:
            frames = frames * 500
        feats[key].ClearField("bytes_list")
        feats[key].bytes_list.value.extend(frames)
        return f"{key}: {what}", ex.SerializeToString()
    kind = feats[key].WhichOneof("kind")
    feats[key].ClearField(kind)
    value = rng.choice([-1, 2**63 - 1, -(2**63), 10**6, 0, float("nan"), float("inf")])
    if rng.random() < 0.2:
        feats[key].bytes_list.value.append(b"x")
        return f"{key}: wrong kind", ex.SerializeToString()
    if kind == "int64_list":
        feats[key].int64_list.value.extend(
            [int(value) if isinstance(value, int) else 3] * rng.choice([1, 0, 2])
        )
    else:
        feats[key].float_list.value.extend([float(value)] * rng.choice([1, 0, 2]))
    return f"{key} = {value}", ex.SerializeToString()


def mutate_tfrecord(path: Path, rng: random.Random) -> str:
    try:
        recs = _split_records(_tfrecord_stream(path))
    except (OSError, EOFError, zlib.error):
        recs = []
    if not recs:  # an earlier mutation broke the framing: mutate the bytes
        data = bytearray(path.read_bytes())
        what = mutate_bytes(data, rng, [])
        path.write_bytes(bytes(data))
        return what
    pick = rng.random()
    frames = [frame_record(r) for r in recs]
    compress = rng.random() < 0.6
    if pick < 0.15:  # flip a byte of a CRC or of a length field (CRCs left as they are)
        i = rng.randrange(len(frames))
        b = bytearray(frames[i])
        p = rng.choice([rng.randrange(8), 8 + rng.randrange(4), len(b) - 1 - rng.randrange(4)])
        b[p] ^= 1 << rng.randrange(8)
        frames[i] = bytes(b)
        what = f"record {i}: flip byte {p}"
    elif pick < 0.3:  # garbage or huge length field with a matching length CRC
        i = rng.randrange(len(frames))
        length = rng.choice(
            [0, 1, 11, len(recs[i]) + 1, len(recs[i]) - 1, 2**31, 2**40, 2**63, 2**64 - 1]
        )
        frames[i] = frame_record(recs[i], length=length)
        what = f"record {i}: length field {length}"
    elif pick < 0.45:  # garbage payload with valid CRCs
        i = rng.randrange(len(frames))
        b = bytearray(recs[i] or b"\x00")
        for _ in range(rng.choice([1, 4, 32])):
            b[rng.randrange(len(b))] = rng.randrange(256)
        frames[i] = frame_record(bytes(b))
        what = f"record {i}: garbage payload bytes"
    elif pick < 0.7:  # a malformed Example with valid CRCs
        i = rng.randrange(len(frames))
        what, payload = _mutate_example(recs[i], rng)
        frames[i] = frame_record(payload)
        what = f"record {i}: {what}"
    elif pick < 0.8:  # records dropped, duplicated, reordered, or none
        op = rng.choice(["drop", "dup", "swap", "none"])
        i = rng.randrange(len(frames))
        if op == "drop":
            del frames[i]
        elif op == "dup":
            frames.insert(i, frames[i])
        elif op == "swap":
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        else:
            frames = []
        what = f"records: {op} {i}"
    else:  # byte-level mutation of the stream or of the gzip file
        stream = bytearray(b"".join(frames))
        if compress and rng.random() < 0.5:
            stream = bytearray(gzip.compress(bytes(stream), mtime=0))
            what = "gzip: " + mutate_bytes(stream, rng, [])
            path.write_bytes(bytes(stream))
            return what
        what = "stream: " + mutate_bytes(stream, rng, [])
        frames = [bytes(stream)]
    stream_b = b"".join(frames)
    path.write_bytes(gzip.compress(stream_b, mtime=0) if compress else stream_b)
    return what + (" (gzip)" if compress else "")


def mutate_minari(data_dir: Path, rng: random.Random) -> str:
    h5 = data_dir / "main_data.hdf5"
    meta = data_dir / "metadata.json"
    pick = rng.random()
    if pick < 0.3:
        text = meta.read_text(errors="replace")
        try:
            doc = json.loads(text) if rng.random() < 0.7 else None
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc:
            key = rng.choice(list(doc))
            if key in ("observation_space", "action_space") and rng.random() < 0.7:
                doc[key] = _corrupt_text(doc[key], rng)
            elif rng.random() < 0.15:
                del doc[key]
            else:
                doc[key] = rng.choice(_HOSTILE_JSON)
            meta.write_text(json.dumps(doc))
            return f"metadata.json: {key} mutated"
        meta.write_text(_corrupt_text(text, rng))
        return "metadata.json: text corrupted"
    if pick < 0.75:
        what = mutate_h5(h5, rng)
        if what != "no-op":  # else an earlier mutation broke the file: mutate its bytes
            return "main_data.hdf5: " + what
    data = bytearray(h5.read_bytes())
    what = mutate_bytes(data, rng, _data_regions(h5))
    h5.write_bytes(bytes(data))
    return "main_data.hdf5: " + what


def make_mutant(seed: Seed, out: Path, rng: random.Random) -> str:
    """Write a mutant of ``seed`` at ``out`` (a directory for Minari); returns what was done."""
    if seed.name == "minari":
        shutil.copytree(seed.path, out)
        return "; ".join(mutate_minari(out, rng) for _ in range(_n_ops(rng)))
    shutil.copyfile(seed.path, out)
    if seed.name == "tfrecord":
        return "; ".join(mutate_tfrecord(out, rng) for _ in range(_n_ops(rng)))
    steps: list[str] = []
    if rng.random() < 0.55:
        for _ in range(_n_ops(rng)):
            steps.append(mutate_h5(out, rng))
            if steps[-1] == "no-op":
                break
        if rng.random() < 0.15:
            data = bytearray(out.read_bytes())
            steps.append(mutate_bytes(data, rng, _data_regions(out)))
            out.write_bytes(bytes(data))
    else:
        regions = _data_regions(out)
        data = bytearray(out.read_bytes())
        for _ in range(_n_ops(rng)):
            steps.append(mutate_bytes(data, rng, regions))
        out.write_bytes(bytes(data))
    return "; ".join(steps)


def _byte_mutant(seed: Seed, out: Path, rng: random.Random) -> str:
    """A fresh copy of ``seed`` at ``out`` with one byte-level mutation (its main file)."""
    if out.is_dir():
        shutil.rmtree(out)
    if seed.name == "minari":
        shutil.copytree(seed.path, out)
        target = out / "main_data.hdf5"
    else:
        shutil.copyfile(seed.path, out)
        target = out
    data = bytearray(target.read_bytes())
    what = mutate_bytes(data, rng, [])
    target.write_bytes(bytes(data))
    return what


def _n_ops(rng: random.Random) -> int:
    x = rng.random()
    return 1 if x < 0.65 else 2 if x < 0.9 else 3
