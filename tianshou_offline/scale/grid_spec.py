"""What a grid is: a :class:`Cell` (algorithm, dataset, seed, overrides, :class:`Budget`), a
:class:`Grid` of cells, and reading grid files (YAML, TOML or JSON; :func:`load_grid`); see
:mod:`tianshou_offline.scale.grid` (which re-exports them) for the file's keys."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tianshou_offline.data.atomic import atomic_output
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    SourceNotFoundError,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """How long a cell trains and how it is evaluated."""

    epochs: int = 10
    steps_per_epoch: int = 1000
    """Gradient steps per epoch; a checkpoint and a test after each epoch."""
    batch_size: int = 256
    test_episodes: int = 5
    """Episodes of each per-epoch test (the learning curve)."""
    eval_episodes: int = 10
    """Episodes of the final evaluation (the table)."""


@dataclass(frozen=True)
class Cell:
    """One training run of a grid."""

    algorithm: str
    """A name of :mod:`tianshou_offline.scale.algorithms` (``il``, ``bcq``, ``cql``, …)."""
    dataset: str
    """A buffer file (``load_buffer``); on a cluster, at the same path on every node."""
    seed: int = 0
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Hyperparameters replacing the algorithm's defaults (JSON values)."""
    budget: Budget = Budget()
    env_id: str | None = None
    """The evaluation environment (default: the env id stored in the file)."""
    num_cpus: float = 1.0
    """CPUs the cell's task requests (and torch threads: ``max(1, int(num_cpus))``)."""
    num_gpus: float = 0.0
    """GPUs the cell's task requests; > 0 trains on ``cuda``."""

    def spec(self) -> dict[str, Any]:
        """The cell as JSON values (what its key hashes; resources are not part of it)."""
        return {
            "algorithm": self.algorithm,
            "dataset": str(self.dataset),
            "seed": int(self.seed),
            "overrides": dict(sorted(self.overrides.items())),
            "budget": asdict(self.budget),
            "env_id": self.env_id,
        }

    @property
    def group(self) -> str:
        """What the cell's row of the table is: everything but the seed."""
        over = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.overrides.items()))
        return f"{self.algorithm}{f'[{over}]' if over else ''} on {Path(self.dataset).stem}"

    @property
    def key(self) -> str:
        """The cell's directory name: readable, and unique for its :meth:`spec`."""
        blob = json.dumps(self.spec(), sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(self.dataset).stem)
        return f"{self.algorithm}-{stem}-s{self.seed}-{digest}"


def _fmt(v: Any) -> str:
    return json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v


# --------------------------------------------------------------------------- grid files


OPE_KEYS = {
    "estimators": "estimators", "steps": "fqe_steps", "gamma": "gamma",
    "hidden_sizes": "fqe_hidden", "lr": "fqe_lr", "tau": "fqe_tau",
    "batch_size": "batch_size", "behavior": "behavior", "behavior_steps": "behavior_steps",
    "target_std": "target_std", "max_weight": "max_weight", "resamples": "resamples",
    "seed": "seed",
}  # fmt: skip
"""A grid file's ``ope`` keys → the fields of ``evaluation.ope.OPESettings``."""


@dataclass(frozen=True)
class Grid:
    """The cells of a grid file and where they write."""

    cells: tuple[Cell, ...]
    output: Path
    ope: Mapping[str, Any] | None = None
    """The ``ope`` section as ``OPESettings`` fields (:data:`OPE_KEYS`), or None."""
    seed_batch: bool = False
    """Train each cell group's seeds together as one seed batch."""


def _load_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SourceNotFoundError(f"{path}: no such grid file")
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise DatasetFormatError(
                f"{path}: grid file of type {suffix or '(none)'}; expected .yaml, .toml or .json"
            )
    except DatasetFormatError:
        raise
    except Exception as e:  # each parser's own error type
        raise DatasetFormatError(f"{path}: not valid {suffix[1:]}: {e}") from e
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: holds a {type(data).__name__}; expected a mapping")
    return data


def grid_from_mapping(data: Mapping[str, Any], *, where: str = "grid", base: Path = Path()) -> Grid:
    """The :class:`Grid` a mapping describes (the module doc's keys); relative paths are
    relative to ``base`` (a grid file's directory).

    :raises DataValidationError: a key missing, unknown or of the wrong type (named).
    """
    known = {
        "output", "datasets", "algorithms", "seeds", "budget", "resources", "env_id", "ope",
        "seed_batch",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataValidationError(
            f"{where}: unknown key {', '.join(unknown)}; expected some of {', '.join(sorted(known))}"
        )
    for key in ("output", "datasets", "algorithms"):
        if key not in data:
            raise DataValidationError(f"{where}: no {key!r}; expected {key}: ...")
    datasets = data["datasets"]
    if isinstance(datasets, str):
        datasets = [datasets]
    if not isinstance(datasets, list) or not datasets:
        raise DataValidationError(f"{where}: datasets is {datasets!r}; expected a list of files")
    algos = data["algorithms"]
    if isinstance(algos, list):
        algos = {str(a): {} for a in algos}
    if not isinstance(algos, dict) or not algos:
        raise DataValidationError(
            f"{where}: algorithms is {algos!r}; expected a list of names or a mapping "
            "name → {hyperparameter: value or list of values}"
        )
    seeds_value = data.get("seeds", 1)
    if isinstance(seeds_value, int) and not isinstance(seeds_value, bool) and seeds_value > 0:
        seeds = list(range(seeds_value))
    elif isinstance(seeds_value, list) and all(isinstance(s, int) for s in seeds_value):
        seeds = [int(s) for s in seeds_value]
    else:
        raise DataValidationError(
            f"{where}: seeds is {seeds_value!r}; expected a positive count or a list of ints"
        )
    budget_map = data.get("budget", {})
    fields = set(Budget.__dataclass_fields__)
    if not isinstance(budget_map, dict) or set(budget_map) - fields:
        raise DataValidationError(
            f"{where}: budget is {budget_map!r}; expected a mapping of {', '.join(sorted(fields))}"
        )
    for k, v in budget_map.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise DataValidationError(f"{where}: budget.{k} is {v!r}; expected an int >= 1")
    budget = Budget(**budget_map)
    res = data.get("resources", {})
    if not isinstance(res, dict) or set(res) - {"num_cpus", "num_gpus"}:
        raise DataValidationError(
            f"{where}: resources is {res!r}; expected a mapping of num_cpus, num_gpus"
        )
    cells: list[Cell] = []
    for seed in seeds:  # seed-major: a partial grid has every group at its low seeds
        for ds in datasets:
            path = Path(str(ds)).expanduser()
            path = path if path.is_absolute() else base / path
            for name, sweep in algos.items():
                if not isinstance(sweep, dict):
                    raise DataValidationError(
                        f"{where}: algorithms.{name} is {sweep!r}; expected a mapping of "
                        "hyperparameters"
                    )
                keys = sorted(sweep)
                values = [v if isinstance(v, list) else [v] for v in (sweep[k] for k in keys)]
                for combo in itertools.product(*values):
                    cells.append(
                        Cell(
                            algorithm=str(name),
                            dataset=str(path),
                            seed=seed,
                            overrides=dict(zip(keys, combo, strict=True)),
                            budget=budget,
                            env_id=data.get("env_id"),
                            num_cpus=float(res.get("num_cpus", 1.0)),
                            num_gpus=float(res.get("num_gpus", 0.0)),
                        )
                    )
    seed_batch = data.get("seed_batch", False)
    if not isinstance(seed_batch, bool):
        raise DataValidationError(f"{where}: seed_batch is {seed_batch!r}; expected true or false")
    out = Path(str(data["output"])).expanduser()
    return Grid(cells=tuple(cells), output=out if out.is_absolute() else base / out,
                ope=_ope_section(data.get("ope"), where), seed_batch=seed_batch)  # fmt: skip


def _ope_section(section: Any, where: str) -> dict[str, Any] | None:
    if section is None:
        return None
    if not isinstance(section, dict) or set(section) - set(OPE_KEYS):
        unknown = sorted(set(section) - set(OPE_KEYS)) if isinstance(section, dict) else []
        raise DataValidationError(
            f"{where}: ope is {section!r}{f' (unknown {unknown})' if unknown else ''}; expected "
            f"a mapping of {', '.join(sorted(OPE_KEYS))}"
        )
    out = {OPE_KEYS[k]: v for k, v in section.items()}
    for key in ("estimators", "fqe_hidden"):
        if key in out:
            value = out[key]
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            out[key] = tuple(value) if isinstance(value, list) else value
    return out


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read a grid file (``.yaml``/``.yml``, ``.toml`` or ``.json``; see the module doc).

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not parseable, or not a mapping.
    :raises DataValidationError: a key missing, unknown or of the wrong type.
    """
    p = Path(path)
    return grid_from_mapping(_load_mapping(p), where=str(p), base=p.resolve().parent)


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_bytes(data)
