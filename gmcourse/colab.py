"""Colab, in one place: the course's repository, the *Open in Colab* badge, the set-up cell every
notebook starts with, and what that cell installs on top of Colab's own packages.

Every notebook's first cell holds ``colab_badge(path)`` and its first code cell is
``COLAB_CELL`` (``tests/test_colab.py`` compares each notebook with them; change them here and
run ``python -m gmcourse.colab --write solutions/*.ipynb lectures/*.ipynb`` and
``gmcourse assign`` to rewrite the notebooks' copies). On Colab the cell

1. clones the course into ``/content/gmcourse`` (from ``REPO_URL``, or from the URL in the
   environment variable ``GMCOURSE_REPO_URL``, which ``make colab-check`` points at a local copy),
2. installs ``gmcourse`` with ``--no-deps``, so Colab's torch, numpy, ipywidgets, ... stay,
3. calls :func:`install_missing`: the packages of the ``colab`` optional-dependencies group of
   ``pyproject.toml`` (what the course needs and Colab lacks), installed with every package
   already present pinned to its installed version, so pip fails rather than change one.

Colab's package versions are recorded in ``colab/colab-<runtime>.txt``.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

REPO = "gmcourse/gmcourse"
REPO_URL = f"https://github.com/{REPO}"
BRANCH = "main"
REPO_URL_ENV = "GMCOURSE_REPO_URL"
CLONE_DIR = "/content/gmcourse"
EXTRA = "colab"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

COLAB_CELL = f"""\
import os
import sys
if "google.colab" in sys.modules:  # on Colab only: fetch the course, keep Colab's own packages
    repo = os.environ.get("{REPO_URL_ENV}", "{REPO_URL}")
    !test -d {CLONE_DIR} || git clone --quiet --depth 1 {{repo}} {CLONE_DIR}
    %pip install --quiet --no-deps -e {CLONE_DIR}
    sys.path.insert(0, "{CLONE_DIR}")
    from gmcourse.colab import install_missing
    install_missing()  # what the course needs and Colab lacks; changes none of Colab's packages"""


def badge_target(path: str | Path) -> str:
    """The repository path a notebook's badge opens: its own, except that a solution's badge
    opens the exercise generated from it (solutions are never released)."""
    parts = Path(path).as_posix().split("/")
    if parts[-2:-1] == ["solutions"]:
        parts[-2] = "exercises"
    return "/".join(parts[-2:])


def colab_url(path: str | Path) -> str:
    """Colab's URL for a notebook of the course, e.g. ``lectures/02_vae.ipynb``."""
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{badge_target(path)}"


def colab_badge(path: str | Path) -> str:
    """The markdown badge line for the notebook at ``path`` (relative to the repository root)."""
    return f"[![Open in Colab]({BADGE_IMAGE})]({colab_url(path)})"


_EXTRA_MARKER = re.compile(r"""^(?P<req>[^;]+);\s*extra\s*==\s*["'](?P<extra>[^"']+)["']\s*$""")


def colab_requirements(requires=None) -> list[str]:
    """The ``colab`` group, e.g. ``["torchdiffeq==0.2.5"]``, from ``Requires-Dist`` lines
    (default: the installed ``gmcourse``'s metadata, which pip wrote from pyproject.toml)."""
    requirements = []
    for line in metadata.requires("gmcourse") or [] if requires is None else requires:
        match = _EXTRA_MARKER.match(line)
        if match and match["extra"] == EXTRA:
            requirements.append(match["req"].strip())
    return requirements


def _name(requirement: str) -> str:
    """The normalised project name of a requirement such as ``Foo_Bar[x]>=1``: ``foo-bar``."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)[1]).lower()


def installed_versions() -> dict[str, str]:
    """Every distribution visible to this interpreter, by normalised name (first on sys.path wins)."""
    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(_name(name), dist.version)
    return versions


def _is_version(version: str) -> bool:
    """Whether pip can read ``version`` (PEP 440); a distribution with another one cannot be pinned."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pip's own copy of packaging is not importable; pin everything
        return True
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def pin_constraints(keep: dict[str, str], exclude=()) -> str:
    """A pip constraints file's text: each package of ``keep`` at exactly its version (except
    those of ``exclude``, and any whose version is not PEP 440, which pip would refuse to read)."""
    skip = {_name(r) for r in exclude}
    return "".join(f"{name}=={version}\n" for name, version in sorted(keep.items())
                   if name not in skip and _is_version(version))


def missing(requirements, installed: dict[str, str]) -> list[str]:
    """The requirements not already satisfied by an installed version (pins ``==`` compared exactly)."""
    out = []
    for req in requirements:
        name = _name(req)
        pinned = re.search(r"==\s*([^,;\s]+)", req)
        if name not in installed or (pinned and installed[name] != pinned[1]):
            out.append(req)
    return out


def install_command(requirements, constraints_file: str | Path, pip_args=()) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--constraint", str(constraints_file),
            *pip_args, *requirements]


def install_missing(requirements=None, pip_args=(), dry_run: bool = False) -> list[str]:
    """Install what the course needs and this environment lacks (default: the ``colab`` group),
    with every package already installed pinned to its version: pip then fails rather than
    upgrade or downgrade Colab's torch, numpy, ipywidgets or anything else. Returns the
    requirements it installed (or, with ``dry_run``, would install)."""
    requirements = colab_requirements() if requirements is None else list(requirements)
    installed = installed_versions()
    todo = missing(requirements, installed)
    if not todo:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "keep-installed.txt"
        constraints.write_text(pin_constraints(installed, exclude=todo))
        cmd = install_command(todo, constraints, [*pip_args, *(["--dry-run"] if dry_run else [])])
        result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not add {todo} without changing an installed package:\n"
                           f"{result.stdout}{result.stderr}")
    print(f"gmcourse: {'would install' if dry_run else 'installed'} {', '.join(todo)}")
    return todo


_BADGE = re.compile(r"\[!\[Open in Colab\]\([^)]*\)\]\([^)]*\)")


def _source(cell) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def set_up_notebook(nb: dict, path: str | Path) -> dict:
    """Put ``colab_badge(path)`` in the first cell (replacing the badge there) and ``COLAB_CELL``
    in the first code cell of a notebook loaded as plain JSON; nothing else changes."""
    first = nb["cells"][0]
    text = _source(first)
    if first["cell_type"] != "markdown" or not _BADGE.search(text):
        raise ValueError(f"{path}: the first cell must be markdown holding an Open in Colab badge")
    first["source"] = _BADGE.sub(lambda _: colab_badge(path), text, count=1).splitlines(keepends=True)
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["source"] = COLAB_CELL.splitlines(keepends=True)
    return nb


def write_notebooks(paths) -> list[str]:
    """Rewrite the badge and the set-up cell of each notebook in place, keeping the file's JSON
    layout (indent 1, non-ASCII kept, trailing newline as it was). Returns the changed paths."""
    import json

    changed = []
    for path in map(Path, paths):
        raw = path.read_text(encoding="utf-8")
        nb = set_up_notebook(json.loads(raw), path)
        new = json.dumps(nb, indent=1, ensure_ascii=False) + ("\n" if raw.endswith("\n") else "")
        if new != raw:
            path.write_text(new, encoding="utf-8")
            changed.append(str(path))
    return changed


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gmcourse.colab", description=__doc__.splitlines()[0])
    parser.add_argument("--write", nargs="+", metavar="NOTEBOOK",
                        help="rewrite these notebooks' badge and set-up cell from this module")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_notebooks(args.write):
            print(f"rewrote {path}")
    else:
        print(COLAB_CELL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
