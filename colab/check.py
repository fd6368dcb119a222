"""Colab's environment, rebuilt here, and the course run in it.

    python colab/check.py lite    # Colab's versions of the course's pure-Python stack, on the lock's CPU torch
    python colab/check.py exact   # Colab's exact versions (Python 3.12, torch 2.9.0), every notebook run in it

``lite`` (used by ``make test`` through tests/test_colab_env.py, cached in ``.venv/colab-lite``):
a Python 3.11 venv holding Colab's versions of ``LITE`` (ipywidgets 7.7.1, numpy 2.0.2,
matplotlib 3.10.0, IPython 7.34, ipykernel 6.17.1, ...) installed ``--no-deps``, in front of the
lock's ``.venv`` (torch 2.13.0 CPU, pytest, ...), which it reaches through a ``.pth`` file.

``exact`` (``make colab-check``, in ``build/colab-check``): a Python 3.12 venv with every package
of Colab's list that the course, ipywidgets and the kernel need, at Colab's versions (torch 2.9.0
from PyPI: the CUDA build, run on the CPU; Colab's CPU runtime has the ``+cpu`` build of the same
release); then, for every notebook of lectures/, exercises/, solutions/, a kernel started the way
Colab starts one (``google.colab`` imported, cwd ``/content``, a fresh ``/content``) runs the
notebook in smoke mode, its own first cell cloning a snapshot of this working tree (through
``GMCOURSE_REPO_URL``) and installing ``gmcourse`` with ``--no-deps``. Writes a report
(``build/colab-check/report.md``) with each notebook's result and time; exits 1 if any failed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = "2026.01"
FREEZE = ROOT / "colab" / f"colab-{RUNTIME}.txt"
PYTHON_312 = Path(os.environ.get("COLAB_PYTHON", Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python"))
LITE_DIR = ROOT / ".venv" / "colab-lite"
EXACT_DIR = ROOT / "build" / "colab-check"
NOTEBOOK_DIRS = ("lectures", "exercises", "solutions")

# The course's runtime stack (numerics, plots, widgets, the kernel that displays them): these
# come from Colab's list at Colab's versions in both environments.
LITE = [
    "numpy", "scipy", "matplotlib", "contourpy", "kiwisolver", "fonttools", "pillow", "pyparsing",
    "cycler", "python-dateutil", "packaging", "scikit-learn", "joblib", "threadpoolctl", "tqdm",
    "networkx", "ipywidgets", "widgetsnbextension", "jupyterlab-widgets", "ipython-genutils",
    "ipython", "ipykernel", "traitlets", "jupyter-client", "jupyter-core", "pyzmq", "tornado",
    "nest-asyncio", "matplotlib-inline", "prompt-toolkit", "pickleshare", "backcall", "decorator",
    "pexpect", "ptyprocess", "debugpy", "psutil", "nbformat", "fastjsonschema", "jsonschema",
    "jsonschema-specifications", "referencing", "rpds-py", "attrs", "pygments", "wcwidth", "parso",
    "six", "typing-extensions", "entrypoints",
    # lecture 06 runs its network through diffusers' schedulers: Colab's diffusers and its hub client
    "diffusers", "huggingface-hub", "safetensors", "hf-xet",
]
# exact only: the rest of what torch, the notebook runner and `%pip install -e` need, at Colab's versions
EXACT_EXTRA = ["torch", "filelock", "fsspec", "jinja2", "markupsafe", "mpmath", "sympy", "setuptools",
               "wheel", "pip", "nbclient", "platformdirs", "pytest", "pluggy", "iniconfig"]
# exact only, not on Colab: the test suite's property-testing library, at the lock's version
EXACT_FROM_LOCK = ["hypothesis", "sortedcontainers"]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def colab_versions(path: Path = FREEZE) -> dict[str, str]:
    """Colab's pip freeze as {normalised name: version}; ``name @ url`` lines are skipped."""
    versions = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", line.strip())
        if m:
            versions[norm(m[1])] = m[2]
    return versions


def pins(names, versions: dict[str, str], pypi_torch: bool = False) -> list[str]:
    out = []
    for name in names:
        version = versions[norm(name)]
        if pypi_torch:  # PyPI has 2.9.0 (CUDA build), not the +cpu local version of Colab's CPU runtime
            version = version.split("+")[0]
        out.append(f"{name}=={version}")
    return out


def run(cmd, **kwargs):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run(list(map(str, cmd)), check=True, **kwargs)


def _stamp(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def build_lite(venv: Path = LITE_DIR, base_python: Path = ROOT / ".venv" / "bin" / "python") -> Path:
    """The cheap Colab environment. Idempotent: it changes only what the freeze or LITE changed;
    concurrent callers (pytest-xdist workers) wait for each other."""
    import fcntl

    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_lite(venv, base_python)


def _build_lite(venv: Path, base_python: Path) -> Path:
    requirements = pins(LITE, colab_versions())
    python, stamp_file = venv / "bin" / "python", venv / ".colab-lite.json"
    if stamp_file.exists() and python.exists() and json.loads(stamp_file.read_text()) == requirements:
        return python
    if not python.exists():
        shutil.rmtree(venv, ignore_errors=True)
        lock_site = _purelib(base_python)
        run([base_python, "-m", "venv", venv])
        # after this venv's own packages: the lock's (torch, pytest, gmcourse's editable install)
        Path(_purelib(python), "zz_lock_env.pth").write_text(f"import site; site.addsitedir({lock_site!r})\n")
    install_pins(python, stamp_file, requirements, binary_only=True)
    return python


def _purelib(python) -> str:
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()


def lock_versions() -> dict[str, str]:
    return colab_versions(ROOT / "requirements.lock")


def install_pins(python: Path, stamp_file: Path, requirements: list[str], binary_only: bool = False) -> None:
    """pip install --no-deps what ``stamp_file`` does not list yet; uninstall what it no longer
    lists (from this venv only); then record ``requirements``."""
    done = json.loads(stamp_file.read_text()) if stamp_file.exists() else []
    keep = {q.split("==")[0] for q in requirements}
    own = {norm(d.name.split("-")[0]) for d in Path(_purelib(python)).glob("*.dist-info")}  # never the lock's
    dropped = [r.split("==")[0] for r in done if r.split("==")[0] not in keep and norm(r.split("==")[0]) in own]
    if dropped:
        run([python, "-m", "pip", "uninstall", "--quiet", "--yes", *dropped])
    todo = [r for r in requirements if r not in done]
    if todo:
        run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
             *(["--only-binary=:all:"] if binary_only else []), *todo])
    stamp_file.write_text(json.dumps(requirements))


def build_exact(venv: Path) -> Path:
    """Python 3.12 with Colab's versions of LITE + EXACT_EXTRA (torch 2.9.0 from PyPI, with the
    NVIDIA wheels it depends on), plus EXACT_FROM_LOCK for the unit tests."""
    versions = colab_versions()
    requirements = pins(LITE + EXACT_EXTRA, versions, pypi_torch=True) + pins(EXACT_FROM_LOCK, lock_versions())
    python, stamp_file = venv / "bin" / "python", venv / ".colab-exact.json"
    if not python.exists():
        if not PYTHON_312.exists():
            sys.exit(f"Python 3.12 not found at {PYTHON_312}; set COLAB_PYTHON (e.g. `pyenv install 3.12`)")
        shutil.rmtree(venv, ignore_errors=True)
        run([PYTHON_312, "-m", "venv", venv])
        # torch's own dependencies (the NVIDIA wheels of the CUDA build) resolved by pip; the
        # packages of the list below then replace whatever versions pip chose for the others
        run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"torch=={versions['torch'].split('+')[0]}"])
    install_pins(python, stamp_file, requirements)
    # informational: Colab itself lacks e.g. jedi (IPython 7.34 declares it) and notebook
    # (widgetsnbextension 3 declares it), so `pip check` need not pass
    subprocess.run([python, "-m", "pip", "check"])
    return python


def snapshot_repo(dest: Path) -> Path:
    """A git repository holding this working tree as it is (tracked and untracked, not ignored
    files), which the notebooks' first cell clones as it would clone GitHub."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-C", dest, "-c", "user.name=colab-check", "-c", "user.email=colab-check@localhost"]
    run([*git, "init", "--quiet"])
    run([*git, "add", "--all"])
    run([*git, "commit", "--quiet", "-m", "snapshot of the working tree for make colab-check"])
    return dest


def write_colab_stand_in(ipython_dir: Path, stub_dir: Path) -> None:
    """A stand-in ``google.colab`` (the real one is Colab's, not on PyPI), imported at kernel start
    by an IPython startup file, as Colab's kernel imports the real one."""
    pkg = stub_dir / "google" / "colab"
    pkg.mkdir(parents=True, exist_ok=True)
    (stub_dir / "google" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text(
        '"""Stand-in for Colab\'s google.colab, for make colab-check: the course only tests for its presence."""\n'
        "from google.colab import output  # noqa: F401\n")
    (pkg / "output.py").write_text(
        '"""Stand-in: the real enable_custom_widget_manager() switches Colab\'s front end to a\n'
        'third-party widget manager; the course uses core widgets only and never calls it."""\n\n\n'
        "def enable_custom_widget_manager():\n"
        '    raise RuntimeError("the course uses core ipywidgets only; it must not need the custom widget manager")\n')
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-google-colab.py").write_text(
        f"import sys\nsys.path.insert(0, {str(stub_dir)!r})\nimport google.colab  # noqa: E402,F401\n"
        f"sys.path.remove({str(stub_dir)!r})\n")


RUNNER = r'''
import json, os, sys, time, traceback
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
path, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
PROBE = ("import json as _j, sys as _s, importlib.metadata as _m, gmcourse as _g\n"
         "print('PROBE' + _j.dumps({'google.colab': 'google.colab' in _s.modules, 'gmcourse': _g.__file__, "
         "'python': _s.version.split()[0], **{n: _m.version(n) for n in ('torch', 'numpy', 'ipywidgets')}}))")
nb.cells.append(nbformat.v4.new_code_cell(PROBE))  # where gmcourse came from, what the kernel ran
start = time.time()
result = {"notebook": path, "ok": True, "error": ""}
try:  # the kernel: this interpreter's ipykernel, in the current directory
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.getcwd()}}).execute()
except CellExecutionError as e:
    result.update(ok=False, error=str(e)[-3000:])
except Exception:
    result.update(ok=False, error=traceback.format_exc()[-3000:])
result["seconds"] = round(time.time() - start, 1)
widgets = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))
result["widget_outputs"] = widgets
probe = [o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.get("name") == "stdout"]
result["kernel"] = json.loads("".join(probe).split("PROBE", 1)[1]) if "PROBE" in "".join(probe) else None
nbformat.write(nb, out)
print(json.dumps(result))
'''


def run_notebook(python: Path, notebook: Path, out: Path, cwd: Path, env: dict, wrap=()) -> dict:
    """Execute ``notebook`` top to bottom with ``python``'s own kernel (nbclient), in ``cwd``;
    saves the executed copy to ``out``; returns {ok, seconds, widget_outputs, error}."""
    runner = out.parent / "run_notebook.py"
    runner.write_text(RUNNER)
    cmd = [*wrap, str(python), str(runner), str(notebook), str(out)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    return {"notebook": str(notebook), "ok": False, "seconds": None, "widget_outputs": 0,
            "error": (proc.stdout + proc.stderr)[-3000:]}


def run_notebooks(python: Path, work: Path, notebooks: list[Path]) -> list[dict]:
    repo = snapshot_repo(work / "repo")
    ipython_dir, stub_dir = work / "ipython", work / "stub"
    write_colab_stand_in(ipython_dir, stub_dir)
    executed = work / "executed"
    executed.mkdir(exist_ok=True)
    env = dict(os.environ, GMCOURSE_SMOKE="1", GMCOURSE_REPO_URL=f"file://{repo}", IPYTHONDIR=str(ipython_dir),
               PATH=f"{python.parent}:{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    results = []
    for nb in notebooks:
        # each notebook in a fresh /content, a private bind mount: nothing is written outside `work`
        content = work / "content"
        shutil.rmtree(content, ignore_errors=True)
        content.mkdir()
        wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                f'mount --bind "{content}" /content && cd /content && exec "$0" "$@"']
        result = run_notebook(python, nb, executed / f"{nb.parent.name}-{nb.name}", content, env, wrap)
        result["notebook"] = str(nb.relative_to(ROOT))
        print(f"{'PASS' if result['ok'] else 'FAIL'} {result['notebook']} ({result['seconds']} s, "
              f"{result['widget_outputs']} widget outputs)", flush=True)
        if not result["ok"]:
            print(result["error"], flush=True)
        results.append(result)
    return results


# The unit tests run with Colab's exact versions: every test file except those of instructor-side
# tooling that runs with the lock, never on Colab (the batch grader and its sandbox, the browser
# test's JupyterLab, `make lab`, `gmcourse export`, the wheel, the pins, the lite environment) and those that read committed artefacts (executed
# lectures and their results), which no package version changes.
NOT_ON_COLAB = ("test_browser.py", "test_make_lab.py", "test_grading_batch.py", "test_grading_guard.py",
                "test_grading_sandbox.py", "test_export.py", "test_wheel.py", "test_pins.py",
                "test_notebook_lint.py", "test_*_lecture.py", "test_colab_env.py")


def unit_tests(repo: Path) -> list[str]:
    skip = {p.name for pattern in NOT_ON_COLAB for p in (repo / "tests").glob(pattern)}
    return sorted(p.relative_to(repo).as_posix() for p in (repo / "tests").glob("test_*.py") if p.name not in skip)


def run_unit_tests(python: Path, repo: Path) -> dict:
    """The unit tests of what a notebook uses on Colab (widgets, data and its checksummed downloads,
    Fashion-MNIST's against 127.0.0.1, training, metrics, plots, the exercise checks, ...) with
    Colab's versions, on the snapshot the notebooks cloned."""
    tests = unit_tests(repo)
    env = dict(os.environ, PYTHONPATH=str(repo), GMCOURSE_SMOKE="1")
    env.pop("VIRTUAL_ENV", None)
    start = time.time()
    proc = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "-W", "ignore::DeprecationWarning", *tests], cwd=repo, env=env, capture_output=True, text=True)
    summary = (proc.stdout.strip().splitlines() or [""])[-1].strip("= ")
    print(f"{'PASS' if proc.returncode == 0 else 'FAIL'} unit tests ({len(tests)} files): {summary}", flush=True)
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"notebook": f"unit tests: {', '.join(Path(t).name for t in tests)} ({summary})",
            "ok": proc.returncode == 0, "seconds": round(time.time() - start, 1), "widget_outputs": "",
            "error": "" if proc.returncode == 0 else "\n".join(failed) + "\n" + proc.stdout[-3000:]}


def versions_in(python: Path, names) -> dict[str, str]:
    code = ("import json, sys; from importlib import metadata; "
            "print(json.dumps({n: metadata.version(n) for n in sys.argv[1:]}))")
    return json.loads(subprocess.run([python, "-c", code, *names], check=True, capture_output=True,
                                     text=True).stdout)


def exact(args) -> int:
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not Path("/content").is_dir():
        if os.geteuid() != 0:
            sys.exit("make colab-check needs an empty /content directory to mount over (as on Colab): "
                     "sudo mkdir /content")
        Path("/content").mkdir()
    t0 = time.time()
    python = build_exact(work / "venv")
    built_s = time.time() - t0
    shown = ["torch", "numpy", "matplotlib", "ipywidgets", "ipykernel", "ipython", "scipy", "scikit-learn", "tqdm"]
    got = versions_in(python, shown)
    py_version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                check=True, capture_output=True, text=True).stdout.strip()
    notebooks = sorted(p for d in NOTEBOOK_DIRS for p in (ROOT / d).glob("*.ipynb"))
    if args.notebooks:
        notebooks = [Path(n).resolve() for n in args.notebooks]
    head = subprocess.run(["git", "log", "-1", "--format=%h %cd", "--date=format:%Y-%m-%d %H:%M"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    results = run_notebooks(python, work, notebooks)
    results.append(run_unit_tests(python, work / "repo"))
    lines = [f"# make colab-check: Colab runtime {RUNTIME} ({FREEZE.relative_to(ROOT)})", "",
             f"Python {py_version}; " + ", ".join(f"{k} {v}" for k, v in got.items()),
             f"Environment ready in {built_s:.0f} s; smoke mode (GMCOURSE_SMOKE=1); "
             f"run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             f"The course as in the working tree: commit {head} plus {len(changed)} uncommitted paths "
             "(the notebooks' first cell cloned a snapshot of it).", "",
             "| notebook (or tests) | result | seconds | widget outputs | in the kernel |", "|---|---|---|---|---|"]
    for r in results:
        kernel = r.get("kernel") or {}
        seen = ", ".join(f"{k} {v}" for k, v in kernel.items())
        lines.append(f"| {r['notebook']} | {'pass' if r['ok'] else 'FAIL'} | {r['seconds']} | "
                     f"{r['widget_outputs']} | {seen} |")
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        lines += ["", f"## {r['notebook']}", "```", r["error"], "```"]
    (work / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"report: {work / 'report.md'}")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    lite = sub.add_parser("lite", help="build the cheap Colab environment used by make test")
    lite.add_argument("--venv", default=str(LITE_DIR))
    ex = sub.add_parser("exact", help="build Colab's exact environment and run every notebook in it")
    ex.add_argument("--workdir", default=str(EXACT_DIR))
    ex.add_argument("notebooks", nargs="*", help="only these notebooks (default: all)")
    args = parser.parse_args(argv)
    if args.cmd == "lite":
        print(build_lite(Path(args.venv)))
        return 0
    return exact(args)


if __name__ == "__main__":
    raise SystemExit(main())
