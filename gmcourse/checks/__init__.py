"""Public checks, one module per exercise notebook, named by concept (``intro`` for 00_intro).

Each module defines ``QUESTIONS``, a tuple of :class:`gmcourse.grading.Question`. A notebook
picks its module explicitly: ``from gmcourse.checks import intro``. Hidden checks are not here:
they live in ``instructor/hidden/`` and are never installed or released.
"""
