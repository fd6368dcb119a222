"""``gmcourse`` command line: ``assign`` (solutions -> exercises) and ``grade`` (batch grading).

    gmcourse assign [solutions/00_intro.ipynb ...] [--out exercises]
    gmcourse grade exercises/00_intro.ipynb submissions/*.ipynb -o grades.csv [--feedback DIR]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def assign_command(args) -> int:
    from gmcourse.grading.assign import assign

    solutions = args.solutions or sorted(Path("solutions").glob("*.ipynb"))
    if not solutions:
        print("no solution notebooks given or found in solutions/", file=sys.stderr)
        return 2
    for solution in solutions:
        print(f"{solution} -> {assign(Path(solution), Path(args.out))}")
    return 0


def grade_command(args) -> int:
    from gmcourse.grading.batch import Limits, grade_all, load_assignment
    from gmcourse.grading.gradebook import write_gradebook
    from gmcourse.grading.isolation import detect

    release = Path(args.exercise)
    csv_path = Path(args.output)
    feedback = Path(args.feedback) if args.feedback else csv_path.with_name(f"{csv_path.stem}-feedback")
    limits = Limits(cell_timeout=args.cell_timeout, total_timeout=args.total_timeout,
                    memory_mb=args.memory_mb)
    isolation = detect()
    print(f"isolation: {isolation.description}")
    feedback.mkdir(parents=True, exist_ok=True)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path.touch()
    start = time.monotonic()
    grades = grade_all(release, [Path(s) for s in args.submissions],
                       hidden=Path(args.hidden) if args.hidden else None, limits=limits,
                       jobs=args.jobs, protect=[csv_path, feedback], isolation=isolation)
    points = load_assignment(release, Path(args.hidden) if args.hidden else None).points
    write_gradebook(grades, points, csv_path, feedback)
    for grade in grades:
        print(f"{grade.student:>24}  {grade.total:g}/{sum(points.values()):g}  ({grade.elapsed:.1f} s)")
    print(f"graded {len(grades)} submissions in {time.monotonic() - start:.1f} s -> {csv_path}, {feedback}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gmcourse", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("assign", help="write exercises/ from solutions/")
    p.add_argument("solutions", nargs="*", type=Path, help="default: every solutions/*.ipynb")
    p.add_argument("--out", default="exercises", help="exercise folder (default: exercises)")
    p.set_defaults(run=assign_command)
    p = commands.add_parser("grade", help="grade submissions into a CSV gradebook")
    p.add_argument("exercise", help="the released exercise notebook, e.g. exercises/00_intro.ipynb")
    p.add_argument("submissions", nargs="+")
    p.add_argument("-o", "--output", required=True, help="gradebook CSV path")
    p.add_argument("--feedback", help="feedback folder (default: <output stem>-feedback/)")
    p.add_argument("--hidden", help="hidden checks (default: instructor/hidden/<name>.py)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="parallel kernels (default 2)")
    p.add_argument("--cell-timeout", type=int, default=60, help="seconds per cell (default 60)")
    p.add_argument("--total-timeout", type=int, default=300, help="seconds per notebook (default 300)")
    p.add_argument("--memory-mb", type=int, default=3000, help="address-space limit per kernel")
    p.set_defaults(run=grade_command)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
