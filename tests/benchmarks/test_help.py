"""A benchmark's ``--help`` can be formatted: a target such as "≥ 50% of the decode bound"
reached argparse as a bare ``%`` and made ``rlu_speed --help`` crash with a TypeError."""

from __future__ import annotations

import argparse

from benchmarks._lib import report


def test_a_target_with_a_percent_sign_formats_in_help() -> None:
    parser = argparse.ArgumentParser(prog="bench")
    report.add_arguments(parser, target="converter >= 50% of the decode bound", table=True)
    text = parser.format_help()
    assert "50% of the decode bound" in " ".join(text.split())
