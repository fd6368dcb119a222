"""Every flow layer of lecture 04 (exported to gmcourse.models.flows): f^-1(f(x)) = x within 1e-4 in
float32, and the log-determinant each layer reports equals the log |det| of autograd's Jacobian
(in float64, on small inputs), for random shapes, seeds and parameters (hypothesis)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gmcourse.models.flows import (
    IAF,
    MAF,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Flow,
    InvertibleConv1x1,
    LogitTransform,
    OnChannels,
    Reverse,
    SplineCoupling,
    Squeeze,
    VariationalDequantizer,
    checkerboard_mask,
    channel_mask,
    conv_net,
    mlp,
    mnist_flow,
    rational_quadratic_spline,
    toy_flow,
)
from gmcourse.models import check_interface

ROUND_TRIP_TOL = 1e-4
SETTINGS = settings(max_examples=8, deadline=None)


def randomise(layer: nn.Module, generator: torch.Generator, scale: float = 0.5) -> nn.Module:
    """Non-trivial parameters everywhere (zero-initialised last layers would make couplings the identity)."""
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=generator))
    return layer


def jacobian_log_det(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """log |det J| of x -> layer(x)[0], one example at a time, from autograd in float64: (B,)."""
    values = []
    for x_one in x.double():
        jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0].flatten(), x_one, vectorize=True)  # (D_out, *shape)
        values.append(torch.linalg.slogdet(jac.reshape(jac.shape[0], -1))[1])
    return torch.stack(values)


def check_layer(layer: nn.Module, x: torch.Tensor) -> None:
    layer.eval()
    with torch.no_grad():
        z, log_det = layer(x)
        x_back = layer.inverse(z)
    assert len(z) == len(x) and z[0].numel() == x[0].numel() and log_det.shape == (len(x),)
    error = (x_back - x).abs().max().item()
    assert error <= ROUND_TRIP_TOL, f"{type(layer).__name__}: round trip error {error:.2e} > {ROUND_TRIP_TOL}"
    layer64 = layer.double()
    expected = jacobian_log_det(layer64, x[:3])
    with torch.no_grad():
        actual = layer64(x[:3].double())[1]
    assert torch.allclose(actual, expected, atol=1e-6, rtol=1e-6), \
        f"{type(layer).__name__}: log-det {actual.tolist()}, autograd's Jacobian gives {expected.tolist()}"
    layer.float()


seeds = st.integers(0, 2**31 - 1)
dims = st.integers(2, 6)


def image(generator, c, h, w, b=4):
    return torch.randn(b, c, h, w, generator=generator)


@SETTINGS
@given(seed=seeds, d=dims, parity=st.integers(0, 1), affine=st.booleans())
def test_vector_couplings(seed, d, parity, affine):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(d) + parity) % 2
    kind = AffineCoupling if affine else AdditiveCoupling
    layer = randomise(kind(mask, mlp(d, kind.n_outputs * d, hidden=16)), g)
    check_layer(layer, torch.randn(5, d, generator=g))



@SETTINGS
@given(seed=seeds, d=dims, parity=st.integers(0, 1), n_bins=st.integers(2, 10))
def test_spline_coupling(seed, d, parity, n_bins):
    """Eq. (12b)'s coupling: round trip and log-det, on points inside and outside [-bound, bound].
    Weights of scale 0.2 keep every slope well above the floor of 1e-3; with far larger ones a
    spline gets nearly flat stretches, whose inverse no float32 computation recovers to 1e-4 (the
    map is ill-conditioned there), so those are checked in float64."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(d) + parity) % 2
    layer = randomise(SplineCoupling(mask, mlp(d, d * (3 * n_bins - 1), hidden=16), n_bins, bound=3.0), g, 0.2)
    x = 2.5 * torch.randn(5, d, generator=g)
    check_layer(layer, x)
    steep = randomise(layer, g, 1.0).double()
    with torch.no_grad():
        # the inverse solves a quadratic per point; where a steep spline is nearly flat its root loses up to
        # sqrt(float64 eps) ~ 1.5e-8 of relative precision (a CI run found 1.04e-8 at seed 667), so 1e-6
        assert (steep.inverse(steep(x.double())[0]) - x.double()).abs().max() < 1e-6


@SETTINGS
@given(seed=seeds, n_bins=st.integers(2, 12))
def test_rational_quadratic_spline_is_monotone_onto_and_the_identity_outside(seed, n_bins):
    g = torch.Generator().manual_seed(seed)
    n = 400
    x = torch.linspace(-5, 5, n, dtype=torch.float64)
    params = [3 * torch.randn(1, k, generator=g, dtype=torch.float64).expand(n, k) for k in (n_bins, n_bins, n_bins - 1)]
    y, log_det = rational_quadratic_spline(x, *params, bound=4.0)
    assert torch.all(y.diff() > 0)  # increasing, so invertible
    outside = x.abs() >= 4
    assert torch.equal(y[outside], x[outside]) and torch.all(log_det[outside] == 0)
    knots = torch.tensor([-4.0, 4.0], dtype=torch.float64)
    ends, _ = rational_quadratic_spline(knots, *[p[:2] for p in params], bound=4.0 - 1e-12)
    assert torch.allclose(ends, knots, atol=1e-9)  # [-bound, bound] onto itself
    slope = torch.autograd.functional.jacobian(lambda v: rational_quadratic_spline(v, *params, bound=4.0)[0].sum(), x)
    assert torch.allclose(log_det, slope.log(), atol=1e-8)
    back, log_det_back = rational_quadratic_spline(y, *params, bound=4.0, inverse=True)
    assert torch.allclose(back, x, atol=1e-8) and torch.allclose(log_det_back, -log_det, atol=1e-8)


@SETTINGS
@given(seed=seeds, c=st.sampled_from([2, 4]), h=st.sampled_from([2, 4]), parity=st.integers(0, 1),
       checkerboard=st.booleans())
def test_image_affine_coupling(seed, c, h, parity, checkerboard):
    g = torch.Generator().manual_seed(seed)
    mask = checkerboard_mask(c, h, h, parity) if checkerboard else channel_mask(c, h, h, parity)
    layer = randomise(AffineCoupling(mask, conv_net(c, 2 * c, hidden=8)), g)
    check_layer(layer, image(g, c, h, h))


@SETTINGS
@given(seed=seeds, c=st.integers(1, 4), spatial=st.booleans())
def test_actnorm_initialises_from_data_then_inverts(seed, c, spatial):
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(64, c, *((3, 3) if spatial else ()), generator=g) + 2
    layer = ActNorm(c)
    z, _ = layer(x)  # the first batch initialises
    dims = [0, 2, 3] if spatial else [0]
    assert torch.allclose(z.mean(dims), torch.zeros(c), atol=1e-4)
    assert torch.allclose(z.std(dims), torch.ones(c), atol=1e-3)
    randomise(layer, g)
    check_layer(layer, x[:4])


@SETTINGS
@given(seed=seeds, c=st.integers(1, 5), spatial=st.booleans())
def test_invertible_conv_1x1(seed, c, spatial):
    g = torch.Generator().manual_seed(seed)
    layer = InvertibleConv1x1(c, generator=g)
    with torch.no_grad():  # move away from the rotation it starts at, keeping the LU structure
        layer.lower.add_(0.3 * torch.randn(c, c, generator=g))
        layer.upper.add_(0.3 * torch.randn(c, c, generator=g))
        layer.log_s.add_(0.3 * torch.randn(c, generator=g))
    w = layer.weight()
    assert torch.allclose(torch.linalg.slogdet(w.double())[1].float(), layer.log_s.sum(), atol=1e-4)
    x = image(g, c, 3, 2) if spatial else torch.randn(4, c, generator=g)
    check_layer(layer, x)


@SETTINGS
@given(seed=seeds, c=st.integers(1, 3), h=st.sampled_from([2, 4, 6]))
def test_squeeze_moves_every_pixel_once(seed, c, h):
    g = torch.Generator().manual_seed(seed)
    x = image(g, c, h, h)
    z, _ = Squeeze()(x)
    assert z.shape == (4, 4 * c, h // 2, h // 2)
    assert torch.equal(z.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    check_layer(Squeeze(), x)


@SETTINGS
@given(seed=seeds, alpha=st.sampled_from([1e-3, 0.05]))
def test_logit_transform(seed, alpha):
    g = torch.Generator().manual_seed(seed)
    check_layer(LogitTransform(alpha), torch.rand(4, 1, 2, 2, generator=g) * 0.98 + 0.01)


@SETTINGS
@given(seed=seeds, d=dims, inverse_autoregressive=st.booleans())
def test_maf_and_iaf(seed, d, inverse_autoregressive):
    g = torch.Generator().manual_seed(seed)
    layer = randomise((IAF if inverse_autoregressive else MAF)(d, hidden_sizes=(16,), seed=seed % 1000), g, 0.3)
    check_layer(layer, torch.randn(5, d, generator=g))


def test_maf_jacobian_is_triangular_in_the_made_order():
    g = torch.Generator().manual_seed(0)
    layer = randomise(MAF(4, hidden_sizes=(16,), seed=3), g, 0.3).double()
    jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], torch.randn(4, dtype=torch.double))
    order = layer.made.order - 1  # position of each input in the ordering
    later = order[None, :] > order[:, None]  # z_i may not depend on x_j when j comes after i
    assert torch.all(jac[later] == 0)


@SETTINGS
@given(seed=seeds)
def test_multi_scale_and_composed_flow(seed):
    g = torch.Generator().manual_seed(seed)
    inner = [ActNorm(2), AffineCoupling(channel_mask(2, 2, 2, 0), conv_net(2, 4, hidden=8))]
    flow = Flow([LogitTransform(), Squeeze(), InvertibleConv1x1(4, generator=g), OnChannels(inner, 2), Reverse()],
                (1, 4, 4))
    x = torch.rand(4, 1, 4, 4, generator=g) * 0.9 + 0.05
    flow(x)  # ActNorm's initialisation
    randomise(flow.layers[3], g, 0.3)
    check_layer(flow, x)
    log_px = flow.log_prob(x)
    assert log_px.shape == (4,) and torch.isfinite(log_px).all()


def test_flow_samples_follow_the_generator_and_temperature():
    flow = Flow([AffineCoupling(torch.tensor([1.0, 0.0]), mlp(2, 4, hidden=8)), Reverse()], (2,))
    a = flow.sample(5, generator=torch.Generator().manual_seed(0))
    b = flow.sample(5, generator=torch.Generator().manual_seed(0))
    cold = flow.sample(5, generator=torch.Generator().manual_seed(0), temperature=0.0)
    assert torch.equal(a, b) and torch.allclose(cold, flow.inverse(torch.zeros(5, 2)))
    assert len(flow.trajectory(a)) == 3


@pytest.mark.parametrize("layer, x, message", [
    (ActNorm(3), torch.zeros(2, 4), r"\(B, 3\)"),
    (InvertibleConv1x1(3), torch.zeros(2, 2, 4, 4), r"\(B, 3\)"),
    (Squeeze(), torch.zeros(1, 1, 3, 4), "even"),
    (AffineCoupling(torch.ones(3), mlp(3, 6, hidden=4)), torch.zeros(2, 4), r"\(B, 3\)"),
])
def test_bad_shapes_are_refused_with_the_expected_shape(layer, x, message):
    with pytest.raises(ValueError, match=message):
        layer(x)


# --- the models: the course's interface, and the variational dequantiser's density -------------

def dequantised_digits(n=4, seed=0):
    from gmcourse.data import dequantize, load_mnist
    return dequantize(load_mnist("test")[0][:n], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["NICE", "RealNVP", "Glow", "MAF", "NSF"])
def test_toy_flows_honour_the_interface(kind):
    flow = toy_flow(kind, n_layers=2, hidden=8)
    report = check_interface(flow, torch.randn(6, 2, generator=torch.Generator().manual_seed(0)))
    assert report["likelihood"] == "exact" and report["sample_shape"] == (3, 2)


def test_mnist_flow_honours_the_interface_and_inverts():
    torch.manual_seed(0)
    flow = mnist_flow(hidden=8, n_steps=(1, 1))
    y = dequantised_digits()
    report = check_interface(flow, y)
    assert report["sample_shape"] == (3, 1, 28, 28)
    randomise(flow, torch.Generator().manual_seed(1), 0.05)
    with torch.no_grad():
        z, _ = flow(y)
        assert z.shape == (4, 16, 7, 7)
        assert (flow.inverse(z) - y).abs().max() <= ROUND_TRIP_TOL


def test_variational_dequantizer_log_q_is_its_change_of_variables():
    torch.manual_seed(0)
    dequantizer = randomise(VariationalDequantizer(hidden=4, n_context=2, n_couplings=2), torch.Generator().manual_seed(2), 0.2)
    k = load_digits_uint8(1)
    eps = torch.randn(1, 4, 14, 14, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    dequantizer = dequantizer.double()
    u, log_det = dequantizer.push(eps, k)
    jac = torch.autograd.functional.jacobian(lambda e: dequantizer.push(e, k)[0].flatten(), eps, vectorize=True)
    expected = torch.linalg.slogdet(jac.reshape(784, 784))[1]
    assert torch.allclose(log_det[0], expected, atol=1e-6), (log_det.item(), expected.item())
    u, log_q = dequantizer.float()(k, generator=torch.Generator().manual_seed(0))
    assert u.shape == (1, 1, 28, 28) and ((u > 0) & (u < 1)).all() and torch.isfinite(log_q).all()
    again, _ = dequantizer(k, generator=torch.Generator().manual_seed(0))
    assert torch.equal(u, again)


def load_digits_uint8(n):
    from gmcourse.data import load_mnist
    return load_mnist("test")[0][:n]
