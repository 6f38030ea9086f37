"""Reference scores of a dataset — D4RL's ``ref_min_score`` (a random policy's mean return)
and ``ref_max_score`` (an expert's) — where they are stored and how they are read.

Where (:func:`write_reference_scores`):

- **tianshou-offline files** (recorded, ``make-datasets``, and every converted file: D4RL,
  Minari, Tianshou, RL Unplugged): attributes of ``/tianshou_offline`` — ``ref_min_score``
  and ``ref_max_score`` (as ``make-datasets`` writes them) and ``reference_scores`` (the
  whole :class:`ReferenceScores` record as JSON: means, standard deviations, confidence
  intervals, episodes, where the expert's score came from). The attributes are written into
  a copy of the file that then replaces it (:func:`~tianshou_offline.data.atomic.publish`):
  the original is intact until the rename, at the cost of one sequential copy of the file;
  a file that changed during the copy is left as it is (an error).
- **foreign layouts read in place** (a Tianshou ``save_hdf5`` file, a D4RL-keys file): the
  file is not modified — Tianshou's ``ReplayBuffer.load_hdf5`` reads every root attribute
  into the buffer's state, so an attribute there would break Tianshou's own loader, and a
  D4RL file is someone else's download. Their record goes to a **sidecar**
  ``FILE.tianshou_offline.json`` beside the file (written atomically); every reader here
  looks there. ``convert tianshou``/``convert d4rl`` first, to carry the scores inside.

How (:func:`stored_reference_scores`): a computed record (attribute, then sidecar) comes
first; then the scores a converter or ``make-datasets`` stored (``provenance.extra``, its
Minari metadata, ``/tianshou_offline`` attributes). ``inspect``, the examples
(``normalized_score``) and the grid read them through it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tianshou_offline.errors import DatasetFormatError, DataValidationError, OutputExistsError

SIDECAR_SUFFIX = ".tianshou_offline.json"
RECORD_ATTR = "reference_scores"
RECORD_FORMAT = "tianshou-offline-reference-scores"


@dataclass(frozen=True)
class ReferenceScore:
    """One reference: the mean undiscounted episode return of a policy (or of episodes).

    :ivar mean: the reference score.
    :ivar std: the returns' standard deviation (population).
    :ivar episodes: how many episode returns the mean is over.
    :ivar ci_low: lower end of the confidence interval of the mean.
    :ivar ci_high: upper end.
    :ivar source: where the returns came from, e.g. ``"uniform random actions, 100 rollouts
        of Hopper-v5"``, ``"checkpoint expert.pt, 100 rollouts"``, ``"the dataset's best 10 of
        2186 episodes"``.
    """

    mean: float
    std: float
    episodes: int
    ci_low: float
    ci_high: float
    source: str


@dataclass(frozen=True)
class ReferenceScores:
    """A dataset's random and expert references (D4RL's ``ref_min_score``/``ref_max_score``).

    :ivar env_id: the environment the rollouts ran in.
    :ivar random: the random policy's reference (``ref_min_score``).
    :ivar expert: the expert's reference (``ref_max_score``).
    :ivar confidence: the confidence level of the intervals (0.95).
    :ivar interval: how the intervals were computed.
    :ivar seed: the seed of the rollouts and of the bootstrap.
    :ivar created: UTC time of the computation (ISO 8601).
    :ivar package_version: the tianshou-offline version that computed them.
    """

    env_id: str
    random: ReferenceScore
    expert: ReferenceScore
    confidence: float
    interval: str
    seed: int | None
    created: str
    package_version: str

    @property
    def min_score(self) -> float:
        return self.random.mean

    @property
    def max_score(self) -> float:
        return self.expert.mean

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "version": 1, **asdict(self)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str) -> ReferenceScores:
        """:raises DatasetFormatError: not such a record (naming ``where``)."""
        try:
            if doc.get("format") != RECORD_FORMAT:
                raise ValueError(f"format {doc.get('format')!r}")
            refs = {}
            for key in ("random", "expert"):
                d = doc[key]
                refs[key] = ReferenceScore(
                    mean=_finite(d["mean"]), std=float(d["std"]), episodes=int(d["episodes"]),
                    ci_low=float(d["ci_low"]), ci_high=float(d["ci_high"]),
                    source=str(d["source"]),
                )  # fmt: skip
            seed = doc.get("seed")
            return cls(
                env_id=str(doc["env_id"]), random=refs["random"], expert=refs["expert"],
                confidence=float(doc["confidence"]), interval=str(doc["interval"]),
                seed=None if seed is None else int(seed), created=str(doc["created"]),
                package_version=str(doc["package_version"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetFormatError(
                f"{where}: not a reference-scores record ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:120]}); expected the JSON written by "
                "`tianshou-offline reference-scores`"
            ) from e


def _finite(value: Any) -> float:
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"mean {value!r} is not finite")
    return x


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``FILE.tianshou_offline.json`` beside ``path``: a foreign file's reference scores."""
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def _number(value: Any) -> float | None:
    """A stored score (a number, or its text in an HDF5 attribute), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def read_reference_scores(path: str | os.PathLike[str]) -> ReferenceScores | None:
    """The computed record of ``path`` (its ``reference_scores`` attribute, else its
    sidecar), or None.

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a buffer file, or a damaged record.
    """
    from tianshou_offline.data.format import read_metadata

    md = read_metadata(path)
    text = md.extra_attrs.get(RECORD_ATTR)
    where = f"{md.path}: attribute '/tianshou_offline/{RECORD_ATTR}'"
    if text is None:
        side = sidecar_path(path)
        if not side.is_file():
            return None
        text, where = side.read_text(encoding="utf-8", errors="replace"), str(side)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(
            f"{where}: not JSON ({e.msg}); expected a reference-scores record"
        ) from e
    if not isinstance(doc, dict):
        raise DatasetFormatError(f"{where}: a JSON {type(doc).__name__}; expected an object")
    return ReferenceScores.from_dict(doc, where)


def stored_reference_scores(path: str | os.PathLike[str]) -> tuple[float, float] | None:
    """``(ref_min_score, ref_max_score)`` stored for a buffer file, or None when it has none:
    a computed record (attribute or sidecar, :func:`read_reference_scores`) first, then the
    scores ``make-datasets``, ``convert d4rl`` and ``convert minari`` store
    (``provenance.extra``, its ``minari`` metadata, ``/tianshou_offline`` attributes).

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a buffer file.
    """
    from tianshou_offline.data.format import read_metadata

    record = read_reference_scores(path)
    if record is not None:
        return record.min_score, record.max_score
    md = read_metadata(path)
    extra: Mapping[str, Any] = md.provenance.extra if md.provenance is not None else {}
    minari = extra.get("minari")
    for source in (extra, minari if isinstance(minari, Mapping) else {}, md.extra_attrs):
        lo, hi = _number(source.get("ref_min_score")), _number(source.get("ref_max_score"))
        if lo is not None and hi is not None:
            return lo, hi
    return None


def write_reference_scores(
    path: str | os.PathLike[str], scores: ReferenceScores, *, overwrite: bool = False
) -> Path:
    """Store ``scores`` for the dataset at ``path`` (see the module doc for where).

    :param overwrite: replace reference scores the file already has (computed or stored by a
        converter; the record then takes precedence over a converter's).
    :returns: the file written: ``path`` itself, or the sidecar of a foreign layout.
    :raises OutputExistsError: the file has reference scores and not ``overwrite``.
    :raises DataValidationError: the file changed while it was being copied.
    """
    import h5py

    from tianshou_offline.data.atomic import publish, remove_stale_temps, remove_temp, temp_path
    from tianshou_offline.data.format import EXT_GROUP, read_metadata

    p = Path(path)
    md = read_metadata(p)
    existing = stored_reference_scores(p)
    if existing is not None and not overwrite:
        raise OutputExistsError(
            f"{p}: already has reference scores (random {existing[0]:.6g}, expert "
            f"{existing[1]:.6g}); pass overwrite=True (CLI: --overwrite) to replace them"
        )
    doc = json.dumps(scores.to_dict(), indent=1)
    if md.layout != "tianshou_offline":
        side = sidecar_path(p)
        remove_stale_temps(side)
        tmp = temp_path(side, "json")
        try:
            tmp.write_text(doc + "\n", encoding="utf-8")
            publish(tmp, side, overwrite=True)
        finally:
            remove_temp(tmp)
        return side
    before = p.stat()
    remove_stale_temps(p)
    tmp = temp_path(p, "refs")
    try:
        shutil.copyfile(p, tmp)
        shutil.copymode(p, tmp)
        with h5py.File(tmp, "r+") as f:
            attrs = f[EXT_GROUP].attrs
            attrs["ref_min_score"] = repr(scores.min_score)
            attrs["ref_max_score"] = repr(scores.max_score)
            attrs[RECORD_ATTR] = doc
        after = p.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise DataValidationError(
                f"{p}: the file changed while its reference scores were written (another "
                "process appends to it?); left as it was: run again when it is finished"
            )
        publish(tmp, p, overwrite=True)
    finally:
        remove_temp(tmp)
    return p
