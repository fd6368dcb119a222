"""Write the CSV gradebook (one row per student) and one Markdown feedback file per student.

Text fields that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return) get a leading apostrophe, as OWASP recommends for CSV injection;
feedback files get a name made of safe characters only, distinct for every student.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path

from gmcourse.grading.batch import StudentGrade

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """``text`` safe to open in a spreadsheet: a formula-leading field is prefixed with ``'``."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_START) else text


def feedback_name(student: str) -> str:
    """A file name for ``student``'s feedback: safe characters, plus a hash when any were changed."""
    safe = re.sub(r"[^A-Za-z0-9_.~-]", "_", student).lstrip(".-") or "student"
    if safe != student:
        safe += "-" + hashlib.sha256(student.encode()).hexdigest()[:8]
    return safe[:120] + ".md"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def gradebook_csv(grades: list[StudentGrade], points: dict[str, float]) -> str:
    """Columns: student, one per question, total, notes (why points were lost)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *points, "total", "notes"])
    for grade in grades:
        notes = ([grade.reason] if grade.reason else []) + [f"{q}: {n}" for q, n in grade.notes.items()]
        writer.writerow([neutralise(grade.student), *(f"{grade.scores[q]:g}" for q in points),
                         f"{grade.total:g}", neutralise(" | ".join(notes))])
    return buffer.getvalue()


def feedback_markdown(grade: StudentGrade, points: dict[str, float]) -> str:
    lines = [f"# Feedback for {grade.student}", "",
             f"**Total: {grade.total:g} / {sum(points.values()):g}**", ""]
    if grade.reason:
        lines += [f"Note: {grade.reason}", ""]
    if grade.slowest_cell:
        where, seconds = grade.slowest_cell
        lines += [f"Time: {grade.elapsed:.1f} s in the sandbox; slowest cell: {where}, {seconds:.2f} s", ""]
    if "cells" in grade.notes:
        lines += [f"Note: {grade.notes['cells']}", ""]
    for qid, worth in points.items():
        lines += [f"## {qid}: {grade.scores[qid]:g} / {worth:g}", ""]
        if qid in grade.notes and not grade.feedback.get(qid):
            lines.append(grade.notes[qid])
        lines += ["```", *(o.line() for o in grade.feedback.get(qid, [])), "```", ""]
    return "\n".join(lines)


def write_gradebook(grades: list[StudentGrade], points: dict[str, float], csv_path: Path,
                    feedback_dir: Path) -> None:
    students = [grade.student for grade in grades]
    if len(set(students)) != len(students):
        raise ValueError("student ids must be unique")
    _atomic_write(Path(csv_path), gradebook_csv(grades, points))
    for grade in grades:
        _atomic_write(Path(feedback_dir) / feedback_name(grade.student), feedback_markdown(grade, points))
