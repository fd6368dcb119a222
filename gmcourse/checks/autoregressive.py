"""Public checks for exercises/01_autoregressive: MADE masks, PixelCNN masks, NLL in bits per dim.

Shapes: B batch, D data dim, H_k hidden units of layer k, k kernel size, C H W image.
Every check tests a property (the autoregressive property through a Jacobian, edge cases with
known values, counts, stability, gradients), so reading this file does not give the answers away.
The probes return only the student's raw values (masks, bits per dimension at chosen logits);
the Jacobians and finite-difference gradients are computed by the checks, outside the student's
code.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gmcourse.grading.expect import expect_close, expect_finite, expect_shape
from gmcourse.grading.question import (Check, CheckFailed, Question, as_array, as_tensor,
                                       student_function)

LN2 = math.log(2.0)
FD_STEP = 0.25  # central differences of bits per dim: truncation < 1e-4 and float32 rounding < 1e-4


def random_weights(shape, generator: torch.Generator) -> torch.Tensor:
    """Weights of magnitude in [0.5, 1.5] with random signs: never zero, so every path counts."""
    magnitude = 0.5 + torch.rand(shape, generator=generator)
    sign = torch.randint(0, 2, shape, generator=generator) * 2 - 1
    return magnitude * sign


def masked_tanh_jacobian(masks, weights, x) -> torch.Tensor:
    """(D, D) Jacobian of tanh-layers with masked weights, ``out = (W_K*M_K) tanh(... tanh((W_0*M_0) x))``."""
    def f(v):
        h = v
        for i, (mask, weight) in enumerate(zip(masks, weights)):
            h = (weight * mask) @ h
            if i < len(masks) - 1:
                h = torch.tanh(h + 0.1)
        return h
    return torch.autograd.functional.jacobian(f, x)


# ---- q1: made_masks(order, hidden_degrees) -> [M_1, ..., M_K, M_out] ---------------------------

def q1_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    d = 7
    order = torch.randperm(d, generator=generator) + 1                        # (D,) positions 1..D
    degrees_1 = torch.randint(1, d, (9,), generator=generator)               # (H_1,)
    degrees_2 = torch.randint(1, d, (8,), generator=generator)               # (H_2,)
    covering = torch.arange(1, d).repeat(2)                                  # every degree 1..D-1
    inputs = {"order": order, "degrees_1": degrees_1, "degrees_2": degrees_2, "covering": covering,
              "x": torch.randn(d, generator=generator),
              "order_2": torch.tensor([2, 1]), "degrees_2d": torch.tensor([1, 1, 1])}
    shapes = {"w_1": (9, d), "w_2": (8, 9), "w_out": (d, 8), "w_cover_1": (12, d),
              "w_cover_2": (12, 12), "w_cover_out": (d, 12), "w_2d_1": (3, 2), "w_2d_out": (2, 3)}
    inputs.update({name: random_weights(shape, generator) for name, shape in shapes.items()})
    return {key: value.numpy() for key, value in inputs.items()}


def _long(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.long)


def _jacobian_or_nan(masks, weights, x) -> torch.Tensor:
    """The masked network's Jacobian, or NaNs when the masks do not fit the weights (the shape check says why)."""
    masks = [torch.as_tensor(m, dtype=torch.float32) for m in masks]
    if len(masks) != len(weights) or any(m.shape != w.shape for m, w in zip(masks, weights)):
        return torch.full((len(x), len(x)), float("nan"))
    return masked_tanh_jacobian(masks, weights, x)


def q1_probe(namespace, inputs):
    """Only the student's raw masks; the checks build the networks and their Jacobians."""
    made_masks = student_function(namespace, "made_masks")
    order = _long(inputs["order"])
    masks = made_masks(order, [_long(inputs["degrees_1"]), _long(inputs["degrees_2"])])
    if len(masks) != 3:
        raise ValueError(f"made_masks with 2 hidden layers should return 3 masks, got {len(masks)}")
    covering = _long(inputs["covering"])
    out = {f"mask_{i}": as_array(m, f"mask {i}") for i, m in enumerate(masks)}
    out.update({f"cover_mask_{i}": as_array(m, f"mask {i}") for i, m in enumerate(made_masks(order, [covering, covering]))})
    out.update({f"small_mask_{i}": as_array(m, f"mask {i}")
                for i, m in enumerate(made_masks(_long(inputs["order_2"]), [_long(inputs["degrees_2d"])]))})
    return out


def _masks(outputs, prefix: str) -> list[np.ndarray]:
    masks, i = [], 0
    while f"{prefix}{i}" in outputs:
        masks.append(outputs[f"{prefix}{i}"])
        i += 1
    return masks


def q1_jacobians(inputs, outputs) -> dict[str, np.ndarray]:
    """The Jacobians of tanh networks masked by the student's masks, computed by the checks."""
    x = as_tensor(inputs["x"])
    networks = {"jacobian": ("mask_", ("w_1", "w_2", "w_out"), x),
                "cover_jacobian": ("cover_mask_", ("w_cover_1", "w_cover_2", "w_cover_out"), x),
                "small_jacobian": ("small_mask_", ("w_2d_1", "w_2d_out"), x[:2])}
    return {name: _jacobian_or_nan(_masks(outputs, prefix), [as_tensor(inputs[k]) for k in keys], v).numpy()
            for name, (prefix, keys, v) in networks.items()}


def _q1_shapes(inputs, outputs):
    d, h_1, h_2 = len(inputs["order"]), len(inputs["degrees_1"]), len(inputs["degrees_2"])
    for i, shape in enumerate([(h_1, d), (h_2, h_1), (d, h_2)]):
        expect_shape(outputs[f"mask_{i}"], shape, f"mask {i} (shaped like nn.Linear.weight: (out, in))")


def _q1_binary(inputs, outputs):
    for i in range(3):
        values = np.unique(outputs[f"mask_{i}"])
        if not set(values.tolist()) <= {0.0, 1.0}:
            raise CheckFailed(f"mask {i} should hold only 0 and 1", expected="{0, 1}", actual=values)


def _forbidden(order):
    order = np.asarray(order)
    return order[None, :] >= order[:, None]  # (D, D): input j (column) is not before output d (row)


def _q1_autoregressive(inputs, outputs):
    jacobian = q1_jacobians(inputs, outputs)["jacobian"]
    leaks = (jacobian != 0) & _forbidden(inputs["order"])
    if not np.isfinite(jacobian).all() or leaks.any():
        raise CheckFailed("d out_d / d x_j must be 0 unless input j comes before output d in the ordering "
                          "(rows: outputs, columns: inputs; 1 marks a forbidden dependency)",
                          expected="no forbidden dependency", actual=leaks.astype(int))


def _q1_connected(inputs, outputs):
    missing = ~(q1_jacobians(inputs, outputs)["cover_jacobian"] != 0) & ~_forbidden(inputs["order"])  # NaN: missing
    if missing.any():
        raise CheckFailed("with hidden degrees covering 1..D-1, every input before output d must reach it "
                          "(1 marks an allowed dependency that your masks cut)",
                          expected="no missing dependency", actual=missing.astype(int))


def _q1_hidden_counts(inputs, outputs):
    expect_close(outputs["mask_0"].sum(1), inputs["degrees_1"],
                 "a first-layer unit of degree m sees exactly m inputs (row sums of mask 0)")


def _q1_two_inputs(inputs, outputs):
    expected = np.array([[0.0, 1.0], [0.0, 0.0]])
    expect_close((q1_jacobians(inputs, outputs)["small_jacobian"] != 0).astype(float), expected,
                 "D = 2 with order [2, 1]: output 0 depends on input 1 only, output 1 on nothing")


Q1 = Question(
    id="q1", functions=("made_masks",), make_inputs=q1_inputs, probe=q1_probe,
    checks=(Check("mask shapes (H_1, D), (H_2, H_1), (D, H_2)", _q1_shapes),
            Check("masks hold only 0 and 1", _q1_binary),
            Check("Jacobian: no output depends on itself or a later input", _q1_autoregressive),
            Check("Jacobian: every earlier input reaches each output when degrees cover 1..D-1", _q1_connected),
            Check("a unit of degree m sees m inputs", _q1_hidden_counts),
            Check("edge case D = 2, reversed order", _q1_two_inputs)))


# ---- q2: masked_conv_mask(kernel_size, mask_type) -> (k, k) -----------------------------------

def q2_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"kernel_sizes": np.array([1, 3, 5, 7]), "image": torch.randn(1, 1, 8, 9, generator=generator).numpy(),
            "w_first": random_weights((3, 1, 5, 5), generator).numpy(),
            "w_second": random_weights((1, 3, 3, 3), generator).numpy()}


def q2_probe(namespace, inputs):
    """Only the student's raw masks (and whether an even size raises); the checks do the rest."""
    masked_conv_mask = student_function(namespace, "masked_conv_mask")
    out = {}
    for k in inputs["kernel_sizes"].tolist():
        for mask_type in ("A", "B"):
            out[f"{mask_type}{k}"] = as_array(masked_conv_mask(k, mask_type), f"mask {mask_type}, k = {k}")
    try:
        masked_conv_mask(4, "A")
        out["even_raises"] = np.array(0.0)
    except ValueError:
        out["even_raises"] = np.array(1.0)
    return out


def q2_jacobian(inputs, outputs) -> np.ndarray:
    """(H*W, H*W) Jacobian of a type A 5x5 then type B 3x3 network built with the student's masks."""
    mask_a = torch.as_tensor(outputs["A5"], dtype=torch.float32)
    mask_b = torch.as_tensor(outputs["B3"], dtype=torch.float32)
    w_first, w_second = as_tensor(inputs["w_first"]), as_tensor(inputs["w_second"])
    image = as_tensor(inputs["image"])
    h, w = image.shape[-2:]

    def net(v):  # (H*W,) -> (H*W,)
        hidden = torch.tanh(torch.nn.functional.conv2d(v.view(1, 1, h, w), w_first * mask_a, padding=2))
        return torch.nn.functional.conv2d(hidden, w_second * mask_b, padding=1).flatten()

    return torch.autograd.functional.jacobian(net, image.flatten()).numpy()


def _q2_shapes(inputs, outputs):
    for k in inputs["kernel_sizes"].tolist():
        for t in "AB":
            expect_shape(outputs[f"{t}{k}"], (k, k), f"mask type {t} with kernel_size {k}")


def _q2_binary(inputs, outputs):
    for k in inputs["kernel_sizes"].tolist():
        for t in "AB":
            values = np.unique(outputs[f"{t}{k}"])
            if not set(values.tolist()) <= {0.0, 1.0}:
                raise CheckFailed(f"mask type {t}, k = {k} should hold only 0 and 1", expected="{0, 1}", actual=values)


def _q2_centre(inputs, outputs):
    for k in inputs["kernel_sizes"].tolist():
        c = k // 2
        expect_close([outputs[f"A{k}"][c, c], outputs[f"B{k}"][c, c]], [0.0, 1.0],
                     f"centre of the k = {k} masks: type A hides it, type B keeps it")


def _q2_counts(inputs, outputs):
    for k in inputs["kernel_sizes"].tolist():
        difference = outputs[f"B{k}"] - outputs[f"A{k}"]
        expect_close(difference.sum(), 1.0, f"type B and type A (k = {k}) differ in exactly one pixel, the centre")
        expect_close(outputs[f"A{k}"].sum(), (k * k - 1) / 2,
                     f"type A (k = {k}) sees the (k*k - 1)/2 pixels before the centre in raster order")


def _q2_autoregressive(inputs, outputs):
    jac = q2_jacobian(inputs, outputs)
    n = jac.shape[0]
    leaks = (jac != 0) & np.triu(np.ones((n, n), dtype=bool))
    if leaks.any():
        raise CheckFailed("type A then type B: output pixel i must not depend on input pixels i, i+1, ... in raster "
                          "order (rows: outputs, columns: inputs, raster index)",
                          expected="no forbidden dependency", actual=np.argwhere(leaks)[:5])


def _q2_sees_neighbours(inputs, outputs):
    h, w = inputs["image"].shape[-2:]
    jac = q2_jacobian(inputs, outputs)
    row, col = h // 2, w // 2
    i = row * w + col
    seen = [jac[i, i - 1] != 0, jac[i, i - w] != 0, jac[i, i - w + 1] != 0]
    expect_close(np.array(seen, dtype=float), np.ones(3),
                 "pixel (4, 4) should depend on its left, upper and upper-right neighbours")


def _q2_even(inputs, outputs):
    expect_close(outputs["even_raises"], 1.0, "an even kernel_size has no centre: raise ValueError")


Q2 = Question(
    id="q2", functions=("masked_conv_mask",), make_inputs=q2_inputs, probe=q2_probe,
    checks=(Check("shape (k, k) for k = 1, 3, 5, 7", _q2_shapes),
            Check("masks hold only 0 and 1", _q2_binary),
            Check("type A hides the centre, type B keeps it", _q2_centre),
            Check("A and B differ at the centre only; A sees (k*k - 1)/2 pixels", _q2_counts),
            Check("Jacobian of a type A + type B network is autoregressive", _q2_autoregressive),
            Check("Jacobian: a pixel sees its causal neighbours", _q2_sees_neighbours),
            Check("even kernel sizes raise ValueError", _q2_even)))


# ---- q3: nll_bits_per_dim(logits, x) -> (B,) --------------------------------------------------

def q3_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    logits = 2.0 * torch.randn(4, 1, 5, 6, generator=generator)
    x = torch.bernoulli(torch.full((4, 1, 5, 6), 0.5), generator=generator)
    return {"logits": logits.numpy(), "x": x.numpy(), "p": np.array(0.8)}


def q3_probe(namespace, inputs):
    nll_bpd = student_function(namespace, "nll_bits_per_dim")
    logits, x = as_tensor(inputs["logits"]), as_tensor(inputs["x"])
    p = float(inputs["p"])
    with torch.no_grad():
        bpd = nll_bpd(logits, x)
        steps = FD_STEP * torch.eye(logits.numel()).view(-1, *logits.shape)   # one logit at a time
        logit_p = torch.full_like(x, math.log(p / (1 - p)))
        out = {
            "bpd": bpd,
            "logits_plus": torch.stack([nll_bpd(logits + e, x) for e in steps]),    # (B*C*H*W, B)
            "logits_minus": torch.stack([nll_bpd(logits - e, x) for e in steps]),
            "zero_logits": nll_bpd(torch.zeros_like(x), x),
            "constant_ones": nll_bpd(logit_p, torch.ones_like(x)),
            "constant_zeros": nll_bpd(logit_p, torch.zeros_like(x)),
            "confident_right": nll_bpd(100.0 * (2 * x - 1), x),
            "confident_wrong": nll_bpd(-100.0 * (2 * x - 1), x),
            "tiled": nll_bpd(logits.repeat(1, 1, 2, 3), x.repeat(1, 1, 2, 3)),
        }
    return {key: as_array(value, key) for key, value in out.items()}


def _q3_shape(inputs, outputs):
    expect_shape(outputs["bpd"], (inputs["x"].shape[0],), "one value per image for x of shape (4, 1, 5, 6)")


def _q3_coin(inputs, outputs):
    expect_close(outputs["zero_logits"], np.ones(len(inputs["x"])), "logits 0 (every pixel a fair coin): 1 bit per dim")


def _q3_constant(inputs, outputs):
    p, b = float(inputs["p"]), len(inputs["x"])
    expect_close(outputs["constant_ones"], np.full(b, -math.log2(p)), "p = 0.8 everywhere, x all ones: -log2(0.8)")
    expect_close(outputs["constant_zeros"], np.full(b, -math.log2(1 - p)), "p = 0.8 everywhere, x all zeros: -log2(0.2)")


def _q3_stable(inputs, outputs):
    expect_finite(outputs["confident_wrong"], "bpd with logits of +-100 on the wrong side")
    expect_close(outputs["confident_right"], np.zeros(len(inputs["x"])), "logits +-100 on the right side: ~0 bits",
                 atol=1e-6)
    expect_close(outputs["confident_wrong"], np.full(len(inputs["x"]), 100 / LN2),
                 "logits +-100 on the wrong side: 100 nats per pixel = 100 / ln 2 bits", rtol=1e-3)


def _q3_gradient(inputs, outputs):
    logits, x = inputs["logits"], inputs["x"]
    d = np.prod(x.shape[1:])
    expected = (0.5 * (1 + np.tanh(logits / 2)) - x) / (d * LN2)  # sigmoid, without overflow
    finite_difference = (outputs["logits_plus"] - outputs["logits_minus"]).sum(axis=1) / (2 * FD_STEP)
    expect_close(finite_difference.reshape(logits.shape), expected,
                 "d bpd / d logits by central differences of your values vs (sigmoid(logits) - x) / (D ln 2)",
                 rtol=1e-3, atol=1e-4)


def _q3_size(inputs, outputs):
    expect_close(outputs["tiled"], outputs["bpd"], "tiling each image 2 x 3 times keeps bits per dimension", rtol=1e-4)


Q3 = Question(
    id="q3", functions=("nll_bits_per_dim",), make_inputs=q3_inputs, probe=q3_probe,
    checks=(Check("returns shape (B,)", _q3_shape),
            Check("fair coins give 1 bit per dimension", _q3_coin),
            Check("known values for a constant probability", _q3_constant),
            Check("stable for confident logits", _q3_stable),
            Check("gradient matches (sigmoid(logits) - x) / (D ln 2)", _q3_gradient),
            Check("per dimension: independent of the image size", _q3_size)))

QUESTIONS = (Q1, Q2, Q3)
