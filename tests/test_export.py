"""Lecture code a later notebook imports: every lecture's `#| export` cells agree with
gmcourse/models/<family>.py, the modules import on their own, and every model they hold honours
the course's model interface (gmcourse.models.check_interface)."""
import importlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from gmcourse import export
from gmcourse.models import check_interface

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
EXPORTING = [nb for nb in LECTURES if export.exported_cells(nb)]


def test_the_family_lectures_export_their_models():
    assert {nb.stem for nb in EXPORTING} >= {"01_autoregressive", "02_vae"}


@pytest.mark.parametrize("notebook", EXPORTING, ids=lambda p: p.stem)
def test_module_agrees_with_the_lecture(notebook):
    assert export.stale([notebook]) == [], "run `gmcourse export` (make export) and commit the module"


@pytest.mark.parametrize("notebook", EXPORTING, ids=lambda p: p.stem)
def test_module_imports_on_its_own(notebook):
    module = importlib.import_module(f"gmcourse.models.{export.family_of(notebook)}")
    assert Path(module.__file__).read_text() == export.module_text(notebook)


def test_no_module_without_its_lecture():
    families = {export.family_of(nb) for nb in EXPORTING}
    modules = {p.stem for p in export.MODELS_DIR.glob("*.py") if p.stem != "__init__"}
    assert modules <= families, f"modules with no lecture behind them: {modules - families}"


def _notebook(tmp_path, cells):
    nb = {"cells": [{"cell_type": t, "metadata": {}, "source": s, **({"outputs": [], "execution_count": None}
                                                                      if t == "code" else {})}
                    for t, s in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "03_toy.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_export_writes_tagged_cells_in_order_and_detects_drift(tmp_path):
    path = _notebook(tmp_path, [("markdown", "#| export\nnot code"),
                                ("code", "#| export\nimport math\n"),
                                ("code", "x = 1  # not exported"),
                                ("code", ["#| export\n", "def f():\n", "    return math.pi\n"])])
    models = tmp_path / "models"
    assert export.stale([path], models) == [f"{models / 'toy.py'} is missing: run `gmcourse export`"]
    (written,) = export.export([path], models)
    text = written.read_text()
    assert text.index("import math") < text.index("def f():") and "x = 1" not in text and "not code" not in text
    assert export.stale([path], models) == []
    written.write_text(text + "# edited by hand\n")
    assert "differs" in export.stale([path], models)[0]


def test_export_refuses_cells_that_do_not_form_a_module(tmp_path):
    path = _notebook(tmp_path, [("code", "#| export\ndef broken(:\n")])
    with pytest.raises(ValueError, match="do not form a valid module"):
        export.export([path], tmp_path / "models")


def test_family_names_come_from_the_lecture_name():
    assert export.family_of(Path("lectures/01_autoregressive.ipynb")) == "autoregressive"
    with pytest.raises(ValueError, match="NN_topic.ipynb"):
        export.family_of(Path("lectures/intro.ipynb"))


# --- the interface, on every exported model ----------------------------------------------------

def binary_digits(n=4, seed=0):
    return torch.bernoulli(torch.full((n, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(seed))


def autoregressive_models(h=8, w=8):
    """Every exported network, on small h x w images so that sampling (h * w steps) stays fast."""
    from gmcourse.models import autoregressive as ar
    torch.manual_seed(0)
    shape = (1, h, w)
    return {"FVSBN": ar.Autoregressive(ar.FVSBN(d=h * w), shape),
            "NADE": ar.Autoregressive(ar.NADE(d=h * w, n_hidden=8), shape),
            "MADE": ar.Autoregressive(ar.MADEModel(d=h * w, hidden=(32,)), shape),
            "Gated PixelCNN": ar.Autoregressive(ar.GatedPixelCNN(channels=4, dilations=(2,)), shape),
            "Row GRU": ar.Autoregressive(ar.RowGRU(width=w, n_hidden=8), shape)}


@pytest.mark.parametrize("name", ["FVSBN", "NADE", "MADE", "Gated PixelCNN", "Row GRU"])
def test_autoregressive_models_honour_the_interface(name):
    model = autoregressive_models()[name]
    report = check_interface(model, binary_digits()[..., :8, :8])
    assert report["likelihood"] == "exact" and report["sample_shape"] == (3, 1, 8, 8)
    samples = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert set(samples.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_vaes_honour_the_interface_and_iwae_takes_a_generator(kind):
    from gmcourse.models import vae as v
    torch.manual_seed(0)
    if kind == "mlp":
        model = v.VAE(v.MLPEncoder(4, hidden=16), v.MLPDecoder(4, hidden=16), 4)
    else:
        model = v.VAE(v.ConvEncoder(4, channels=4), v.ConvDecoder(4, channels=4), 4)
    x = binary_digits()
    report = check_interface(model, x)
    assert report["likelihood"] == "bound" and report["elbo"].shape == (4,)
    a = v.iwae_log_px(model, x, 5, generator=torch.Generator().manual_seed(3))
    b = v.iwae_log_px(model, x, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (4,)
    assert (a >= model.elbo(x) - 50).all()  # a k-sample bound is not wildly below the ELBO


class _Broken(nn.Module):
    likelihood = "exact"

    def __init__(self, fault):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.fault = fault

    def loss(self, x):
        return ((self.w - 1) ** 2).sum() if self.fault != "loss" else torch.tensor(float("nan"))

    def log_prob(self, x):
        return torch.zeros(len(x) + (self.fault == "shape"))

    def sample(self, n, generator=None):
        if self.fault == "seed":
            return torch.randn(n, 2)  # ignores the generator
        return torch.randn(n, 2 if self.fault != "sample shape" else 3, generator=generator)


@pytest.mark.parametrize("fault, match", [("loss", "finite scalar"), ("shape", r"log_prob\(x\) must have shape"),
                                          ("seed", "same generator seed"), ("sample shape", r"sample\(3\) must have shape")])
def test_check_interface_names_what_is_wrong(fault, match):
    with pytest.raises(AssertionError, match=match):
        check_interface(_Broken(fault), torch.zeros(5, 2))
    check_interface(_Broken("none"), torch.zeros(5, 2))
