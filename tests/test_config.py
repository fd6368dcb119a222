import importlib
import random

import numpy as np
import pytest
import torch

import gmcourse.config as config


def test_get_device_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert config.get_device() == torch.device("cpu")


def test_get_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.get_device().type == "mps"


def test_set_seed_makes_torch_numpy_and_random_repeat():
    def draw():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()

    config.set_seed(7)
    first = draw()
    config.set_seed(7)
    assert draw() == first
    config.set_seed(8)
    assert draw() != first


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_set_seed_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        config.set_seed(bad)


@pytest.mark.parametrize("value, smoke", [("1", True), ("0", False), ("", False), ("true", True)])
def test_smoke_switch_reads_the_environment(monkeypatch, value, smoke):
    monkeypatch.setenv("GMCOURSE_SMOKE", value)
    reloaded = importlib.reload(config)
    try:
        assert reloaded.SMOKE is smoke
        assert reloaded.smoke_or_full(full=100, smoke=3) == (3 if smoke else 100)
    finally:
        monkeypatch.setenv("GMCOURSE_SMOKE", "1")
        importlib.reload(config)


def test_smoke_switch_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("GMCOURSE_SMOKE", "maybe")
    try:
        with pytest.raises(ValueError, match="GMCOURSE_SMOKE"):
            importlib.reload(config)
    finally:
        monkeypatch.setenv("GMCOURSE_SMOKE", "1")
        importlib.reload(config)
