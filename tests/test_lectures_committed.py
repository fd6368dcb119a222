"""What every committed lecture in lectures/ must be, checked for all of them at once: executed top to
bottom without an error, small enough to commit, and prose first (LECTURE.md: at least one character
of markdown per character of code)."""
from pathlib import Path

import nbformat
import pytest

from lecture_helpers import assert_executed_top_to_bottom, assert_prose_first

LECTURES = sorted((Path(__file__).resolve().parents[1] / "lectures").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_lectures():
    assert len(LECTURES) >= 7


@pytest.mark.parametrize("lecture", LECTURES, ids=lambda p: p.stem)
def test_executed_top_to_bottom_without_errors(lecture):
    assert_executed_top_to_bottom(nbformat.read(lecture, as_version=4))


@pytest.mark.parametrize("lecture", LECTURES, ids=lambda p: p.stem)
def test_small_enough_to_commit(lecture):
    assert lecture.stat().st_size < 4 * 2**20


@pytest.mark.parametrize("lecture", LECTURES, ids=lambda p: p.stem)
def test_prose_first(lecture):
    assert_prose_first(nbformat.read(lecture, as_version=4))
