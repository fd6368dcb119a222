"""What the tests of a committed lecture read from it: its printed outputs and its execution order."""
from __future__ import annotations

import json
from pathlib import Path


def outputs_text(nb) -> str:
    """Every stream output of the notebook, in order, with errors as 'ERROR name: value' lines."""
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                out.append(output["text"])
            elif output.get("output_type") == "error":
                out.append(f"ERROR {output['ename']}: {output['evalue']}")
    return "".join(out)


def committed_figures(lecture) -> dict:
    """The figures of a lecture's committed results file (``lectures/NN_topic.results.json``), after
    checking that they come from a full-mode run of at most 10 minutes (LECTURE.md's budget)."""
    from gmcourse.results import load_results

    record = load_results(lecture.stem, lecture.with_name(f"{lecture.stem}.results.json"))
    assert record["mode"] == "full", "commit the results of a full-mode run"
    assert record["seconds"] <= 600, f"the lecture ran {record['seconds']:.0f} s in full mode, over 10 min"
    return record["figures"]


def lecture_fixtures(lecture):
    """The two module-scoped fixtures a lecture's test file reads: ``nb`` (the committed notebook) and
    ``figures`` (its committed results, via :func:`committed_figures`). Use: ``nb, figures = lecture_fixtures(LECTURE)``."""
    import nbformat
    import pytest

    @pytest.fixture(scope="module")
    def nb():
        return nbformat.read(lecture, as_version=4)

    @pytest.fixture(scope="module")
    def figures():
        return committed_figures(lecture)

    return nb, figures


def assert_executed_top_to_bottom(nb) -> None:
    """Execution counts 1, 2, 3, ... over the code cells, and no error output."""
    counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"execution counts {counts}"
    assert "ERROR" not in outputs_text(nb)


def lecture_definitions(nb, names=()) -> dict:
    """The lecture's imports, functions, classes and constants, executed in order into a fresh
    namespace: not its training code, not the Colab cell. A constant is an assignment to upper-case
    names (or to ``names``, e.g. a lecture's 1D densities), tuple targets included; it is left out
    when its value calls ``smoke_or_full`` (a size of the run) or reads a name left out before it, and
    so is a function whose default arguments read such a name."""
    import ast

    namespace, left_out = {}, {"smoke_or_full"}
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    for cell in nb.cells:
        if cell.cell_type != "code" or any(line.lstrip().startswith(("!", "%")) for line in cell.source.splitlines()):
            continue  # the Colab cell
        body = []
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.FunctionDef):
                defaults = [d for d in node.args.defaults + node.args.kw_defaults if d is not None]
                if {n.id for d in defaults for n in ast.walk(d) if isinstance(n, ast.Name)} & left_out:
                    left_out.add(node.name)  # a default reads a size of the run
                    continue
            if isinstance(node, keep):
                body.append(node)
            elif isinstance(node, ast.Assign):
                targets = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                read = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
                if all(t.isupper() or t in names for t in targets) and not read & left_out:
                    body.append(node)
                else:
                    left_out.update(targets)
        exec(compile(ast.Module(body=body, type_ignores=[]), "<lecture>", "exec"), namespace)
    return namespace


def assert_prose_first(nb, ratio: float = 1.0) -> None:
    """LECTURE.md's prose-first rule: at least ``ratio`` characters of markdown per character of code."""
    markdown = sum(len(c.source) for c in nb.cells if c.cell_type == "markdown")
    code = sum(len(c.source) for c in nb.cells if c.cell_type == "code")
    assert markdown >= ratio * code, f"{markdown} characters of markdown for {code} of code (at least {ratio} for 1)"


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; .ci/install-chromium installs it

# For kernels and graders run side by side: one OpenMP thread each. Two processes with two
# threads each on two cores spin against each other and run several times slower than one after
# the other (two Colab-version smoke runs side by side took over 5 minutes).
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def shows_widgets(path: Path) -> bool:
    """Whether the notebook's code uses gmcourse.widgets (found in its code, not listed by hand)."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return any("gmcourse.widgets" in "".join(c["source"]) for c in cells if c["cell_type"] == "code")


def lectures_with_widgets(folder: Path) -> list[Path]:
    """Every lecture in ``folder`` that shows a widget of gmcourse.widgets."""
    return [path for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")) if shows_widgets(path)]
