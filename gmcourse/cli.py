"""``gmcourse`` command line: ``assign`` (solutions -> exercises) and ``grade`` (batch grading).

    gmcourse assign [solutions/00_intro.ipynb ...] [--out exercises]
    gmcourse export [lectures/01_autoregressive.ipynb ...] [--check]
    gmcourse grade exercises/00_intro.ipynb submissions/*.ipynb -o grades.csv [--feedback DIR] [--no-sandbox]
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
    from gmcourse.grading import sandbox
    from gmcourse.grading.batch import Limits, SandboxUnavailable, grade_all, load_assignment
    from gmcourse.grading.gradebook import write_gradebook

    release = Path(args.exercise)
    csv_path = Path(args.output)
    feedback = Path(args.feedback) if args.feedback else csv_path.with_name(f"{csv_path.stem}-feedback")
    hidden = Path(args.hidden) if args.hidden else None
    limits = Limits(cell_timeout=args.cell_timeout, total_timeout=args.total_timeout,
                    memory_mb=args.memory_mb)
    assignment = load_assignment(release, hidden)
    isolation, why = sandbox.detect(must_be_absent=[assignment.course / "solutions",
                                                    assignment.course / "instructor"])
    if not isolation.sandboxed:
        print(f"no sandbox: {why}", file=sys.stderr)
        if not args.no_sandbox:
            print("refusing to grade: student code would run unprotected. Install bubblewrap "
                  "(apt-get install bubblewrap), or pass --no-sandbox to grade anyway; every row "
                  "will then say it was graded without a sandbox.", file=sys.stderr)
            return 2
        print("WARNING: --no-sandbox: student code runs as you, with network, and can read "
              "solutions, hidden checks and the gradebook", file=sys.stderr)
    print(f"isolation: {isolation.description}")
    start = time.monotonic()
    try:
        grades = grade_all(release, [Path(s) for s in args.submissions], hidden=hidden, limits=limits,
                           jobs=args.jobs, isolation=isolation, allow_unsandboxed=args.no_sandbox)
    except SandboxUnavailable as error:
        print(error, file=sys.stderr)
        return 2
    write_gradebook(grades, assignment.points, csv_path, feedback)
    for grade in grades:
        print(f"{grade.student:>24}  {grade.total:g}/{sum(assignment.points.values()):g}  ({grade.elapsed:.1f} s)")
    print(f"graded {len(grades)} submissions in {time.monotonic() - start:.1f} s -> {csv_path}, {feedback}/")
    return 0


def export_command(args) -> int:
    from gmcourse.export import export, stale

    lectures = args.lectures or sorted(Path("lectures").glob("[0-9][0-9]_*.ipynb"))
    if args.check:
        problems = stale([Path(p) for p in lectures])
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for path in export([Path(p) for p in lectures]):
        print(f"wrote {path}")
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
    p.add_argument("-j", "--jobs", type=int, default=2, help="parallel sandboxes (default 2)")
    p.add_argument("--cell-timeout", type=int, default=60, help="seconds per cell (default 60)")
    p.add_argument("--total-timeout", type=int, default=300, help="seconds per notebook (default 300)")
    p.add_argument("--memory-mb", type=int, default=3000,
                   help="memory limit per submission: address space per process, resident in total")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade even where no sandbox can be made (unsafe; every row says so)")
    p.set_defaults(run=grade_command)
    p = commands.add_parser("export", help="write gmcourse/models/<family>.py from the lectures' #| export cells")
    p.add_argument("lectures", nargs="*", type=Path, help="default: every lectures/NN_*.ipynb")
    p.add_argument("--check", action="store_true", help="only report modules that differ (exit 1)")
    p.set_defaults(run=export_command)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
