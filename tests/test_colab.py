"""Colab: every notebook opens with the badge and the set-up cell of gmcourse.colab; every import
the notebooks (and gmcourse under them) make is on Colab's runtime or in the ``colab`` group of
pyproject.toml; that group only adds packages and pip is never allowed to change one of Colab's.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from gmcourse import colab

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "colab"))
import check as colab_check  # noqa: E402  (colab/check.py: the freeze reader and the environments)

NOTEBOOKS = sorted(p for d in ("lectures", "solutions", "exercises") for p in (ROOT / d).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
RUNTIME_FREEZE = colab_check.FREEZE


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


# ------------------------------------------------------------------ the badge and the set-up cell

def test_the_notebooks_are_found():
    names = {rel(p) for p in NOTEBOOKS}
    assert {"lectures/00_intro.ipynb", "solutions/02_vae.ipynb", "exercises/01_autoregressive.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=rel)
def test_notebook_opens_with_the_colab_badge_and_the_colab_cell(path):
    nb_cells = cells(path)
    first = nb_cells[0]
    assert first["cell_type"] == "markdown", f"{rel(path)}: the first cell must be markdown with the badge"
    assert colab.colab_badge(rel(path)) in source(first).splitlines(), (
        f"{rel(path)}: the first cell must hold the line\n{colab.colab_badge(rel(path))}\n"
        "(python -m gmcourse.colab --write <notebook> puts it there)")
    first_code = next(c for c in nb_cells if c["cell_type"] == "code")
    assert source(first_code) == colab.COLAB_CELL, (
        f"{rel(path)}: the first code cell must be gmcourse.colab.COLAB_CELL exactly "
        "(python -m gmcourse.colab --write <notebook> puts it there)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=rel)
def test_colab_and_repository_urls_appear_only_in_the_badge_and_the_cell(path):
    nb_cells = cells(path)
    first_code = next(i for i, c in enumerate(nb_cells) if c["cell_type"] == "code")
    for i, cell in enumerate(nb_cells):
        if i in (0, first_code):
            continue
        text = source(cell)
        for url in ("colab.research.google.com", colab.REPO_URL, f"github.com/{colab.REPO}"):
            assert url not in text, f"{rel(path)} cell {i}: {url} is defined once, in gmcourse/colab.py"


def test_a_solution_badge_opens_the_exercise_and_a_lecture_its_own_notebook():
    assert colab.colab_url("solutions/02_vae.ipynb") == colab.colab_url("exercises/02_vae.ipynb")
    assert colab.colab_url("lectures/02_vae.ipynb").endswith(f"/{colab.REPO}/blob/{colab.BRANCH}/lectures/02_vae.ipynb")
    assert colab.colab_badge("lectures/02_vae.ipynb").startswith(f"[![Open in Colab]({colab.BADGE_IMAGE})](")


def test_the_colab_cell_is_valid_ipython_that_clones_installs_without_deps_and_adds_the_group():
    python = TransformerManager().transform_cell(colab.COLAB_CELL)
    tree = ast.parse(python)
    calls = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert any(f"git clone --quiet --depth 1 {{repo}} {colab.CLONE_DIR}" in c for c in calls)
    assert any(f"'install --quiet --no-deps -e {colab.CLONE_DIR}'" in c for c in calls)
    assert "install_missing()" in calls
    assert f'os.environ.get("{colab.REPO_URL_ENV}", "{colab.REPO_URL}")' in colab.COLAB_CELL
    assert colab.COLAB_CELL.splitlines()[2] == 'if "google.colab" in sys.modules:  ' \
        "# on Colab only: fetch the course, keep Colab's own packages"


def test_write_notebooks_rewrites_only_the_badge_and_the_first_code_cell(tmp_path):
    original = ROOT / "lectures" / "00_intro.ipynb"
    raw = original.read_text(encoding="utf-8")
    nb = json.loads(raw)
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["source"] = ["import sys\n", "!git clone https://example.org/old /content/gmcourse"]
    nb["cells"][0]["source"] = [re.sub(r"blob/main/[^)]*\)", "blob/old/x.ipynb)", source(nb["cells"][0]))]
    copy = tmp_path / "lectures" / "00_intro.ipynb"
    copy.parent.mkdir()
    copy.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert colab.write_notebooks([copy]) == [str(copy)]
    assert copy.read_text(encoding="utf-8") == raw  # byte for byte the committed notebook
    assert colab.write_notebooks([copy]) == []


# ------------------------------------------------------------------ imports against Colab's list

def colab_list() -> dict[str, str]:
    return colab_check.colab_versions(RUNTIME_FREEZE)


def colab_group() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["colab"]


def imported_modules(python_source: str) -> set[str]:
    """Top-level names of absolute imports anywhere in the code (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(python_source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def notebook_imports() -> dict[str, set[str]]:
    """{module: notebooks importing it}, from every code cell as IPython runs it."""
    where: dict[str, set[str]] = {}
    for path in NOTEBOOKS:
        for cell in cells(path):
            if cell["cell_type"] == "code":
                for module in imported_modules(TransformerManager().transform_cell(source(cell))):
                    where.setdefault(module, set()).add(rel(path))
    return where


def package_imports() -> dict[str, set[str]]:
    """{module: gmcourse files importing it}: what the notebooks pull in through gmcourse."""
    where: dict[str, set[str]] = {}
    for path in sorted((ROOT / "gmcourse").rglob("*.py")):
        for module in imported_modules(path.read_text(encoding="utf-8")):
            where.setdefault(module, set()).add(rel(path))
    return where


def third_party(where: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: w for m, w in where.items() if m not in sys.stdlib_module_names and m not in ("gmcourse", "google")}


def distribution_of(module: str) -> list[str]:
    return [colab_check.norm(d) for d in metadata.packages_distributions().get(module, [])]


def test_the_notebook_import_scan_sees_the_notebooks_imports():
    where = notebook_imports()
    assert {"gmcourse", "torch", "matplotlib"} <= set(where)
    assert "sys" in where and "os" in where  # the Colab cell's own imports, read through IPython's transform


@pytest.mark.parametrize("source_name, scan", [("notebooks", notebook_imports), ("gmcourse", package_imports)])
def test_every_import_is_on_colab_or_in_the_colab_group(source_name, scan):
    on_colab = set(colab_list())
    group = {colab._name(r) for r in colab_group()}
    problems = []
    for module, files in sorted(third_party(scan()).items()):
        dists = distribution_of(module)
        if not dists:
            problems.append(f"{module} (in {sorted(files)}): not installed here, so its distribution is unknown")
        elif not any(d in on_colab or d in group for d in dists):
            problems.append(f"{module} (distribution {dists}, in {sorted(files)}): neither on Colab "
                            f"({RUNTIME_FREEZE.name}) nor in pyproject.toml's colab group")
    assert not problems, "\n".join(problems)


def test_the_colab_group_is_pinned_and_holds_only_what_colab_lacks():
    on_colab = colab_list()
    for requirement in colab_group():
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[^\s;]+", requirement), f"{requirement}: pin it with =="
        name = colab._name(requirement)
        assert name not in on_colab, (f"{requirement}: Colab has {name}=={on_colab[name]}; installing it "
                                      "would change one of Colab's packages")


def test_the_colab_list_has_its_source_and_the_packages_the_course_runs_on():
    header = [line for line in RUNTIME_FREEZE.read_text().splitlines() if line.startswith("#")]
    assert any("https://github.com/googlecolab/backend-info/blob/" in line for line in header)
    assert any(colab_check.RUNTIME in line for line in header)
    versions = colab_list()
    assert {"torch", "numpy", "matplotlib", "ipywidgets", "ipykernel", "scipy", "tqdm"} <= set(versions)


def test_the_readme_names_the_runtime_and_versions_checked():
    readme = (ROOT / "README.md").read_text()
    versions = colab_list()
    assert f"runtime {colab_check.RUNTIME}" in readme
    for name in ("torch", "numpy", "ipywidgets"):
        assert f"{name} {versions[name].split('+')[0]}" in readme, f"README's Colab section: {name}"


# ------------------------------------------------------------------ install_missing keeps what is installed

def test_colab_requirements_reads_the_colab_extra_only():
    requires = ['torchdiffeq==0.2.5; extra == "colab"', 'pytest==9.2.0; extra == "test"', "numpy==2.4.6",
                "foo-bar[x]==1.0 ; extra == 'colab'"]
    assert colab.colab_requirements(requires) == ["torchdiffeq==0.2.5", "foo-bar[x]==1.0"]


def test_missing_skips_what_is_installed_at_the_pinned_version():
    installed = {"numpy": "2.0.2", "torchdiffeq": "0.2.5"}
    assert colab.missing(["numpy==2.0.2", "torchdiffeq==0.2.4", "Foo_Bar==1"], installed) == \
        ["torchdiffeq==0.2.4", "Foo_Bar==1"]
    assert colab.install_missing(["numpy==" + metadata.version("numpy")]) == []  # nothing to do, no pip run


def fake_wheel(folder: Path, name: str, version: str, requires=()) -> Path:
    """A minimal pure-Python wheel (no code), enough for pip's resolver."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{dist}.dist-info/METADATA", meta)
        whl.writestr(f"{dist}.dist-info/WHEEL",
                     "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def test_install_missing_refuses_to_change_an_installed_package(tmp_path):
    """A package that would pull a newer numpy: plain pip would replace the installed numpy;
    install_missing (every installed package pinned) fails and says so. pip runs with --dry-run
    on a local wheel folder only."""
    fake_wheel(tmp_path, "numpy", "99.0")
    fake_wheel(tmp_path, "gmcourse-probe-greedy", "1.0", ["numpy>=99"])
    fake_wheel(tmp_path, "gmcourse-probe-modest", "1.0", ["numpy>=1.0"])
    local = ["--no-index", "--find-links", str(tmp_path)]
    plain = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", *local, "gmcourse-probe-greedy==1.0"],
                           capture_output=True, text=True)
    assert "numpy-99.0" in plain.stdout, plain.stdout + plain.stderr  # what install_missing must prevent
    with pytest.raises(RuntimeError, match=r"without changing an installed package(.|\n)*numpy"):
        colab.install_missing(["gmcourse-probe-greedy==1.0"], pip_args=local, dry_run=True)
    assert colab.install_missing(["gmcourse-probe-modest==1.0"], pip_args=local, dry_run=True) == \
        ["gmcourse-probe-modest==1.0"]


def test_the_pins_hold_every_installed_package_but_the_ones_being_added():
    installed = colab.installed_versions()
    text = colab.pin_constraints(installed, exclude=["torchdiffeq==0.2.5"])
    lines = set(text.splitlines())
    for name in ("torch", "numpy", "ipywidgets", "matplotlib"):
        assert f"{name}=={installed[name]}" in lines
    assert colab.pin_constraints({"torchdiffeq": "0.2.4", "numpy": "2.0.2"}, exclude=["torchdiffeq==0.2.5"]) == \
        "numpy==2.0.2\n"
    # a version pip cannot read would make it reject the whole constraints file: left out
    assert colab.pin_constraints({"odd": "2026-01-custom build", "torch": "2.9.0+cpu"}) == "torch==2.9.0+cpu\n"
