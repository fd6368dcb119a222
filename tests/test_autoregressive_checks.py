"""Checks of exercise 01 (autoregressive): the solution passes public and hidden checks, and each
typical mistake fails the check written for it (so no check passes whatever the answer)."""
import math

import pytest
import torch
from torch import nn

from gmcourse.checks import autoregressive
from gmcourse.grading import Checker

from exercise_helpers import failed, graded_answers, hidden_checks


@pytest.fixture(scope="module")
def solution():
    """The functions of solutions/01_autoregressive.ipynb, taken from its graded cells."""
    return graded_answers("01_autoregressive", {"math": math, "torch": torch, "nn": nn}, ["q1", "q2", "q3"])


@pytest.fixture(scope="module")
def hidden():
    return hidden_checks("01_autoregressive")


@pytest.mark.parametrize("qid", ["q1", "q2", "q3"])
def test_solution_passes_public_and_hidden_checks(solution, hidden, qid):
    assert failed(autoregressive, solution, qid) == []
    assert failed(hidden, solution, qid) == []


def test_hidden_questions_match_public_ones(hidden):
    assert [q.id for q in hidden.QUESTIONS] == [q.id for q in autoregressive.QUESTIONS]


def test_solution_matches_the_package_masks(solution):
    from gmcourse.nn import conv_mask, made_degrees, made_masks
    degrees = made_degrees(torch.randperm(9) + 1, [20, 15], torch.Generator().manual_seed(3))
    for ours, package in zip(solution["made_masks"](degrees[0], degrees[1:]), made_masks(degrees)):
        assert torch.equal(ours, package)
    for k in (1, 3, 7):
        for t in "AB":
            assert torch.equal(solution["masked_conv_mask"](k, t), conv_mask(k, t))


def made_with(hidden_op, out_op):
    def made_masks(order, hidden_degrees):
        degrees = [order, *hidden_degrees]
        masks = [hidden_op(m_out[:, None], m_in[None, :]).float() for m_in, m_out in zip(degrees[:-1], degrees[1:])]
        return masks + [out_op(order[:, None], degrees[-1][None, :]).float()]
    return made_masks


def test_non_strict_output_mask_fails_the_jacobian_check():
    broken = made_with(torch.ge, torch.ge)  # output d may see hidden units of degree m(d): a leak
    assert "Jacobian: no output depends on itself or a later input" in failed(autoregressive, {"made_masks": broken}, "q1")


def test_strict_hidden_mask_fails_connectivity_and_counts():
    broken = made_with(torch.gt, torch.gt)  # still autoregressive, but cuts allowed paths
    assert failed(autoregressive, {"made_masks": broken}, "q1") == [
        "Jacobian: every earlier input reaches each output when degrees cover 1..D-1", "a unit of degree m sees m inputs",
        "edge case D = 2, reversed order"]


def test_all_zero_masks_fail_connectivity():
    def made_masks(order, hidden_degrees):
        sizes = [len(order), *[len(m) for m in hidden_degrees], len(order)]
        return [torch.zeros(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
    assert "Jacobian: every earlier input reaches each output when degrees cover 1..D-1" in failed(
        autoregressive, {"made_masks": made_masks}, "q1")


def test_transposed_masks_fail_the_shape_check(solution):
    def made_masks(order, hidden_degrees):
        return [m.T for m in solution["made_masks"](order, hidden_degrees)]
    assert "mask shapes (H_1, D), (H_2, H_1), (D, H_2)" in failed(autoregressive, {"made_masks": made_masks}, "q1")


def test_swapped_conv_mask_types_fail(solution):
    def masked_conv_mask(k, t):
        return solution["masked_conv_mask"](k, "B" if t == "A" else "A")
    assert "type A hides the centre, type B keeps it" in failed(autoregressive, {"masked_conv_mask": masked_conv_mask}, "q2")


def test_conv_mask_with_the_whole_centre_row_leaks(solution):
    def masked_conv_mask(k, t):
        if k % 2 == 0:
            raise ValueError("even")
        mask = solution["masked_conv_mask"](k, t)
        mask[k // 2, k // 2 + 1:] = 1  # sees pixels to the right of the centre
        return mask
    result = failed(autoregressive, {"masked_conv_mask": masked_conv_mask}, "q2")
    assert "Jacobian of a type A + type B network is autoregressive" in result


def test_conv_mask_without_the_even_check_fails_only_that(solution):
    def masked_conv_mask(k, t):
        c = k // 2
        mask = torch.zeros(k, k)
        mask[:c] = 1
        mask[c, :c] = 1
        mask[c, c] = float(t == "B")
        return mask
    assert failed(autoregressive, {"masked_conv_mask": masked_conv_mask}, "q2") == ["even kernel sizes raise ValueError"]


def test_naive_log_sigmoid_fails_the_stability_check():
    def nll_bits_per_dim(logits, x):
        p = torch.sigmoid(logits)
        nll = -(x * torch.log(p) + (1 - x) * torch.log(1 - p))
        return nll.flatten(1).sum(1) / (x[0].numel() * math.log(2))
    assert failed(autoregressive, {"nll_bits_per_dim": nll_bits_per_dim}, "q3") == ["stable for confident logits"]


def test_nats_instead_of_bits_fails_known_values():
    def nll_bits_per_dim(logits, x):
        nll = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return nll.flatten(1).sum(1) / x[0].numel()
    result = failed(autoregressive, {"nll_bits_per_dim": nll_bits_per_dim}, "q3")
    assert "fair coins give 1 bit per dimension" in result and "known values for a constant probability" in result


def test_sum_instead_of_per_dimension_fails_the_size_check():
    def nll_bits_per_dim(logits, x):
        nll = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return nll.flatten(1).sum(1) / (30 * math.log(2))  # a fixed D, the check's image size
    assert "per dimension: independent of the image size" in failed(autoregressive, {"nll_bits_per_dim": nll_bits_per_dim}, "q3")


def test_unanswered_stubs_fail_every_check_with_a_hint():
    def made_masks(order, hidden_degrees):
        raise NotImplementedError("q1")
    results = Checker(autoregressive, {"made_masks": made_masks}).results("q1")
    assert results and all(not o.passed and "not answered yet" in o.detail for o in results)
