"""Masked layers: the autoregressive property through the Jacobian, and mask edge cases."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmcourse.nn import MADE, MaskedConv2d, MaskedLinear, conv_mask, made_degrees, made_masks


def jacobian_of(f, x):
    """(out_dims, in_dims) Jacobian of a function of one flat example x (D,)."""
    return torch.autograd.functional.jacobian(f, x)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 9), hidden=st.lists(st.integers(1, 12), min_size=1, max_size=3),
       n_params=st.integers(1, 2), seed=st.integers(0, 10_000))
def test_made_jacobian_is_autoregressive_for_any_order(d, hidden, n_params, seed):
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(d, generator=g) + 1
    net = MADE(d, hidden, n_params=n_params, order=order, seed=seed)
    for p in net.parameters():  # large random weights so that every allowed path is non-zero
        torch.nn.init.normal_(p, generator=g)
    x = torch.randn(d, generator=g)
    jac = jacobian_of(lambda v: net(v[None])[0], x)  # (n_params, D, D)
    allowed = order[:, None] > order[None, :]  # output d may see input j iff j comes before d
    assert jac.shape == (n_params, d, d)
    assert torch.all(jac[:, ~allowed] == 0), f"forbidden dependencies: {jac.abs().sum(0) * ~allowed}"


def test_made_uses_every_allowed_connection_in_natural_order():
    torch.manual_seed(0)
    net = MADE(5, [200, 200], seed=1)  # wide enough that every allowed path exists
    jac = jacobian_of(lambda v: net(v[None])[0, 0], torch.randn(5))
    assert torch.equal(jac != 0, torch.ones(5, 5).tril(-1).bool())


def test_made_masks_edge_cases():
    # D = 1: nothing may be seen, the only output is a constant (its bias)
    masks = made_masks(made_degrees([1], [3]))
    assert [tuple(m.shape) for m in masks] == [(3, 1), (1, 3)]
    assert (masks[1] @ masks[0]).sum() == 0  # no path from the input to the output
    # D = 2: hidden degrees are all 1, so output 2 sees input 1 and output 1 sees nothing
    m_in, m_out = made_masks(made_degrees([1, 2], [4]))
    assert torch.equal(m_in, torch.tensor([[1.0, 0.0]] * 4))
    assert torch.equal(m_out, torch.tensor([[0.0] * 4, [1.0] * 4]))
    # a reversed order reverses who sees whom
    m_in, m_out = made_masks(made_degrees([2, 1], [4]))
    assert torch.equal(m_in, torch.tensor([[0.0, 1.0]] * 4))
    assert torch.equal(m_out, torch.tensor([[1.0] * 4, [0.0] * 4]))


def test_hidden_degrees_avoid_dead_units():
    degrees = made_degrees(torch.arange(1, 11), [500], torch.Generator().manual_seed(0))
    assert degrees[1].min() >= 1 and degrees[1].max() <= 9  # D = 10 is never useful to a hidden unit


@pytest.mark.parametrize("bad", [[1, 1, 2], [0, 1, 2], [1, 2, 4], [[1, 2]], []])
def test_order_must_be_a_permutation(bad):
    with pytest.raises(ValueError, match="order"):
        made_degrees(bad, [3])


def test_masked_linear_checks_the_mask_shape():
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        MaskedLinear(2, 3, torch.ones(2, 3))
    layer = MaskedLinear(2, 3, torch.zeros(3, 2))
    assert torch.equal(layer(torch.randn(4, 2)), layer.bias.expand(4, 3))


def test_set_order_changes_the_autoregressive_structure():
    net = MADE(4, [64], seed=0)
    net.set_order(torch.tensor([4, 3, 2, 1]), torch.Generator().manual_seed(0))
    jac = jacobian_of(lambda v: net(v[None])[0, 0], torch.randn(4))
    assert torch.all(jac[torch.ones(4, 4).tril().bool()] == 0)  # now output d sees only j > d


def test_conv_mask_values():
    assert torch.equal(conv_mask(1, "A"), torch.zeros(1, 1))
    assert torch.equal(conv_mask(1, "B"), torch.ones(1, 1))
    a, b = conv_mask(5, "A"), conv_mask(5, "B")
    assert a.sum() == 12 and b.sum() == 13  # (k*k - 1) / 2 pixels before the centre
    assert torch.equal(b - a, torch.zeros(5, 5).index_put_((torch.tensor(2), torch.tensor(2)), torch.tensor(1.0)))
    assert a[3:].sum() == 0 and a[2, 2:].sum() == 0


@pytest.mark.parametrize("k, t", [(2, "A"), (0, "B"), (3, "C"), (3.0, "A")])
def test_conv_mask_rejects_bad_arguments(k, t):
    with pytest.raises(ValueError):
        conv_mask(k, t)


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_stack_is_autoregressive_in_raster_order(mask_type):
    torch.manual_seed(0)
    h, w = 6, 5
    net = torch.nn.Sequential(MaskedConv2d(1, 4, 5, mask_type), torch.nn.Tanh(), MaskedConv2d(4, 1, 3, "B"))
    jac = jacobian_of(lambda v: net(v.view(1, 1, h, w)).flatten(), torch.randn(h * w))  # (HW, HW)
    pos = torch.arange(h * w)
    before = pos[None, :] < pos[:, None]
    allowed = before if mask_type == "A" else before | torch.eye(h * w, dtype=torch.bool)
    assert torch.all(jac[~allowed] == 0)
    assert (jac[allowed] != 0).any()
    if mask_type == "A":
        assert torch.all(jac.diagonal() == 0)


def test_masked_conv_with_a_custom_mask_keeps_size_and_zeros():
    vertical = torch.tensor([[1.0, 1, 1], [1, 1, 1], [0, 0, 0]])  # rows above and the centre row
    conv = MaskedConv2d(2, 3, mask=vertical)
    x = torch.randn(1, 2, 7, 6, requires_grad=True)
    y = conv(x)
    assert y.shape == (1, 3, 7, 6)
    (grad,) = torch.autograd.grad(y[0, :, 3, 2].sum(), x)
    assert grad[0, :, 4:].abs().sum() == 0 and grad[0, :, 3, 2].abs().sum() > 0
    horizontal = torch.tensor([[1.0, 0, 0]])
    assert MaskedConv2d(1, 1, mask=horizontal)(torch.randn(1, 1, 3, 4)).shape == (1, 1, 3, 4)


@pytest.mark.parametrize("dilation", [2, 3])
def test_dilated_masked_conv_keeps_size_and_reaches_dilation_pixels_away(dilation):
    torch.manual_seed(0)
    conv = MaskedConv2d(1, 1, 3, "B", dilation=dilation)
    x = torch.randn(1, 1, 9, 9, requires_grad=True)
    y = conv(x)
    assert y.shape == x.shape
    (grad,) = torch.autograd.grad(y[0, 0, 4, 4], x)
    seen = {(int(r), int(c)) for r, c in grad[0, 0].nonzero()}
    d = dilation
    assert seen == {(4 - d, 4 - d), (4 - d, 4), (4 - d, 4 + d), (4, 4 - d), (4, 4)}  # the type-B taps, d apart


@pytest.mark.parametrize("dilation", [0, 1.5])
def test_masked_conv_rejects_a_bad_dilation(dilation):
    with pytest.raises(ValueError, match="dilation"):
        MaskedConv2d(1, 1, 3, "B", dilation=dilation)


@pytest.mark.parametrize("kwargs", [{}, {"kernel_size": 3, "mask_type": "A", "mask": torch.ones(3, 3)},
                                    {"mask": torch.ones(2, 3)}, {"mask": torch.ones(3)}])
def test_masked_conv_rejects_ambiguous_or_even_masks(kwargs):
    with pytest.raises(ValueError):
        MaskedConv2d(1, 1, **kwargs)
