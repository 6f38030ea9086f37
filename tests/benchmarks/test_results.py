"""The README's measured tables come from the kept results: every section between
``<!-- BEGIN name -->`` and ``<!-- END name -->`` equals what its benchmark generates from the
result files committed under ``benchmarks/results/`` (deleting a table and running the
script's ``--readme`` restores it byte for byte), and every kept result is well formed."""

from __future__ import annotations

import importlib
import json

import pytest

from benchmarks._lib import readme, results

SECTIONS = {
    "train_speed": "benchmarks.train_speed",
    "io_speed": "benchmarks.io_speed",
    "cli_start": "benchmarks.cli_start",
    "quality_table": "benchmarks.quality_table",
    "evaluate_speed": "benchmarks.evaluate_speed",
    "ope_validation": "benchmarks.ope_validation",
    "faults": "benchmarks.faults",
    "test_suite": "benchmarks.test_suite",
    "out_of_core": "benchmarks.out_of_core",
    "train_speed_tutorial": "benchmarks.train_speed:tutorial_section",
    "ray_scale": "benchmarks.ray_scale",
    "seed_batch": "benchmarks.seed_batch",
    "fuzz": "benchmarks.fuzz",
    "rlu_speed": "benchmarks.rlu_speed",
    "convert_speed": "benchmarks.convert_speed",
    "atari_memory": "benchmarks.atari_memory",
    "finetune_curve": "benchmarks.finetune_curve",
    "quickstart_time": "benchmarks.quickstart_time",
    "fqe_rank": "benchmarks.fqe_rank",
    "parity_discrete": "benchmarks.parity_discrete",
    "parity_continuous": "benchmarks.parity_continuous",
}
"""README section → the benchmark module whose ``readme_section()`` (or ``module:function``)
generates it."""


@pytest.mark.parametrize(("name", "module"), SECTIONS.items())
def test_readme_section_is_generated_from_kept_results(name: str, module: str) -> None:
    mod, _, function = module.partition(":")
    generated: str = getattr(importlib.import_module(mod), function or "readme_section")()
    expected = generated if generated.endswith("\n") else generated + "\n"
    for page in readme.pages_with(name):
        found = readme.section(page.read_text(), name)
        assert found == expected, (
            f"{page.name} section {name!r} differs from the kept results: run "
            f"`python -m {module} --readme`"
        )


def test_every_generated_section_is_known() -> None:
    names = {n for page in readme.PAGES for n in readme.section_names(page.read_text())}
    assert sorted(names) == sorted(SECTIONS)


def test_kept_results_are_well_formed() -> None:
    paths = sorted(results.RESULTS_DIR.glob("*/*.json"))
    for path in paths:
        record = json.loads(path.read_text())
        assert record["schema"] == results.SCHEMA, path
        assert path.parent.name == record["benchmark"] and path.stem == record["key"], path
        key = results.result_key(
            record["name"], record["settings"], record["versions"]["code_fingerprint"]
        )
        assert key == record["key"], path
        assert record["versions"]["commit"] and record["machine"]["load"]["samples"] >= 2, path
        assert record["figures"], path


def test_suite_run_is_partial_only_when_it_selects_tests() -> None:
    """The suite's kept run is "partial" when its extra pytest arguments select tests (a path,
    a node id, -k, -m); an option's value such as ``-p no:cacheprovider`` does not."""
    from benchmarks.test_suite import selects_tests

    assert not selects_tests([])
    assert not selects_tests(["--durations=25", "-p", "no:cacheprovider", "--durations", "25"])
    assert selects_tests(["tests/test_docs.py"])
    assert selects_tests(["tests/test_docs.py::test_api_reference_covers_every_public_module"])
    assert selects_tests(["-k", "dt"]) and selects_tests(["-m", "not slow"])


def test_suite_run_records_its_xdist_workers() -> None:
    """The kept run says how many pytest-xdist workers ran it: pyproject's ``-n logical``
    (one per CPU, at most ``--maxprocesses``), overridden by an extra ``-n``."""
    from benchmarks.test_suite import workers

    assert workers([], cpus=2) == 2 and workers([], cpus=16) == 4
    assert workers(["-n", "0"], cpus=2) == 1 and workers(["-n3"], cpus=2) == 3
    assert workers(["--numprocesses=5", "--maxprocesses=8"], cpus=2) == 5
