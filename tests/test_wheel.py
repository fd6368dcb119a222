"""A built wheel, installed outside the repository, carries the course's data.

The wheel is built from a copy of the package sources (so nothing is written into the
checkout), installed with ``pip install --no-deps`` into a fresh virtual environment in a
temporary folder, and used from a working directory outside the repository. That environment
borrows torch, numpy, ... from the course's ``.venv`` through a ``.pth`` line, which adds the
folder to ``sys.path`` without running the ``.pth`` files in it, so the editable ``gmcourse``
of ``.venv`` stays invisible; the test asserts ``gmcourse`` is imported from the wheel.

Checked from the installed copy:

* every file of ``gmcourse/data/files`` in the checkout is in the installed package
  (``importlib.resources``), byte for byte;
* ``load_mnist`` reads the MNIST subset from inside the installed package, every split equal to
  what the checkout's loader returns;
* once ``gmcourse/quality.py`` exists in the checkout: the classifier weights of every
  ``gmcourse.quality.DATASETS`` are in the wheel, ``load_classifier`` loads them from the
  installed package, and they give the same logits as the checkout's;
* the data cache of an installed wheel is ``~/.cache/gmcourse`` (``$XDG_CACHE_HOME/gmcourse``),
  never inside site-packages.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FILES_DIR = ROOT / "gmcourse" / "data" / "files"
QUALITY_IN_CHECKOUT = (ROOT / "gmcourse" / "quality.py").is_file()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(cmd, **kwargs):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


CHILD = textwrap.dedent(r'''
    import hashlib, importlib.resources, json, os, sys
    from pathlib import Path
    import torch

    out, want = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    import gmcourse, gmcourse.data
    from gmcourse.data import load_mnist, to_unit
    import importlib
    download = importlib.import_module("gmcourse.data.download")  # the name is also a function
    images = importlib.import_module("gmcourse.data.images")
    report = {"gmcourse": gmcourse.__file__, "cwd": os.getcwd(), "prefix": sys.prefix,
              "images_module": images.__file__,
              "mnist_subset_path": str(images.MNIST_SUBSET_PATH),
              "repo_data_dir": str(download.REPO_DATA_DIR), "data_dir": str(download.DATA_DIR),
              "home": str(Path.home()), "files": {}}
    files = importlib.resources.files("gmcourse.data") / "files"
    for name in want["files"]:
        f = files / name
        report["files"][name] = hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else None
    tensors = {}
    for split in ("train", "val", "test"):
        x, y = load_mnist(split)
        tensors[f"mnist_{split}_x"], tensors[f"mnist_{split}_y"] = x, y
    if want["quality"]:
        from gmcourse import quality
        report["quality_datasets"] = list(quality.DATASETS)
        report["classifier_paths"] = {d: str(quality.classifier_path(d)) for d in quality.DATASETS}
        x = to_unit(tensors["mnist_test_x"][: want["n_images"]])
        report["classifier_errors"], report["classifier_training"] = {}, {}
        for d in quality.DATASETS:
            try:  # recorded, so that the other checks still run when the weights are missing
                model = quality.load_classifier(d)
            except Exception as error:
                report["classifier_errors"][d] = f"{type(error).__name__}: {error}"
                continue
            report["classifier_training"][d] = model.training
            with torch.no_grad():
                tensors[f"logits_{d}"] = model(x)
    torch.save(tensors, out / "tensors.pt")
    (out / "report.json").write_text(json.dumps(report))
''')


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel, install it into a fresh venv, run CHILD there; its report and tensors."""
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.resolve().is_relative_to(ROOT), "the temporary folder must lie outside the repo"

    # 1. build the wheel from a copy of what the build reads
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "gmcourse", src / "gmcourse",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--no-index", "-w", dist, src], cwd=tmp)
    (wheel,) = dist.glob("gmcourse-*.whl")

    # 2. a fresh venv without pip; the course's pip installs the wheel into it
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-deps",
          "--no-index", wheel], cwd=tmp)
    venv_site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          cwd=tmp).stdout.strip())
    assert (venv_site / "gmcourse" / "__init__.py").is_file(), "the wheel did not install gmcourse"
    # 3. borrow torch, numpy, scipy ... from .venv: a plain path line, so the .pth files there
    #    (the editable gmcourse finder) are not run
    (venv_site / "zz_borrow_course_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # 4. run the checks from a folder outside the repository, HOME in the temporary folder
    work, home = tmp / "work", tmp / "home"
    work.mkdir()
    home.mkdir()
    want = {"files": sorted(p.name for p in FILES_DIR.iterdir() if p.is_file()),
            "quality": QUALITY_IN_CHECKOUT, "n_images": 32}
    (tmp / "want.json").write_text(json.dumps(want))
    (tmp / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "GMCOURSE_", "XDG_CACHE_HOME", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    _run([py, "-I", tmp / "child.py", tmp, tmp / "want.json"], cwd=work, env=env)
    report = json.loads((tmp / "report.json").read_text())
    tensors = torch.load(tmp / "tensors.pt", weights_only=True)
    return {"report": report, "tensors": tensors, "venv": venv, "site": venv_site,
            "work": work, "home": home, "want": want, "wheel": wheel}


def test_gmcourse_comes_from_the_wheel(installed):
    r = installed["report"]
    assert Path(r["gmcourse"]).is_relative_to(installed["site"]), r["gmcourse"]
    assert Path(r["images_module"]).is_relative_to(installed["site"])
    assert Path(r["prefix"]) == installed["venv"]
    assert Path(r["cwd"]) == installed["work"] and not Path(r["cwd"]).is_relative_to(ROOT)


def test_wheel_carries_every_data_file(installed):
    files = installed["report"]["files"]
    assert "mnist_subset.npz" in files  # the glob of the checkout found the subset
    for name in installed["want"]["files"]:
        assert files[name] is not None, f"gmcourse/data/files/{name} is not in the wheel ({installed['wheel'].name})"
        assert files[name] == _sha256(FILES_DIR / name), f"{name} differs in the wheel"


def test_installed_mnist_subset_loads(installed):
    from gmcourse.data import load_mnist

    r, tensors = installed["report"], installed["tensors"]
    assert Path(r["mnist_subset_path"]).is_relative_to(installed["site"])
    for split in ("train", "val", "test"):
        x, y = load_mnist(split)  # the checkout's loader
        assert torch.equal(tensors[f"mnist_{split}_x"], x), split
        assert torch.equal(tensors[f"mnist_{split}_y"], y), split


def test_installed_classifier_weights(installed):
    """Required as soon as gmcourse/quality.py is in the checkout; the weights files even before."""
    r, tensors = installed["report"], installed["tensors"]
    weights = sorted(p.name for p in FILES_DIR.glob("classifier_*.pt"))
    if not QUALITY_IN_CHECKOUT:
        # no loader yet: whatever weights exist are checked as package data above; if none do,
        # say so rather than pass
        if not weights:
            pytest.skip("neither gmcourse/quality.py nor classifier weights in this checkout")
        for name in weights:
            assert r["files"][name] is not None
        return
    from gmcourse import quality
    from gmcourse.data import to_unit

    assert r["quality_datasets"] == list(quality.DATASETS) and quality.DATASETS
    x = to_unit(tensors["mnist_test_x"][: installed["want"]["n_images"]])
    for d in quality.DATASETS:
        name = quality.classifier_path(d).name
        assert (FILES_DIR / name).is_file(), f"gmcourse/quality.py exists but {name} is missing from the checkout"
        assert r["files"].get(name) == _sha256(FILES_DIR / name), f"{name} is not in the wheel"
        assert d not in r["classifier_errors"], r["classifier_errors"][d]
        assert Path(r["classifier_paths"][d]).is_relative_to(installed["site"])
        assert r["classifier_training"][d] is False
        with torch.no_grad():
            expected = quality.load_classifier(d)(x)
        assert torch.equal(tensors[f"logits_{d}"], expected), d


def test_installed_data_cache_outside_site_packages(installed):
    r = installed["report"]
    cache = Path(r["repo_data_dir"])
    assert Path(r["home"]) == installed["home"]
    assert cache == installed["home"] / ".cache" / "gmcourse"
    assert Path(r["data_dir"]) == cache  # GMCOURSE_DATA unset
    assert not cache.is_relative_to(installed["venv"]) and not cache.is_relative_to(ROOT)
