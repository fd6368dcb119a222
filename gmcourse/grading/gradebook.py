"""Write the CSV gradebook (one row per student) and one Markdown feedback file per student."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from gmcourse.grading.batch import StudentGrade


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
        writer.writerow([grade.student, *(f"{grade.scores[q]:g}" for q in points),
                         f"{grade.total:g}", " | ".join(notes)])
    return buffer.getvalue()


def feedback_markdown(grade: StudentGrade, points: dict[str, float]) -> str:
    lines = [f"# Feedback for {grade.student}", "",
             f"**Total: {grade.total:g} / {sum(points.values()):g}**", ""]
    if grade.reason:
        lines += [f"Note: {grade.reason}", ""]
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
    _atomic_write(Path(csv_path), gradebook_csv(grades, points))
    for grade in grades:
        _atomic_write(Path(feedback_dir) / f"{grade.student}.md", feedback_markdown(grade, points))
