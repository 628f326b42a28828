"""The mutants stay applicable: each names an existing file where its `old` text occurs
exactly once, changes it, and lists tests that exist (cheap: no test is run here)."""
from __future__ import annotations

import pytest

from tests.mutation.run import load_mutants, problems

MUTANTS = load_mutants()


def test_there_are_mutants_with_unique_names():
    names = [m.name for m in MUTANTS]
    assert len(names) >= 10 and len(set(names)) == len(names)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_applies_to_the_tree(mutant):
    assert mutant.tests, "a mutant without tests can never be caught"
    assert problems(mutant) == []
