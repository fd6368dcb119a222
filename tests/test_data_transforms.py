"""Properties of the pixel transforms: ranges, inverses, binary values, dequantisation floors,
and ValueErrors that name the expected and the received dtype or range."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gmcourse.data import transforms
from gmcourse.data.transforms import (
    binarize_dynamic,
    binarize_static,
    dequantize,
    from_symmetric,
    to_symmetric,
    to_unit,
)

images_uint8 = hnp.arrays(
    "uint8", hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)
).map(torch.from_numpy)
SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(x=images_uint8)
def test_to_unit_lands_in_the_unit_interval_and_is_invertible(x):
    u = to_unit(x)
    assert u.dtype == torch.float32 and u.shape == x.shape
    assert 0.0 <= u.min() and u.max() <= 1.0
    assert torch.equal((u * 255).round().to(torch.uint8), x)


@SETTINGS
@given(x=images_uint8)
def test_from_symmetric_inverts_to_symmetric_exactly(x):
    s = to_symmetric(x)
    assert s.dtype == torch.float32 and -1.0 <= s.min() and s.max() <= 1.0
    assert torch.equal(from_symmetric(s), x)


def test_symmetric_end_points():
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert to_symmetric(x).tolist() == [-1.0, 1.0]
    assert from_symmetric(torch.tensor([-1.7, 1.2, 0.0])).tolist() == [0, 255, 128]  # clipped


@SETTINGS
@given(x=images_uint8, threshold=st.floats(0.0, 0.999))
def test_static_binarisation_is_a_deterministic_threshold(x, threshold):
    b = binarize_static(x, threshold)
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(b, binarize_static(x, threshold))
    assert torch.equal(b.bool(), x.float() / 255 > threshold)
    assert torch.equal(binarize_static(to_unit(x), threshold), b)  # uint8 and [0, 1] agree


@SETTINGS
@given(x=images_uint8, seed=st.integers(0, 2**31))
def test_dynamic_binarisation_is_binary_and_respects_certain_pixels(x, seed):
    g = torch.Generator().manual_seed(seed)
    b = binarize_dynamic(x, generator=g)
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert (b[x == 0] == 0).all() and (b[x == 255] == 1).all()
    assert torch.equal(b, binarize_dynamic(x, generator=torch.Generator().manual_seed(seed)))


def test_dynamic_binarisation_is_a_fresh_bernoulli_sample_each_call():
    x = torch.full((100_000,), 64, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    first, second = binarize_dynamic(x, generator=g), binarize_dynamic(x, generator=g)
    assert not torch.equal(first, second)
    p = 64 / 255
    tolerance = 5 * (p * (1 - p) / len(x)) ** 0.5
    assert abs(first.mean().item() - p) < tolerance, (first.mean().item(), p)


@SETTINGS
@given(x=images_uint8, seed=st.integers(0, 2**31))
def test_dequantisation_floor_recovers_the_integer(x, seed):
    y = dequantize(x, generator=torch.Generator().manual_seed(seed))
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert 0.0 <= y.min() and y.max() < 1.0
    assert torch.equal(torch.floor(y * 256).to(torch.uint8), x)


def test_dequantisation_survives_noise_at_the_top_of_the_interval(monkeypatch):
    # u = largest float32 below 1: x + u rounds to x + 1 in float32 unless it is guarded
    largest_below_one = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item()
    monkeypatch.setattr(transforms.torch, "rand", lambda shape, **kw: torch.full(shape, largest_below_one))
    x = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    y = dequantize(x)
    assert y.max() < 1.0
    assert torch.equal(torch.floor(y * 256).to(torch.uint8), x)


def test_dequantisation_has_the_uniform_mean():
    x = torch.full((200_000,), 100, dtype=torch.uint8)
    y = dequantize(x, generator=torch.Generator().manual_seed(1))
    expected, sd = 100.5 / 256, (1 / 12) ** 0.5 / 256 / len(x) ** 0.5
    assert abs(y.mean().item() - expected) < 5 * sd, (y.mean().item(), expected)


@pytest.mark.parametrize("fn", [to_unit, dequantize, to_symmetric])
def test_uint8_transforms_name_the_expected_and_received_dtype(fn):
    with pytest.raises(ValueError, match=r"torch.uint8 .*got torch.float32"):
        fn(torch.rand(3))
    with pytest.raises(ValueError, match="expects a torch.Tensor of dtype uint8, got list"):
        fn([1, 2, 3])


@pytest.mark.parametrize("fn", [binarize_static, binarize_dynamic])
def test_binarisers_reject_floats_outside_the_unit_interval(fn):
    with pytest.raises(ValueError, match=r"expects values in \[0.0, 1.0\], got range \[-0.5, 2.0\]"):
        fn(torch.tensor([-0.5, 2.0]))
    with pytest.raises(ValueError, match="got range"):
        fn(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="got torch.int64"):
        fn(torch.tensor([1, 2]))


def test_bad_threshold_and_non_finite_symmetric_values_raise():
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\), got 1.5"):
        binarize_static(torch.zeros(2, dtype=torch.uint8), threshold=1.5)
    with pytest.raises(ValueError, match="finite values, got NaN or inf"):
        from_symmetric(torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match="floating tensor in \\[-1, 1\\], got torch.uint8"):
        from_symmetric(torch.zeros(2, dtype=torch.uint8))
