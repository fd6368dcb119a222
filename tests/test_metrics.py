import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gmcourse.metrics import bernoulli_nll, bits_per_dim, dequantization_correction, nats


def test_uniform_8bit_model_is_8_bits_per_dim():
    # a uniform density on [0, 1]^D has log p = 0; its dequantised discrete NLL is D log 256 = 8 bits/dim
    assert bits_per_dim(0.0, 784, bin_width=1 / 256) == pytest.approx(8.0)
    assert dequantization_correction(3072, 2 / 256) == pytest.approx(3072 * math.log(128))


def test_fair_coin_is_one_bit_per_dim():
    logits = torch.zeros(4, 1, 28, 28)
    x = torch.randint(0, 2, (4, 1, 28, 28)).float()
    nll = bernoulli_nll(logits, x)
    assert nll.shape == (4,)
    assert bits_per_dim(nll, 784) == pytest.approx(torch.ones(4))


@given(nll=st.floats(-1e4, 1e4), n_dims=st.integers(1, 10_000))
def test_nats_and_bits_per_dim_are_inverse(nll, n_dims):
    assert nats(bits_per_dim(nll, n_dims), n_dims) == pytest.approx(nll, rel=1e-9, abs=1e-9)


def test_bernoulli_nll_matches_the_formula():
    logits = torch.tensor([[2.0, -1.0]])
    x = torch.tensor([[1.0, 0.0]])
    expected = -(math.log(torch.sigmoid(torch.tensor(2.0)).item()) + math.log(1 - torch.sigmoid(torch.tensor(-1.0)).item()))
    assert bernoulli_nll(logits, x).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("bad", [0, -5, 2.0, True])
def test_bad_dims_are_rejected(bad):
    with pytest.raises(ValueError, match="n_dims"):
        bits_per_dim(1.0, bad)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3\).*\(2, 4\)"):
        bernoulli_nll(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="bin_width"):
        dequantization_correction(10, 0.0)
