"""Auto-grading: in-notebook checks, exercise generation, and sandboxed batch grading.

- :class:`Checker`: ``check = Checker(intro, globals())`` then ``check("q1")`` in a notebook
- :mod:`gmcourse.grading.question`: ``Question``, ``Check``, ``CheckFailed``
- :mod:`gmcourse.grading.expect`: property assertions that print expected and actual values
- :mod:`gmcourse.grading.assign`: ``solutions/`` -> ``exercises/``
- :mod:`gmcourse.grading.batch`: grade many submissions into a CSV gradebook
"""
from gmcourse.grading.checker import Checker
from gmcourse.grading.question import Check, CheckFailed, Question

__all__ = ["Check", "CheckFailed", "Checker", "Question"]
