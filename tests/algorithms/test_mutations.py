"""The mutation check of the reference tests (``tests/helpers/mutate_updates.py``): every
mutation still applies to the update it mutates, and the script kills mutations through the
reference tests in this process.
"""

from __future__ import annotations


def test_every_mutation_applies() -> None:
    """Each mutation of ``tests/helpers/mutate_updates.py`` still finds its snippet exactly once in
    the update it mutates (a renamed line would silently drop it from the check)."""
    from tests.helpers import mutate_updates

    names = [m.name for m in mutate_updates.MUTATIONS]
    assert len(names) == len(set(names))
    for mutation in mutate_updates.MUTATIONS:
        with mutate_updates.applied(mutation):
            pass


def test_mutation_script_kills_mutations() -> None:
    """Two mutations of the script (a target network replaced by the online one, a clip
    deleted) run through it in this process and are killed by the reference tests; the whole
    list: ``python -m tests.helpers.mutate_updates``."""
    from tests.helpers import mutate_updates

    chosen = [
        m
        for m in mutate_updates.MUTATIONS
        if m.name in ("td3-target-critics-online", "td3-noise-clip-deleted")
    ]
    assert len(chosen) == 2
    assert mutate_updates.run(chosen) == []
