"""Conventions every notebook of the course follows (tests/test_notebook_lint.py checks them).

Every lecture walks the seven steps of the *minimum viable definition* of a generative model,
one ``##`` section per step, each headed ``## <n>. <name>`` followed by anything, e.g.
``## 3. The loss: the negative ELBO`` (see docs/writing_a_lecture.md)::

    >>> step_heading(3, "the negative ELBO")
    '## 3. The loss: the negative ELBO'
    >>> bool(STEP_HEADING_RE.match("## 6. Likelihood of new digits"))
    True
"""
from __future__ import annotations

import re

# (number, name) of the seven steps; a step's heading starts with "## <number>. <name>"
STEPS: tuple[tuple[int, str], ...] = (
    (1, "The family"),     # the family of p_theta
    (2, "The network"),    # the network ("The networks" when there are several)
    (3, "The loss"),
    (4, "The optimiser"),  # Adam
    (5, "Training"),       # with a held-out set
    (6, "Likelihood"),     # of new inputs
    (7, "Sampling"),       # and how fast
)

# the canonical form: level-2 heading, the step's number, a full stop, a space, the title
STEP_HEADING_FORMAT = "## {n}. {name}"
STEP_HEADING_RE = re.compile(r"^## (?P<n>[1-7])\. (?P<title>\S.*)$")


def step_heading(n: int, subtitle: str = "") -> str:
    """The heading of step ``n`` (1-7): ``## 3. The loss`` or ``## 3. The loss: <subtitle>``."""
    names = dict(STEPS)
    if n not in names:
        raise ValueError(f"expected a step number from 1 to 7, got {n!r}")
    heading = STEP_HEADING_FORMAT.format(n=n, name=names[n])
    return f"{heading}: {subtitle}" if subtitle else heading
