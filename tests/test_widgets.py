"""gmcourse.widgets and gmcourse.widgets_core: the path maths by its properties, and every widget
driven the way a notebook user drives it (set a control's value, the picture must follow)."""
import io
import math

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from gmcourse.widgets import (Completion, DensityScrubber, FamilyPicker, GraphSampler, GuidanceExplorer,
                              Interpolation, LangevinScrubber, LatentExplorer, LatentWalk, ReverseProcessScrubber,
                              Sampler, StepScrubber)
from gmcourse.widgets_core import (grid_points, interpolate, lerp, render, render_density, render_points, side_by_side,
                                   slerp, to_png, top_rows_mask)

# ---------------------------------------------------------------- path maths, by property

coords = st.floats(-10, 10, allow_nan=False, width=64)


@st.composite
def latent_pairs(draw, min_dim=1):
    z_dim = draw(st.integers(min_dim, 8))
    z0 = torch.tensor(draw(st.lists(coords, min_size=z_dim, max_size=z_dim)), dtype=torch.float64)
    z1 = torch.tensor(draw(st.lists(coords, min_size=z_dim, max_size=z_dim)), dtype=torch.float64)
    return z0, z1


def angle(a, b):
    cos = (a @ b) / (a.norm() * b.norm())
    return math.acos(max(-1.0, min(1.0, float(cos))))


@settings(deadline=None)  # the first call pays torch's warm-up
@given(latent_pairs())
def test_lerp_and_slerp_start_at_z0_and_end_at_z1(pair):
    z0, z1 = pair
    for f in (lerp, slerp):
        torch.testing.assert_close(f(z0, z1, 0.0), z0, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(f(z0, z1, 1.0), z1, atol=1e-9, rtol=1e-9)


@settings(deadline=None)
@given(latent_pairs(), st.floats(0, 1))
def test_lerp_lies_on_the_segment(pair, t):
    z0, z1 = pair
    z = lerp(z0, z1, t)
    # distances along the segment add up: |z - z0| + |z1 - z| = |z1 - z0|
    torch.testing.assert_close((z - z0).norm() + (z1 - z).norm(), (z1 - z0).norm(), atol=1e-9, rtol=1e-9)


@settings(deadline=None)
@given(latent_pairs(min_dim=2), st.floats(0.1, 5), st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_slerp_keeps_the_norm_of_equal_norm_inputs(pair, r, ts):
    z0, z1 = pair
    assume(z0.norm() > 1e-3 and z1.norm() > 1e-3)
    z0, z1 = r * z0 / z0.norm(), r * z1 / z1.norm()
    assume(angle(z0, z1) < math.pi - 1e-3)  # antipodal inputs have no unique great circle
    norms = slerp(z0, z1, torch.tensor(ts)).norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, r), atol=1e-9, rtol=1e-9)


@settings(deadline=None)
@given(latent_pairs(min_dim=2), st.floats(0, 1))
def test_slerp_turns_at_a_constant_rate_between_equal_norm_inputs(pair, t):
    z0, z1 = pair
    assume(z0.norm() > 1e-3 and z1.norm() > 1e-3)
    z0, z1 = z0 / z0.norm(), z1 / z1.norm()
    omega = angle(z0, z1)
    assume(1e-3 < omega < math.pi - 1e-3)
    assert angle(z0, slerp(z0, z1, t)) == pytest.approx(t * omega, abs=1e-6)


@settings(deadline=None)
@given(latent_pairs(), st.floats(0.01, 10), st.floats(0, 1))
def test_slerp_of_parallel_vectors_is_lerp(pair, c, t):
    z, _ = pair
    torch.testing.assert_close(slerp(z, z, t), z, atol=1e-12, rtol=0)  # zero angle
    torch.testing.assert_close(slerp(z, c * z, t), lerp(z, c * z, t), atol=1e-9, rtol=1e-9)


def test_slerp_midpoint_of_orthogonal_unit_vectors():
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp(e0, e1, 0.5), torch.tensor([1.0, 1.0]) / math.sqrt(2))


def test_batched_paths_have_shape_T_B_Z_and_match_rowwise_paths():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    t = torch.linspace(0, 1, 4)
    for f in (lerp, slerp):
        z = f(z0, z1, t)
        assert z.shape == (4, 3, 5)
        for b in range(3):
            torch.testing.assert_close(z[:, b], f(z0[b], z1[b], t))
    assert slerp(z0.float(), z1.float(), 0.3).dtype == torch.float32


def test_interpolate_gives_n_steps_from_z0_to_z1():
    z0, z1 = torch.zeros(3), torch.ones(3)
    for mode in ("linear", "spherical"):
        path = interpolate(z0, z1, 5, mode)
        assert path.shape == (5, 3)
        torch.testing.assert_close(path[0], z0)
        torch.testing.assert_close(path[-1], z1)


def test_path_functions_reject_bad_inputs_naming_what_they_got():
    with pytest.raises(ValueError, match=r"\(3,\) and \(4,\)"):
        lerp(torch.zeros(3), torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match="floating point"):
        slerp(torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="n_steps"):
        interpolate(torch.zeros(2), torch.ones(2), 1)
    with pytest.raises(ValueError, match="'cubic'"):
        interpolate(torch.zeros(2), torch.ones(2), 4, "cubic")
    with pytest.raises(ValueError, match=r"t must be .* got shape \(2, 2\)"):
        lerp(torch.zeros(2), torch.ones(2), torch.zeros(2, 2))


@settings(deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(0, 6))
def test_top_rows_mask_observes_exactly_the_top_rows(b, w_, n_rows):
    x = torch.rand(b, 1, 6, w_)
    mask = top_rows_mask(x, n_rows)
    assert mask.shape == x.shape
    assert mask.sum() == b * n_rows * w_
    assert (mask[:, :, :n_rows] == 1).all() and (mask[:, :, n_rows:] == 0).all()


def test_top_rows_mask_rejects_rows_outside_the_image():
    with pytest.raises(ValueError, match=r"\[0, 6\], got 7"):
        top_rows_mask(torch.rand(1, 1, 6, 6), 7)


def test_png_round_trips_pixels_at_scale():
    image = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    png = to_png(image, scale=3)
    back = np.asarray(Image.open(io.BytesIO(png))).astype(np.float32) / 255
    assert back.shape == (15, 21, 3)
    np.testing.assert_allclose(back[::3, ::3], image, atol=1 / 255)
    assert np.asarray(Image.open(io.BytesIO(to_png(image[..., :1])))).shape == (5, 7)
    with pytest.raises(ValueError, match=r"\[0, 1\], got range"):
        to_png(image * 2)


def test_render_tiles_images_and_draws_points():
    assert render(torch.rand(4, 1, 8, 8), nrow=2).shape == (2 * 9 + 1, 2 * 9 + 1, 1)
    picture = render(torch.zeros(10, 2))
    assert picture.ndim == 3 and picture.shape[-1] == 3 and 0 <= picture.min() and picture.max() <= 1
    assert not np.array_equal(picture, render(torch.full((10, 2), 2.0)))
    with pytest.raises(ValueError, match=r"got shape \(5,\)"):
        render(torch.zeros(5))


# ---------------------------------------------------------------- widgets, driven like a user

def tiny_decoder(z_dim=4, size=8, seed=0):
    """A fixed random linear map + sigmoid: (B, Z) -> (B, 1, size, size), sensitive to every z."""
    weight = torch.randn(z_dim, size * size, generator=torch.Generator().manual_seed(seed))

    def decode(z):
        return torch.sigmoid(z @ weight).reshape(-1, 1, size, size)

    return decode


def test_latent_explorer_follows_its_sliders():
    explorer = LatentExplorer(tiny_decoder(), torch.zeros(4), dims=(1, 3))
    first, first_png = explorer.image.copy(), bytes(explorer.view.value)
    assert first.shape == (10, 10, 1) and first_png.startswith(b"\x89PNG")
    explorer.sliders[0].value = 2.0  # what dragging the slider in the browser does
    assert not np.array_equal(explorer.image, first)
    assert bytes(explorer.view.value) != first_png
    torch.testing.assert_close(explorer.z, torch.tensor([0.0, 2.0, 0.0, 0.0]))
    explorer.sliders[0].value = 0.0  # back where it started: the same picture
    np.testing.assert_array_equal(explorer.image, first)
    assert bytes(explorer.view.value) == first_png


def test_latent_explorer_keeps_other_dims_and_clips_start_to_limits():
    z0 = torch.tensor([0.5, 9.0, -0.25, 1.0])
    explorer = LatentExplorer(tiny_decoder(), z0, dims=(1,), limits=(-3, 3))
    assert explorer.sliders[0].value == 3.0
    torch.testing.assert_close(explorer.z, torch.tensor([0.5, 3.0, -0.25, 1.0]))
    np.testing.assert_array_equal(explorer.update(), explorer.image)


def test_latent_explorer_shows_2d_points_too():
    explorer = LatentExplorer(lambda z: z[:, :2] + torch.zeros(50, 2), torch.zeros(2), limits=(-2, 2))
    before = explorer.image.copy()
    explorer.sliders[1].value = 1.5
    assert explorer.image.shape[-1] == 3 and not np.array_equal(explorer.image, before)


def test_latent_explorer_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"dims must be distinct ints in \[0, 4\), got \(0, 4\)"):
        LatentExplorer(tiny_decoder(), torch.zeros(4), dims=(0, 4))
    with pytest.raises(ValueError, match=r"z0 must be a float \(Z,\) vector, got shape \(1, 4\)"):
        LatentExplorer(tiny_decoder(), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="decode must be a callable"):
        LatentExplorer("decoder", torch.zeros(4))
    with pytest.raises(ValueError, match=r"expected images .* got shape \(1,\)"):
        LatentExplorer(lambda z: z.sum(-1), torch.zeros(4))
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        LatentExplorer(lambda z: 5 + torch.zeros(1, 1, 4, 4), torch.zeros(4))


def test_interpolation_follows_mode_and_steps():
    g = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(4, generator=g), 3 * torch.randn(4, generator=g)
    widget = Interpolation(tiny_decoder(), z0, z1, n_steps=6)
    linear = widget.image.copy()
    assert linear.shape == (10, 6 * 9 + 1, 1)
    widget.mode_toggle.value = "spherical"
    assert not np.array_equal(widget.image, linear)
    torch.testing.assert_close(widget.path, interpolate(z0, z1, 6, "spherical"))
    widget.steps_slider.value = 3
    assert widget.image.shape == (10, 3 * 9 + 1, 1)


def test_interpolation_from_inputs_encodes_both_ends():
    decode = tiny_decoder()
    encode = lambda x: x.flatten(1)[:, :4]  # noqa: E731 - a stand-in encoder: the first 4 pixels
    x0, x1 = torch.rand(1, 8, 8), torch.rand(1, 8, 8)
    widget = Interpolation.from_inputs(encode, decode, x0, x1, n_steps=4)
    torch.testing.assert_close(widget.path[0], x0.flatten()[:4])
    torch.testing.assert_close(widget.path[-1], x1.flatten()[:4])
    with pytest.raises(ValueError, match=r"\(2, Z\), got output shape \(2,\)"):
        Interpolation.from_inputs(lambda x: x.flatten(1).sum(1), decode, x0, x1)


def test_latent_walk_draws_its_ends_from_the_seeds_and_follows_them():
    draw_code = lambda generator: torch.randn(4, generator=generator)  # noqa: E731 - a N(0, I) prior
    widget = LatentWalk(tiny_decoder(), draw_code, seeds=(3, 7), n_steps=5)
    torch.testing.assert_close(widget.path[0], torch.randn(4, generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(widget.path[-1], torch.randn(4, generator=torch.Generator().manual_seed(7)))
    before = widget.image.copy()
    widget.seed_boxes[1].value = 8  # what typing a seed in the browser does
    torch.testing.assert_close(widget.path[-1], torch.randn(4, generator=torch.Generator().manual_seed(8)))
    assert not np.array_equal(widget.image, before)
    widget.seed_boxes[1].value = 7  # the same seed gives the same picture again
    np.testing.assert_array_equal(widget.image, before)
    widget.steps_slider.value = 3
    assert widget.image.shape == (10, 3 * 9 + 1, 1)
    with pytest.raises(ValueError, match="two ints"):
        LatentWalk(tiny_decoder(), draw_code, seeds=(1,))
    with pytest.raises(ValueError, match=r"one code of shape \(Z,\), got shape \(1, 4\)"):
        LatentWalk(tiny_decoder(), lambda generator: torch.zeros(1, 4))
    with pytest.raises(ValueError, match="draw_code must be a callable"):
        LatentWalk(tiny_decoder(), None)


def gaussian_decoder_sampler(decode, z_dim=4):
    def sample_fn(n, temperature, generator):
        return decode(temperature * torch.randn(n, z_dim, generator=generator))
    return sample_fn


def test_sampler_is_deterministic_per_seed_and_follows_temperature():
    sampler = Sampler(gaussian_decoder_sampler(tiny_decoder()), n=6, seed=3, nrow=3)
    seed3 = sampler.image.copy()
    assert seed3.shape == (2 * 9 + 1, 3 * 9 + 1, 1)
    np.testing.assert_array_equal(sampler.update(), seed3)  # same seed, same picture
    sampler.next_seed()
    assert sampler.seed_box.value == 4 and not np.array_equal(sampler.image, seed3)
    sampler.seed_box.value = 3
    np.testing.assert_array_equal(sampler.image, seed3)
    sampler.temperature_slider.value = 0.0  # temperature 0: every sample is decode(0)
    grid = sampler.image
    np.testing.assert_array_equal(grid[1:9, 1:9], grid[10:18, 19:27])


def test_sampler_checks_the_sample_count():
    with pytest.raises(ValueError, match="must return 5 samples, got 4"):
        Sampler(lambda n, temperature, generator: torch.rand(4, 1, 8, 8, generator=generator), n=5)


def model_families(calls: list | None = None, n: int = 6):
    """sample_fn(model, seed) for three stand-in families: "light" and "dark" 8x8 images in [0.5, 1] and
    [0, 0.5], and "points" in 2D, all drawn from the seed; it records its calls and whether grad was on."""
    def sample_fn(model, seed):
        if calls is not None:
            calls.append((model, seed, torch.is_grad_enabled()))
        generator = torch.Generator().manual_seed(seed)
        if model == "points":
            return torch.randn(n, 2, generator=generator)
        x = torch.rand(n, 1, 8, 8, generator=generator)
        return 0.5 + x / 2 if model == "light" else x / 2
    return sample_fn


def test_family_picker_follows_its_model_and_seed_one_sample_per_change():
    calls = []
    sample_fn = model_families()
    picker = FamilyPicker(model_families(calls), models=("light", "dark", "points"), seed=3, nrow=3)
    assert calls == [("light", 3, False)]  # sampled once, under torch.no_grad()
    np.testing.assert_array_equal(picker.image, render(sample_fn("light", 3), nrow=3))
    assert picker.image.shape == (2 * 9 + 1, 3 * 9 + 1, 1)
    torch.testing.assert_close(picker.samples, sample_fn("light", 3))
    assert picker.widget.children[0] is picker.model_picker and picker.widget.children[-1] is picker.view
    assert list(picker.widget.children[1].children) == [picker.seed_box, picker.new_seed_button]
    pictures, pngs = [picker.image.copy()], [bytes(picker.view.value)]
    for control, value in ((picker.model_picker, "dark"), (picker.seed_box, 4), (picker.model_picker, "light")):
        control.value = value  # what picking a model / typing a seed in the browser does
        pictures.append(picker.image.copy())
        pngs.append(bytes(picker.view.value))
    assert [c[:2] for c in calls] == [("light", 3), ("dark", 3), ("dark", 4), ("light", 4)]
    assert all(not np.array_equal(a, b) for a, b in zip(pictures, pictures[1:]))
    assert all(a != b for a, b in zip(pngs, pngs[1:]))
    np.testing.assert_array_equal(picker.image, render(sample_fn("light", 4), nrow=3))
    picker.new_seed_button.click()  # the "new seed" button
    assert picker.seed_box.value == 5 and calls[-1] == ("light", 5, False)
    picker.seed_box.value = 3  # the same model and seed: the same picture
    np.testing.assert_array_equal(picker.image, pictures[0])
    assert bytes(picker.view.value) == pngs[0]
    np.testing.assert_array_equal(picker.update(), pictures[0])
    assert not any(grad for _, _, grad in calls)
    picker.model_picker.value = "points"  # a family of 2D points is drawn as a scatter
    np.testing.assert_array_equal(picker.image, render(sample_fn("points", 3)))


def test_family_picker_draws_numpy_images_and_graphs_and_keeps_the_samples_on_the_cpu():
    picker = FamilyPicker(lambda model, seed: np.full((2, 4, 4), 0.25 * seed), models="flat", seed=2, scale=3,
                          device=torch.device("cpu"))
    assert picker.device == torch.device("cpu") and list(picker.model_picker.options) == ["flat"]
    assert isinstance(picker.samples, torch.Tensor) and picker.samples.device.type == "cpu"
    np.testing.assert_array_equal(picker.image, render(np.full((2, 4, 4), 0.5)))
    picker.new_seed_button.click()
    assert float(picker.image[1, 1, 0]) == 0.75
    graphs = FamilyPicker(lambda model, seed: [nx.path_graph(seed + 2), nx.cycle_graph(seed + 3)], models=["paths"],
                          nrow=2, scale=1)
    np.testing.assert_array_equal(graphs.image, render([nx.path_graph(2), nx.cycle_graph(3)], nrow=2))
    assert isinstance(GraphSampler(lambda model, seed: nx.path_graph(3), models="p"), FamilyPicker)


BAD_FAMILY_ARGUMENTS = [
    (dict(sample_fn=None), "sample_fn must be a callable, got NoneType"),
    (dict(models=[]), r"models must be distinct non-empty strs .* got \(\)"),
    (dict(models=["dark", "dark"]), r"models must be distinct non-empty strs .* got \('dark', 'dark'\)"),
    (dict(models=["light", ""]), r"models must be distinct non-empty strs .* got \('light', ''\)"),
    (dict(models=["light", "dark"], model="vae"), r"model must be one of models \('light', 'dark'\), got 'vae'"),
    (dict(seed=1.5), r"seed must be an int in \[0, 2147483647\], got 1.5"),
    (dict(nrow=0), "nrow must be an int >= 1, got 0"),
    (dict(scale=0), "scale must be an int >= 1, got 0"),
    (dict(device="gpu"), r"device must be a torch.device or its name .* got 'gpu'"),
]


def test_family_picker_rejects_bad_arguments_and_bad_samples_saying_what_it_expected():
    for changed, message in BAD_FAMILY_ARGUMENTS:
        with pytest.raises(ValueError, match=message):
            FamilyPicker(**{"sample_fn": model_families(), "models": ["light"], **changed})
    bad_samples = [(None, "sample_fn must return images .* or networkx graphs, got NoneType"),
                   ([], "sample_fn must return images .* or networkx graphs, got list"),
                   (torch.zeros(5), r"got shape \(5,\)"),
                   (torch.zeros(4, 2, 8, 8), r"images must be \(B, C, H, W\) with C in \(1, 3\)"),
                   (torch.zeros(4, 3), r"points must be \(B, 2\), got \(4, 3\)"),
                   (2 * torch.ones(4, 1, 8, 8), r"float images must lie in \[0, 1\]"),
                   ([nx.path_graph(3), 1], r"graphs\[1\] must be a networkx graph")]
    for out, message in bad_samples:
        with pytest.raises(ValueError, match=message):
            FamilyPicker(lambda model, seed: out, models=["broken"])
    picker = FamilyPicker(lambda model, seed: torch.rand(2, 1, 4, 4) if model == "ok" else None,
                          models=["ok", "broken"])
    with pytest.raises(ValueError, match="got NoneType"):
        picker.model_picker.value = "broken"  # a bad sample raises where the model is picked


def test_step_scrubber_over_frames_and_over_a_function():
    frames = torch.linspace(0, 1, 5)[:, None, None, None, None].expand(5, 2, 1, 4, 4)  # (T, B, C, H, W)
    scrubber = StepScrubber(frames)
    assert scrubber.step_slider.max == 4 and scrubber.image[1, 1, 0] == 0
    scrubber.step_slider.value = 4
    assert scrubber.image[1, 1, 0] == 1
    by_fn = StepScrubber(frame_fn=lambda step: frames[step], n_steps=5)
    by_fn.step_slider.value = 2
    scrubber.step_slider.value = 2
    np.testing.assert_array_equal(by_fn.image, scrubber.image)
    with pytest.raises(ValueError, match="exactly one of frames or frame_fn"):
        StepScrubber(frames, frame_fn=lambda step: frames[step], n_steps=5)
    with pytest.raises(ValueError, match="n_steps, an int >= 1, got None"):
        StepScrubber(frame_fn=lambda step: frames[step])
    last = StepScrubber(frames, step=4)  # opens on a chosen step, the Play with it
    assert last.play.value == last.step_slider.value == 4 and last.image[1, 1, 0] == 1
    with pytest.raises(ValueError, match=r"step must be an int in \[0, 4\], got 5"):
        StepScrubber(frames, step=5)


def test_density_scrubber_shows_each_step_and_checks_its_inputs():
    centres = torch.tensor([[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0]])  # a Gaussian bump moving right

    def log_prob_fn(step, grid):
        return -0.5 * ((grid - centres[step]) ** 2).sum(1) / 0.3

    scrubber = DensityScrubber(log_prob_fn, lambda step: centres[step][None] + torch.zeros(4, 2), n_steps=3,
                               names=["a", "b", "c"], n_grid=40)
    first = scrubber.image.copy()
    assert first.ndim == 3 and first.shape[2] == 3 and scrubber.grid.shape == (1600, 2)
    scrubber.step_slider.value = 2
    assert (np.abs(scrubber.image - first) > 0.1).mean() > 0.01  # the bump moved
    scrubber.step_slider.value = 0
    np.testing.assert_array_equal(scrubber.image, first)
    with pytest.raises(ValueError, match="one title per step"):
        DensityScrubber(log_prob_fn, lambda step: centres, n_steps=3, names=["a"])
    with pytest.raises(ValueError, match="log_prob_fn must be a callable"):
        DensityScrubber(None, lambda step: centres, n_steps=3)


PRECISION = torch.tensor([[1.0, 0.0], [0.0, 4.0]])  # E(x) = x^T A x / 2: a Gaussian, narrow in y


def quadratic_energy(x):
    return 0.5 * ((x @ PRECISION) * x).sum(-1)  # (B, 2) -> (B,)


def langevin_chain(n_steps, step_size, noise_scale, generator, n=64):
    """Unadjusted Langevin on quadratic_energy from uniform starts, its gradient by autograd."""
    x = 6 * torch.rand(n, 2, generator=generator) - 3
    frames = [x]
    for _ in range(n_steps):
        x = x.detach().requires_grad_()
        (grad,) = torch.autograd.grad(quadratic_energy(x).sum(), x)
        x = x - step_size * grad + noise_scale * (2 * step_size)**0.5 * torch.randn(x.shape, generator=generator)
        frames.append(x.detach())
    return torch.stack(frames)  # (T+1, n, 2)


def image_chain(n_steps, step_size, noise_scale, generator, n=4, size=6):
    """Langevin towards a ramp image from uniform noise, clamped to [0, 1]: a stand-in for digits."""
    target = torch.linspace(0, 1, size * size).reshape(1, 1, size, size)
    x = torch.rand(n, 1, size, size, generator=generator)
    frames = [x]
    for _ in range(n_steps):
        noise = torch.randn(x.shape, generator=generator)
        x = (x - step_size / 2 * (x - target) / 0.05 + noise_scale * 0.2 * step_size**0.5 * noise).clamp(0, 1)
        frames.append(x)
    return torch.stack(frames)  # (T+1, n, 1, size, size)


def changed(a, b) -> bool:
    return a.shape != b.shape or not np.array_equal(a, b)


def test_langevin_scrubber_over_an_energy_contour_follows_every_control_and_caches_the_chain():
    calls = []

    def chain_fn(n_steps, step_size, noise_scale, generator):
        calls.append((n_steps, step_size, noise_scale))
        return langevin_chain(n_steps, step_size, noise_scale, generator)

    widget = LangevinScrubber(chain_fn, n_steps=10, step_size=0.1, log_density_fn=lambda g: -quadratic_energy(g),
                              n_grid=30)
    assert widget.frames.shape == (11, 64, 2) and widget.step_slider.value == widget.play.value == 10  # the end
    assert widget.step_slider.max == widget.play.max == 10 and widget.scale == 1
    start = 6 * torch.rand(64, 2, generator=torch.Generator().manual_seed(0)) - 3
    torch.testing.assert_close(widget.frames[0], start)  # frame 0 is the start, drawn from the seed
    end = widget.image.copy()
    assert end.ndim == 3 and end.shape[2] == 3
    widget.step_slider.value = 0
    first = widget.image.copy()
    assert changed(first, end) and calls == [(10, 0.1, 1.0)]  # moving the step only picks a frame
    widget.step_size_slider.value = 0.5  # a new chain, from the same start
    assert len(calls) == 2 and calls[-1][1] == 0.5
    np.testing.assert_array_equal(widget.image, first)
    widget.step_slider.value = 10
    assert changed(widget.image, end)
    widget.step_size_slider.value = 0.1
    np.testing.assert_array_equal(widget.image, end)  # same seed and controls, same picture
    widget.noise_slider.value = 0.0  # gradient descent: the energy falls at every step
    descent = widget.image.copy()
    assert changed(descent, end)
    energy = quadratic_energy(widget.frames).mean(1)  # (T+1,)
    assert (energy[1:] < energy[:-1]).all()
    with torch.no_grad():  # the chain still gets its gradients
        widget.seed_box.value = 1
    assert changed(widget.image, descent) and len(calls) == 5
    widget.seed_box.value = 0
    np.testing.assert_array_equal(widget.image, descent)


def test_langevin_scrubber_shows_plain_points_and_image_chains():
    points = LangevinScrubber(langevin_chain, n_steps=3, lim=2.0)
    np.testing.assert_array_equal(points.image[1:-1, 1:-1], render(points.frames[3], lim=2.0))

    widget = LangevinScrubber(image_chain, n_steps=5, step_size=0.01, nrow=2, step=0)
    start = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(widget.image, render(start, nrow=2))  # frame 0 is the start
    assert widget.image.shape == (2 * 7 + 1, 2 * 7 + 1, 1) and widget.scale == 3
    assert Image.open(io.BytesIO(widget.view.value)).size == (45, 45)
    widget.step_slider.value = 5
    end = widget.image.copy()
    assert changed(end, render(start, nrow=2))
    pictures = [end]
    for control, value in ((widget.step_size_slider, 0.05), (widget.seed_box, 5), (widget.noise_slider, 0.0)):
        control.value = value
        pictures.append(widget.image.copy())
    assert all(changed(a, b) for a, b in zip(pictures, pictures[1:]))
    widget.step_size_slider.value, widget.noise_slider.value, widget.seed_box.value = 0.01, 1.0, 0
    np.testing.assert_array_equal(widget.image, end)


def test_langevin_scrubber_rejects_bad_arguments_saying_what_it_expected():
    with pytest.raises(ValueError, match="chain_fn must be a callable, got str"):
        LangevinScrubber("chain", n_steps=5)
    with pytest.raises(ValueError, match="log_density_fn must be a callable"):
        LangevinScrubber(langevin_chain, n_steps=5, log_density_fn=3)
    with pytest.raises(ValueError, match="n_steps must be an int >= 1"):
        LangevinScrubber(langevin_chain, n_steps=0)
    with pytest.raises(ValueError, match=r"step must be an int in \[0, 5\], got 6"):
        LangevinScrubber(langevin_chain, n_steps=5, step=6)
    with pytest.raises(ValueError, match=r"step_size_limits must be \(low, high\) with low < high"):
        LangevinScrubber(langevin_chain, n_steps=5, step_size_limits=(1.0, 0.1))
    with pytest.raises(ValueError, match="step_size_limits must be positive"):
        LangevinScrubber(langevin_chain, n_steps=5, step_size_limits=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"step_size must lie in step_size_limits \[0.001, 1\], got 2.0"):
        LangevinScrubber(langevin_chain, n_steps=5, step_size=2.0)
    with pytest.raises(ValueError, match=r"noise_scale must lie in noise_limits \[0, 2\], got -1"):
        LangevinScrubber(langevin_chain, n_steps=5, noise_scale=-1)
    with pytest.raises(ValueError, match=r"noise_limits must be \(low, high\)"):
        LangevinScrubber(langevin_chain, n_steps=5, noise_limits=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"n_steps \+ 1 = 6 frames, frame 0 the start.* got shape \(5, 64, 2\)"):
        LangevinScrubber(lambda n_steps, *args: langevin_chain(n_steps - 1, *args), n_steps=5)
    with pytest.raises(ValueError, match=r"6 frames.* got shape \(6, 64\)"):
        LangevinScrubber(lambda *args: langevin_chain(*args)[..., 0], n_steps=5)
    with pytest.raises(ValueError, match=r"with log_density_fn, chain_fn must return 2D points"):
        LangevinScrubber(image_chain, n_steps=5, log_density_fn=lambda g: -quadratic_energy(g), n_grid=10)
    with pytest.raises(ValueError, match=r"must map the grid \(100, 2\) to \(100,\), got shape \(10, 10\)"):
        LangevinScrubber(langevin_chain, n_steps=5, log_density_fn=lambda g: g[:, 0].reshape(10, 10), n_grid=10)
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        LangevinScrubber(lambda *args: 2 * image_chain(*args) - 1, n_steps=5)


def test_completion_hides_the_unobserved_rows_and_follows_rows_and_seed():
    seen = {}

    def complete_fn(x_observed, mask, generator):
        seen["x_observed"], seen["mask"] = x_observed, mask
        noise = torch.rand(x_observed.shape, generator=generator)
        return x_observed * mask + noise * (1 - mask)

    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    widget = Completion(complete_fn, x, n_rows=2, seed=0)
    assert (seen["x_observed"][:, :, 2:] == 0).all()  # the model never sees the hidden rows
    torch.testing.assert_close(seen["x_observed"][:, :, :2], x[:, :, :2])
    assert widget.image.shape == (3 * 7 + 1, 2 * 7 + 1, 1)
    first = widget.image.copy()
    np.testing.assert_array_equal(widget.update(), first)
    widget.seed_box.value = 1
    assert not np.array_equal(widget.image, first)
    widget.rows_slider.value = 6
    assert seen["mask"].all()
    with pytest.raises(ValueError, match=r"must return \(2, 1, 6, 6\), got \(2, 6, 6\)"):
        Completion(lambda x_observed, mask, generator: x_observed[:, 0], x)
    with pytest.raises(ValueError, match=r"n_rows must be an int in \[0, 6\], got 9"):
        Completion(complete_fn, x, n_rows=9)


def all_widgets():
    decode = tiny_decoder()
    frames = torch.rand(3, 2, 1, 4, 4)
    return [LatentExplorer(decode, torch.zeros(4)),
            Interpolation(decode, torch.zeros(4), torch.ones(4)),
            LatentWalk(decode, lambda generator: torch.randn(4, generator=generator)),
            Sampler(gaussian_decoder_sampler(decode), n=4),
            StepScrubber(frames),
            LangevinScrubber(image_chain, n_steps=2),
            ReverseProcessScrubber(reverse_chain, n_steps=2, step_options=(2, 4)),
            GuidanceExplorer(guided_sampler, score_fn=lambda images, label: f"label {label}"),
            Completion(lambda x_observed, mask, generator: x_observed, torch.rand(2, 1, 6, 6)),
            GraphSampler(lambda model, seed: nx.gnp_random_graph(8, 0.4, seed=seed), models=["gnp"]),
            FamilyPicker(model_families(), models=["light", "points"])]


def widget_views(outputs) -> list[str]:
    """The model ids of the widget views among captured display outputs."""
    return [o.data["application/vnd.jupyter.widget-view+json"]["model_id"] for o in outputs
            if "application/vnd.jupyter.widget-view+json" in o.data]


def test_every_widget_shows_its_box_through_the_public_display_protocol():
    """display(widget) shows the whole box, on ipywidgets 8 (the lock) and 7.7 (Colab's runtime;
    tests/test_colab_env.py runs this file there, and runs the lectures' widget cells, which end
    in a widget, in a real kernel)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()  # display() publishes through the running shell
    for widget in all_widgets():
        with capture_output() as captured:
            display(widget)
        assert widget_views(captured.outputs) == [widget.widget.model_id], type(widget).__name__


def test_render_density_draws_an_unnormalised_log_density_without_overflow():
    """exp() of an unnormalised log density overflows float64 when it is large; the picture is relative
    to its own range, so shifting log p by a constant (here +1000, where exp overflows) leaves it as it was."""
    grid = grid_points(3.0, 40)
    log_p = -(grid**2).sum(-1) / 2  # (1600,)
    picture = render_density(log_p, grid[:5], lim=3.0)
    shifted = render_density(log_p + 1000.0, grid[:5], lim=3.0)
    assert np.isfinite(shifted).all()
    assert np.array_equal(picture, shifted)


# ---------------------------------------------------------------- diffusion: the reverse process and guidance

def test_side_by_side_places_pictures_left_to_right_with_a_white_gap():
    grey, rgb = np.zeros((4, 5, 1), np.float32), np.full((6, 3, 3), 0.5, np.float32)
    pair = side_by_side([grey, grey], gap=2)
    assert pair.shape == (4, 12, 1)
    assert (pair[:, 5:7] == 1).all() and (pair[:, :5] == 0).all() and (pair[:, 7:] == 0).all()
    mixed = side_by_side([grey, rgb], gap=1)  # grey becomes RGB beside RGB; the shorter one padded below in white
    assert mixed.shape == (6, 9, 3)
    assert (mixed[:4, :5] == 0).all() and (mixed[4:, :5] == 1).all() and (mixed[:, 6:] == 0.5).all()
    with pytest.raises(ValueError, match=r"\(H, W, C\) arrays with C in \(1, 3\), got shapes \[\(4, 5\)\]"):
        side_by_side([grey[..., 0]])
    with pytest.raises(ValueError, match="gap must be an int >= 0, got -1"):
        side_by_side([grey], gap=-1)


TARGET = torch.linspace(0, 1, 36).reshape(1, 1, 6, 6)  # the fixed image the fake reverse process ends on


def reverse_chain(n_steps, generator, b=4):
    """A stand-in for a diffusion sampler: x_t walks in a straight line from noise x_T ~ N(0, I) (outside
    [0, 1], so the widget must clamp it) to TARGET; the 'prediction' x0_hat sharpens from grey to TARGET."""
    noise = torch.randn(b, 1, 6, 6, generator=generator)
    s = torch.linspace(0, 1, n_steps + 1)[:, None, None, None, None]  # (T+1, 1, 1, 1, 1), 0 at x_T
    x_t = (1 - s) * noise + s * TARGET
    x0_hat = (1 - s) * 0.5 + s * TARGET + 0 * noise  # (T+1, b, 1, 6, 6)
    return x_t, x0_hat


def points_reverse_chain(n_steps, generator, b=50):
    noise = torch.randn(b, 2, generator=generator)
    s = torch.linspace(0, 1, n_steps + 1)[:, None, None]
    centre = torch.tensor([2.0, -1.0])
    return (1 - s) * noise + s * centre, s * centre + 0 * noise  # (T+1, b, 2) each


def chain_picture(n_steps, seed, step, nrow=4, gap=6):
    """What ReverseProcessScrubber must show for reverse_chain: x_t clamped, beside x0_hat."""
    x_t, x0_hat = reverse_chain(n_steps, torch.Generator().manual_seed(seed))
    return side_by_side([render(x_t[step].clamp(0, 1), nrow=nrow), render(x0_hat[step].clamp(0, 1), nrow=nrow)],
                        gap=gap)


@settings(deadline=None, max_examples=25)
@given(st.sampled_from([2, 5, 8]), st.data(), st.integers(0, 1000))
def test_reverse_process_scrubber_shows_the_chosen_steps_x_t_beside_its_x0_hat(n_steps, data, seed):
    widget = ReverseProcessScrubber(reverse_chain, n_steps=n_steps, step_options=(2, 5, 8), seed=seed, nrow=2)
    x_t, x0_hat = reverse_chain(n_steps, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(widget.x_t, x_t)  # frame 0 is x_T, drawn from the seed
    torch.testing.assert_close(widget.x0_hat, x0_hat)
    step = data.draw(st.integers(0, n_steps))
    widget.step_slider.value = step  # what dragging the slider in the browser does
    left, right = render(x_t[step].clamp(0, 1), nrow=2), render(x0_hat[step].clamp(0, 1), nrow=2)
    width = left.shape[1]
    np.testing.assert_array_equal(widget.image[:, :width], left)  # x_t on the left
    assert (widget.image[:, width:width + 6] == 1).all()  # a white gap
    np.testing.assert_array_equal(widget.image[:, width + 6:], right)  # x0_hat on the right
    assert widget.caption.value.startswith(f"step {step} of {n_steps} · left: x")


def test_reverse_process_scrubber_reruns_the_chain_only_for_a_new_seed_or_new_steps():
    calls = []

    def chain_fn(n_steps, generator):
        calls.append(n_steps)
        return reverse_chain(n_steps, generator)

    widget = ReverseProcessScrubber(chain_fn, n_steps=10, step_options=(5, 10, 20))
    assert calls == [10] and widget.step_slider.value == widget.play.value == 0  # opens on x_T
    assert widget.step_slider.max == widget.play.max == 10 and widget.scale == 3
    np.testing.assert_array_equal(widget.image, chain_picture(10, seed=0, step=0))
    start = widget.image.copy()
    for step in (3, 10, 7):
        widget.step_slider.value = step
    assert calls == [10]  # moving the step only picks a frame
    seven = widget.image.copy()
    assert changed(seven, start)
    widget.seed_box.value = 4
    assert calls == [10, 10] and changed(widget.image, seven)
    np.testing.assert_array_equal(widget.image, chain_picture(10, seed=4, step=7))
    widget.seed_box.value = 0
    np.testing.assert_array_equal(widget.image, seven)  # the same seed and steps, the same picture
    assert calls == [10, 10, 10]
    drawn, picture_at = [], widget.picture_at

    def counted_picture_at(step):
        drawn.append(step)
        return picture_at(step)

    widget.picture_at = counted_picture_at
    widget.steps_dropdown.value = 20  # the step keeps its place along the chain: 7 of 10 becomes 14 of 20
    assert calls[-1] == 20 and len(calls) == 4 and drawn == [14]  # one new chain, drawn once
    assert widget.step_slider.value == widget.play.value == 14 and widget.step_slider.max == widget.play.max == 20
    assert widget.x_t.shape == (21, 4, 1, 6, 6) and widget.caption.value.startswith("step 14 of 20")
    np.testing.assert_array_equal(widget.image, chain_picture(20, seed=0, step=14))
    widget.step_slider.value = 20
    widget.steps_dropdown.value = 5  # fewer steps: the end stays the end
    assert len(calls) == 5 and drawn == [14, 20, 5] and widget.step_slider.value == widget.play.value == widget.step_slider.max == 5
    np.testing.assert_array_equal(widget.image, chain_picture(5, seed=0, step=5))


def test_reverse_process_scrubber_reads_the_diffusion_time_when_given():
    widget = ReverseProcessScrubber(reverse_chain, n_steps=10, step_options=(10, 20),
                                    timesteps=lambda n: torch.linspace(1000, 0, n + 1).round())
    assert widget.caption.value == "step 0 of 10 · t = 1000 of 1000 · left: xₜ, right: predicted x̂₀"
    widget.step_slider.value = 3
    assert widget.caption.value.startswith("step 3 of 10 · t = 700 of 1000")
    widget.steps_dropdown.value = 20
    assert widget.caption.value.startswith("step 6 of 20 · t = 700 of 1000")
    torch.testing.assert_close(widget.timesteps, torch.linspace(1000, 0, 21, dtype=torch.float64).round())
    continuous = ReverseProcessScrubber(reverse_chain, n_steps=10, step_options=(10,), step=3,
                                        timesteps=lambda n: torch.linspace(1, 0, n + 1))
    assert continuous.caption.value.startswith("step 3 of 10 · t = 0.7 of 1 ·")
    plain = ReverseProcessScrubber(reverse_chain, n_steps=10, step_options=(10,), step=3)
    assert plain.caption.value.startswith("step 3 of 10 · left") and "t =" not in plain.caption.value


def test_reverse_process_scrubber_draws_2d_points_as_two_scatter_panels():
    widget = ReverseProcessScrubber(points_reverse_chain, n_steps=4, step_options=(4,), lim=3.0, step=2)
    x_t, x0_hat = points_reverse_chain(4, torch.Generator().manual_seed(0))
    left = render_points(x_t[2], lim=3.0, title=r"$x_t$")
    right = render_points(x0_hat[2], lim=3.0, title=r"predicted $\hat{x}_0$")
    np.testing.assert_array_equal(widget.image, side_by_side([left, right], gap=6))
    assert widget.scale == 1 and widget.image.shape == (240, 2 * 240 + 6, 3)
    widget.step_slider.value = 4
    assert changed(widget.image[:, :240], left)


@settings(deadline=None, max_examples=15)
@given(st.integers(-3, 3).filter(lambda d: d != 0))
def test_reverse_process_scrubber_rejects_the_wrong_number_of_frames(extra):
    def chain_fn(n_steps, generator):
        return reverse_chain(n_steps + extra, generator)  # n_steps + 1 + extra frames

    with pytest.raises(ValueError, match=r"n_steps \+ 1 = 6 frames each \(frame 0 at x_T\).* got shapes"):
        ReverseProcessScrubber(chain_fn, n_steps=5, step_options=(5,))


def test_reverse_process_scrubber_rejects_bad_arguments_saying_what_it_expected():
    def make(chain_fn=reverse_chain, **kwargs):
        return ReverseProcessScrubber(chain_fn, **{"n_steps": 5, "step_options": (5, 10), **kwargs})

    with pytest.raises(ValueError, match="chain_fn must be a callable, got str"):
        make("chain")
    with pytest.raises(ValueError, match="timesteps must be a callable, got list"):
        make(timesteps=[1, 0])
    with pytest.raises(ValueError, match=r"n_steps must be one of step_options \(5, 10\), got 7"):
        make(n_steps=7)
    with pytest.raises(ValueError, match=r"step_options must be distinct ints >= 1, got \(5, 5\)"):
        make(step_options=(5, 5))
    with pytest.raises(ValueError, match=r"step_options must be distinct ints >= 1, got \(0, 5\)"):
        make(step_options=(0, 5))
    with pytest.raises(ValueError, match=r"step must be an int in \[0, 5\], got 6"):
        make(step=6)
    with pytest.raises(ValueError, match="gap must be an int >= 0"):
        make(gap=-2)
    with pytest.raises(ValueError, match="a pair \\(x_t frames, x0_hat frames\\), got a Tensor"):
        make(lambda n, g: reverse_chain(n, g)[0])
    with pytest.raises(ValueError, match="got a tuple of length 3"):
        make(lambda n, g: (*reverse_chain(n, g), torch.zeros(n + 1)))
    with pytest.raises(ValueError, match=r"of one shape.* got shapes \(6, 4, 1, 6, 6\) and \(6, 4, 6, 6\)"):
        make(lambda n, g: (reverse_chain(n, g)[0], reverse_chain(n, g)[1][:, :, 0]))
    with pytest.raises(ValueError, match=r"got shapes \(6, 4\) and \(6, 4\)"):
        make(lambda n, g: (torch.zeros(n + 1, 4),) * 2)
    with pytest.raises(ValueError, match=r"timesteps must map n_steps = 5 to \(6,\) times.* got shape \(5,\)"):
        make(timesteps=lambda n: torch.arange(n))
    with pytest.raises(ValueError, match=r"images must be \(B, C, H, W\) with C in \(1, 3\)"):
        make(lambda n, g: (torch.rand(n + 1, 4, 2, 6, 6),) * 2)


TEMPLATES = torch.rand(10, 1, 6, 6, generator=torch.Generator().manual_seed(0))  # one fixed image per label


def guided_sampler(label, guidance_scale, generator, b=6):
    """A stand-in for guided sampling: noise pulled towards the label's template, harder for a larger scale."""
    noise = torch.rand(b, 1, 6, 6, generator=generator)
    weight = guidance_scale / (1 + guidance_scale)
    return (1 - weight) * noise + weight * TEMPLATES[label]  # (b, 1, 6, 6) in [0, 1]


@settings(deadline=None, max_examples=25)
@given(st.sampled_from([0.0, 0.5, 2.0, 8.0]), st.integers(0, 9), st.integers(0, 10**6))
def test_guidance_explorer_samples_for_the_current_scale_label_and_seed(guidance_scale, label, seed):
    calls = []

    def sample_fn(label, guidance_scale, generator):
        calls.append((label, guidance_scale))
        return guided_sampler(label, guidance_scale, generator)

    widget = GuidanceExplorer(sample_fn, guidance_scale=1.0, nrow=3)
    assert calls == [(0, 1.0)]
    first = widget.image.copy()
    np.testing.assert_array_equal(first, render(guided_sampler(0, 1.0, torch.Generator().manual_seed(0)), nrow=3))
    widget.guidance_slider.value = guidance_scale  # the slider comes first: it is what the browser test moves
    widget.label_picker.value = label
    widget.seed_box.value = seed
    assert calls[-1] == (label, guidance_scale)
    expected = guided_sampler(label, guidance_scale, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(widget.samples, expected)
    np.testing.assert_array_equal(widget.image, render(expected, nrow=3))


def test_guidance_explorer_follows_each_control_once_and_shows_a_score():
    calls = []

    def sample_fn(label, guidance_scale, generator):
        calls.append((label, guidance_scale))
        return guided_sampler(label, guidance_scale, generator)

    def score_fn(images, label):  # a stand-in classifier: nearest template
        nearest = ((images[:, None] - TEMPLATES[None]) ** 2).flatten(2).sum(-1).argmin(1)
        return f"{int((nearest == label).sum())}/{len(images)} classified as {label}"

    widget = GuidanceExplorer(sample_fn, labels=(1, 3, 7), names=("one", "three", "seven"), label=3,
                              guidance_limits=(0.0, 4.0), score_fn=score_fn)
    assert widget.widget.children[0] is widget.guidance_slider and widget.widget.children[-1] is widget.score
    assert [tuple(option) for option in widget.label_picker.options] == [("one", 1), ("three", 3), ("seven", 7)]
    assert calls == [(3, 1.0)] and widget.score.value.endswith("classified as 3")
    pictures = [widget.image.copy()]
    for control, value in ((widget.guidance_slider, 4.0), (widget.label_picker, 7), (widget.seed_box, 9)):
        control.value = value
        pictures.append(widget.image.copy())
    assert calls == [(3, 1.0), (3, 4.0), (7, 4.0), (7, 4.0)]  # one sample_fn call per change
    assert all(changed(a, b) for a, b in zip(pictures, pictures[1:]))
    assert widget.score.value == score_fn(widget.samples, 7)
    assert widget.score.value.startswith("6/6")  # at scale 4 every sample lies nearest its template
    widget.next_seed()
    assert widget.seed_box.value == 10 and len(calls) == 5
    plain = GuidanceExplorer(guided_sampler)
    assert widget.score not in plain.widget.children and plain.score.value == ""


def test_guidance_explorer_rejects_bad_arguments_saying_what_it_expected():
    with pytest.raises(ValueError, match="sample_fn must be a callable, got NoneType"):
        GuidanceExplorer(None)
    with pytest.raises(ValueError, match="score_fn must be a callable"):
        GuidanceExplorer(guided_sampler, score_fn="accuracy")
    with pytest.raises(ValueError, match=r"labels must be distinct ints, got \(1, 1\)"):
        GuidanceExplorer(guided_sampler, labels=(1, 1))
    with pytest.raises(ValueError, match=r"labels must be distinct ints, got \('a', 'b'\)"):
        GuidanceExplorer(guided_sampler, labels=("a", "b"))
    with pytest.raises(ValueError, match=r"label must be one of labels \(0, 1, 2\), got 5"):
        GuidanceExplorer(guided_sampler, labels=range(3), label=5)
    with pytest.raises(ValueError, match=r"names must be one str per label \(3\)"):
        GuidanceExplorer(guided_sampler, labels=range(3), names=["a", "b"])
    with pytest.raises(ValueError, match=r"guidance_scale must lie in guidance_limits \[0, 8\], got 9"):
        GuidanceExplorer(guided_sampler, guidance_scale=9)
    with pytest.raises(ValueError, match=r"guidance_limits must be \(low, high\) with low < high"):
        GuidanceExplorer(guided_sampler, guidance_limits=(2.0, 1.0))
    with pytest.raises(ValueError, match="score_fn must return a str to show, got float"):
        GuidanceExplorer(guided_sampler, score_fn=lambda images, label: 0.5)
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        GuidanceExplorer(lambda label, guidance_scale, generator: 2 * guided_sampler(label, 0.0, generator) - 1)


def test_every_widget_with_a_device_names_a_bad_one():
    """A device torch cannot parse is a ValueError that says what was expected, in every widget that
    takes one (the check FamilyPicker introduced, shared)."""
    decode = tiny_decoder()
    bad = "gpu"
    makers = [lambda: Sampler(gaussian_decoder_sampler(decode), n=4, device=bad),
              lambda: LatentWalk(decode, lambda generator: torch.randn(4, generator=generator), device=bad),
              lambda: LangevinScrubber(image_chain, n_steps=2, device=bad),
              lambda: ReverseProcessScrubber(reverse_chain, n_steps=2, step_options=(2, 4), device=bad),
              lambda: GuidanceExplorer(guided_sampler, score_fn=lambda images, label: f"label {label}", device=bad),
              lambda: Completion(lambda x_observed, mask, generator: x_observed, torch.rand(2, 1, 6, 6), device=bad),
              lambda: FamilyPicker(model_families(), models=["light", "points"], device=bad)]
    for make in makers:
        with pytest.raises(ValueError, match=r"device must be a torch.device or its name .* got 'gpu'"):
            make()
