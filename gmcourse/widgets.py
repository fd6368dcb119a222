"""Widgets to explore any generative model, generic over plain callables.

Each widget takes functions, not models, so a VAE, a GAN, a flow or a diffusion model plugs in
the same way. Every widget has controls, an ``update()`` method that computes the picture from
the current control values (the controls call it when they change, and it is the only place the
picture changes, so a test can call it too), ``.image`` (the shown picture, an (H, W, C) float
array in [0, 1]) and ``.view`` (an ``ipywidgets.Image`` holding it as PNG bytes, which renders in
JupyterLab, Notebook, VS Code and Colab). ``.widget`` is the whole box; a widget also displays
itself when it is the last expression of a cell or passed to ``display``.

Only core ipywidgets (sliders, buttons, text boxes, ``Play``, ``Image``, boxes) are used, and a
widget is shown through IPython's public display protocol, so every widget works on ipywidgets
7.7 (Colab's runtime, whose front end does not support ipywidgets 8) and on 8.x, and needs no
``google.colab.output.enable_custom_widget_manager()``. ``tests/test_colab_env.py`` runs the
widget tests and the lectures' widget cells against Colab's versions.

Model outputs are images (B, C, H, W) or (B, H, W) in [0, 1], tiled with
``gmcourse.plot.make_grid``, 2D points (B, 2), drawn as a scatter, or networkx graphs (one, or a
list drawn side by side; ``GraphSampler`` also shows their statistics). ``FamilyPicker`` shows the
samples of a model picked from a list, so a lecture can compare model families side by side.

Shapes: B batch, Z latent dim, T steps, C H W image.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import ipywidgets as w
import numpy as np
import torch
from IPython.display import display

from gmcourse.widgets_core import (GRAPH_STATISTICS, MODES, as_graphs, graph_summary, grid_points, interpolate, lerp,
                                   render, render_density, render_graphs, render_points, side_by_side, slerp, to_png,
                                   top_rows_mask)

__all__ = ["LatentExplorer", "Interpolation", "LatentWalk", "Sampler", "StepScrubber", "DensityScrubber",
           "LangevinScrubber", "ReverseProcessScrubber", "GuidanceExplorer", "Completion", "FamilyPicker",
           "GraphSampler", "lerp", "slerp", "interpolate", "top_rows_mask", "graph_summary"]

MAX_SEED = 2**31 - 1


def _check_callable(name: str, fn) -> None:
    if not callable(fn):
        raise ValueError(f"{name} must be a callable, got {type(fn).__name__}")


def _check_scale(scale) -> None:
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")


def _check_limits(name: str, limits) -> tuple[float, float]:
    if len(limits) != 2 or not float(limits[0]) < float(limits[1]):
        raise ValueError(f"{name} must be (low, high) with low < high, got {tuple(limits)!r}")
    return float(limits[0]), float(limits[1])


def _check_distinct_ints(name: str, values, minimum: int | None = None) -> tuple[int, ...]:
    """``values`` as a tuple of distinct ints (not bools), each >= ``minimum`` when one is given."""
    values = tuple(values)
    if not values or len(set(values)) != len(values) or not all(
            isinstance(v, int) and not isinstance(v, bool) and (minimum is None or v >= minimum) for v in values):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be distinct ints{bound}, got {values!r}")
    return values


def _check_models(models, model) -> tuple[tuple[str, ...], str]:
    """``models`` (a str, or distinct non-empty strs) as a tuple, and ``model`` (default the first) in it."""
    models = (models,) if isinstance(models, str) else tuple(models)
    if not models or len(set(models)) != len(models) or not all(isinstance(m, str) and m for m in models):
        raise ValueError(f"models must be distinct non-empty strs (the model names), got {models!r}")
    model = models[0] if model is None else model
    if model not in models:
        raise ValueError(f"model must be one of models {models}, got {model!r}")
    return models, model


def _check_device(device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch.device or its name (e.g. 'cpu', 'cuda'), got {device!r}") from None


def _picture_batch(picture: np.ndarray) -> torch.Tensor:
    """An (H, W, 3) picture drawn by matplotlib as a batch of one image (1, 3, H, W) to show."""
    return torch.from_numpy(picture).permute(2, 0, 1)[None]


def _seed_box(seed: int) -> w.BoundedIntText:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an int in [0, {MAX_SEED}], got {seed!r}")
    return w.BoundedIntText(value=seed, min=0, max=MAX_SEED, description="seed")


class _PictureWidget:
    """Shared plumbing: one ``ipywidgets.Image`` below the controls, refreshed by ``_show``."""

    def __init__(self, controls: list, scale: int, nrow: int):
        _check_scale(scale)
        if not isinstance(nrow, int) or nrow < 1:
            raise ValueError(f"nrow must be an int >= 1, got {nrow!r}")
        self.scale, self.nrow = scale, nrow
        self.image = None
        # natural size (a VBox would stretch it to the full width), shrunk only on narrow screens
        self.view = w.Image(format="png", layout=w.Layout(align_self="flex-start", max_width="100%"))
        self.widget = w.VBox([*controls, self.view])

    def _on_change(self, change) -> None:
        self.update()

    def _show(self, x, nrow: int | None = None):
        """Show a model output (images, 2D points or graphs) as :func:`render` draws it."""
        return self._show_picture(render(x, nrow=nrow or self.nrow))

    def _show_picture(self, picture: np.ndarray):
        """Show an (H, W, C) picture in [0, 1] as it is: the one place ``.image`` and ``.view`` change."""
        self.image = picture
        self.view.value = to_png(self.image, self.scale)
        return self.image

    def _ipython_display_(self, **kwargs):
        # the public display protocol: IPython calls this for display(widget) and for a cell's
        # last expression; display(box) then works on ipywidgets 8 (_repr_mimebundle_) and on
        # ipywidgets 7 (_ipython_display_, what Colab's runtime has)
        display(self.widget)


class _SeededWidget(_PictureWidget):
    """A picture widget whose samples come from a seed: a seed box (``.seed_box``) and a "new seed"
    button (``.new_seed_button``, which calls :meth:`next_seed`)."""

    def _seed_controls(self, seed: int) -> w.HBox:
        """Make the seed box and the button (the widget observes the box itself); their row."""
        self.seed_box = _seed_box(seed)
        self.new_seed_button = w.Button(description="new seed")
        self.new_seed_button.on_click(self.next_seed)
        return w.HBox([self.seed_box, self.new_seed_button])

    def next_seed(self, _button=None) -> None:
        """Move to the next seed (the button does this); the picture follows."""
        self.seed_box.value = (self.seed_box.value + 1) % (MAX_SEED + 1)


class LatentExplorer(_PictureWidget):
    """Sliders on chosen latent dimensions; the picture is ``decode`` of the current latent.

    decode: (B, Z) -> images (B, C, H, W) in [0, 1] or points (B, 2); called with B = 1.
    z0: (Z,) starting latent; dimensions without a slider keep z0's values.
    dims: the latent dimensions that get a slider; limits: the slider range.
    """

    def __init__(self, decode: Callable, z0, dims: Sequence[int] = (0, 1), limits=(-3.0, 3.0),
                 step: float = 0.05, scale: int = 4, continuous_update: bool = True):
        _check_callable("decode", decode)
        z0 = torch.as_tensor(z0)
        if z0.ndim != 1 or not z0.is_floating_point():
            raise ValueError(f"z0 must be a float (Z,) vector, got shape {tuple(z0.shape)} and {z0.dtype}")
        dims = tuple(dims)
        if not dims or len(set(dims)) != len(dims) or not all(isinstance(d, int) and 0 <= d < len(z0) for d in dims):
            raise ValueError(f"dims must be distinct ints in [0, {len(z0)}), got {dims!r}")
        low, high = _check_limits("limits", limits)
        self.decode, self.z0, self.dims = decode, z0.detach().clone(), dims
        self.sliders = [
            w.FloatSlider(value=min(max(float(z0[d]), low), high), min=low, max=high, step=step,
                          description=f"z[{d}]", continuous_update=continuous_update)
            for d in dims
        ]
        super().__init__(self.sliders, scale=scale, nrow=1)
        for slider in self.sliders:
            slider.observe(self._on_change, names="value")
        self.update()

    @property
    def z(self) -> torch.Tensor:
        """The current latent (Z,): z0 with the slider values written into ``dims``."""
        z = self.z0.clone()
        z[list(self.dims)] = torch.tensor([s.value for s in self.sliders], dtype=z.dtype, device=z.device)
        return z

    def update(self):
        with torch.no_grad():
            x = self.decode(self.z[None])  # (1, C, H, W) or (1, 2)
        return self._show(x)


class Interpolation(_PictureWidget):
    """Decoded points on the path from z0 to z1, linear or spherical (see ``slerp``), in one row.

    decode: (T, Z) -> images (T, C, H, W) in [0, 1] or points (T, 2). z0, z1: (Z,).
    Use :meth:`from_inputs` to start from two data points and an encoder.
    """

    def __init__(self, decode: Callable, z0, z1, mode: str = "linear", n_steps: int = 8,
                 max_steps: int = 16, scale: int = 3):
        _check_callable("decode", decode)
        z0, z1 = torch.as_tensor(z0), torch.as_tensor(z1)
        if z0.ndim != 1 or z0.shape != z1.shape:
            raise ValueError(f"z0 and z1 must both be (Z,), got {tuple(z0.shape)} and {tuple(z1.shape)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(n_steps, int) or not 2 <= n_steps <= max_steps:
            raise ValueError(f"n_steps must be an int in [2, {max_steps}], got {n_steps!r}")
        self.decode, self.z0, self.z1 = decode, z0.detach().clone(), z1.detach().clone()
        self.mode_toggle = w.ToggleButtons(options=list(MODES), value=mode, description="path")
        self.steps_slider = w.IntSlider(value=n_steps, min=2, max=max_steps, description="steps")
        super().__init__([self.mode_toggle, self.steps_slider], scale=scale, nrow=max_steps)
        self.mode_toggle.observe(self._on_change, names="value")
        self.steps_slider.observe(self._on_change, names="value")
        self.update()

    @classmethod
    def from_inputs(cls, encode: Callable, decode: Callable, x0, x1, **kwargs) -> "Interpolation":
        """Interpolate between two inputs: ``encode`` maps a batch (2, ...) to latents (2, Z)
        (for a VAE, the posterior mean); x0 and x1 are single inputs without a batch axis."""
        _check_callable("encode", encode)
        x0, x1 = torch.as_tensor(x0), torch.as_tensor(x1)
        if x0.shape != x1.shape:
            raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        with torch.no_grad():
            z = encode(torch.stack([x0, x1]))  # (2, Z)
        if z.ndim != 2 or z.shape[0] != 2:
            raise ValueError(f"encode must map (2, ...) to (2, Z), got output shape {tuple(z.shape)}")
        return cls(decode, z[0], z[1], **kwargs)

    @property
    def path(self) -> torch.Tensor:
        """The current path (T, Z)."""
        return interpolate(self.z0, self.z1, self.steps_slider.value, self.mode_toggle.value)

    def update(self):
        with torch.no_grad():
            x = self.decode(self.path)  # (T, C, H, W) or (T, 2)
        return self._show(x, nrow=self.steps_slider.value)


class LatentWalk(Interpolation):
    """A walk through a latent space between the codes of two seeds, each chosen in its own box:
    how to look inside a model that has no encoder (a GAN), where Interpolation.from_inputs cannot
    start from two data points.

    decode: (T, Z) -> images (T, C, H, W) in [0, 1] or points (T, 2). draw_code(generator) -> (Z,):
    one code from the model's prior, drawing all its randomness from ``generator`` (a
    ``torch.Generator`` on ``device``), so the same seed always gives the same end point.
    """

    def __init__(self, decode: Callable, draw_code: Callable, seeds: Sequence[int] = (0, 1),
                 device="cpu", **kwargs):
        _check_callable("draw_code", draw_code)
        if len(seeds) != 2:
            raise ValueError(f"seeds must be two ints (one per end of the walk), got {tuple(seeds)!r}")
        self.draw_code, self.device = draw_code, _check_device(device)
        self.seed_boxes = [_seed_box(seed) for seed in seeds]
        super().__init__(decode, self._code(seeds[0]), self._code(seeds[1]), **kwargs)
        self.widget.children = (w.HBox(self.seed_boxes), *self.widget.children)
        for box in self.seed_boxes:
            box.observe(self._on_seed, names="value")

    def _code(self, seed: int) -> torch.Tensor:
        with torch.no_grad():
            z = torch.as_tensor(self.draw_code(torch.Generator(device=self.device).manual_seed(seed)))
        if z.ndim != 1:
            raise ValueError(f"draw_code must return one code of shape (Z,), got shape {tuple(z.shape)}")
        return z

    def _on_seed(self, change) -> None:
        self.z0, self.z1 = (self._code(box.value) for box in self.seed_boxes)
        self.update()


class Sampler(_SeededWidget):
    """Fresh samples for a temperature and a seed; the same seed always gives the same picture.

    sample_fn(n, temperature, generator) -> images (n, C, H, W) in [0, 1] or points (n, 2);
    it must draw all its randomness from ``generator`` (a ``torch.Generator`` on ``device``).
    """

    def __init__(self, sample_fn: Callable, n: int = 16, temperature: float = 1.0,
                 temperature_limits=(0.0, 2.0), seed: int = 0, nrow: int = 8, scale: int = 2,
                 device="cpu"):
        _check_callable("sample_fn", sample_fn)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        low, high = _check_limits("temperature_limits", temperature_limits)
        if not low <= temperature <= high:
            raise ValueError(f"temperature must lie in [{low}, {high}], got {temperature!r}")
        self.sample_fn, self.n, self.device = sample_fn, n, _check_device(device)
        self.temperature_slider = w.FloatSlider(value=temperature, min=low, max=high, step=0.05,
                                                description="temperature", continuous_update=False)
        super().__init__([self.temperature_slider, self._seed_controls(seed)], scale=scale, nrow=nrow)
        self.temperature_slider.observe(self._on_change, names="value")
        self.seed_box.observe(self._on_change, names="value")
        self.update()

    def update(self):
        generator = torch.Generator(device=self.device).manual_seed(self.seed_box.value)
        with torch.no_grad():
            x = self.sample_fn(self.n, self.temperature_slider.value, generator)  # (n, C, H, W) or (n, 2)
        if len(x) != self.n:
            raise ValueError(f"sample_fn must return {self.n} samples, got {len(x)}")
        return self._show(x)


class StepScrubber(_PictureWidget):
    """Scrub (or play) through the steps of a trajectory: diffusion's x_T ... x_0, a flow's
    layers, or an autoregressive model filling in pixels.

    Give either ``frames`` (T, B, ...) or a sequence of T batches, or ``frame_fn(step) -> batch``
    with ``n_steps``; a batch is images (B, C, H, W) / (B, H, W) in [0, 1] or points (B, 2).
    step: the step shown first (Play, pressed on the last step, starts again from step 0).
    """

    def __init__(self, frames=None, frame_fn: Callable | None = None, n_steps: int | None = None,
                 nrow: int = 8, scale: int = 3, interval_ms: int = 200, step: int = 0):
        if (frames is None) == (frame_fn is None):
            raise ValueError("give exactly one of frames or frame_fn, got "
                             f"frames={type(frames).__name__}, frame_fn={type(frame_fn).__name__}")
        if frames is not None:
            if len(frames) < 1:
                raise ValueError(f"frames must hold at least one step, got {len(frames)}")
            if n_steps is not None and n_steps != len(frames):
                raise ValueError(f"n_steps must equal len(frames) = {len(frames)}, got {n_steps}")
            self.frames, n_steps = frames, len(frames)
            self.frame_fn = self.frames.__getitem__
        else:
            _check_callable("frame_fn", frame_fn)
            if not isinstance(n_steps, int) or n_steps < 1:
                raise ValueError(f"frame_fn needs n_steps, an int >= 1, got {n_steps!r}")
            self.frames, self.frame_fn = None, frame_fn
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < n_steps:
            raise ValueError(f"step must be an int in [0, {n_steps - 1}], got {step!r}")
        self.n_steps = n_steps
        # both start on step: jslink copies the Play's value to the slider when the browser draws them
        self.step_slider = w.IntSlider(value=step, min=0, max=n_steps - 1, description="step")
        self.play = w.Play(value=step, min=0, max=n_steps - 1, interval=interval_ms)
        self._link = w.jslink((self.play, "value"), (self.step_slider, "value"))  # runs in the browser
        super().__init__([w.HBox([self.play, self.step_slider])], scale=scale, nrow=nrow)
        self.step_slider.observe(self._on_change, names="value")
        self.update()

    def update(self):
        with torch.no_grad():
            x = self.frame_fn(self.step_slider.value)  # (B, C, H, W) or (B, 2)
        return self._show(x)


class DensityScrubber(StepScrubber):
    """Scrub (or play) through the steps of a 2D transformation, each shown as a density with points
    on top: a flow's layers from data to noise, an ODE's time steps.

    log_prob_fn(step, grid (G, 2)) -> (G,) the log-density at that step on a grid over
    [-lim, lim]^2; points_fn(step) -> (B, 2) the points at that step; names: a title per step.
    """

    def __init__(self, log_prob_fn: Callable, points_fn: Callable, n_steps: int, names: Sequence[str] | None = None,
                 lim: float = 4.0, n_grid: int = 100, scale: int = 1, interval_ms: int = 500):
        _check_callable("log_prob_fn", log_prob_fn)
        _check_callable("points_fn", points_fn)
        if names is not None and len(names) != n_steps:
            raise ValueError(f"names must hold one title per step ({n_steps}), got {len(names)}")
        self.grid = grid_points(lim, n_grid)  # (n_grid^2, 2)

        def frame(step):
            log_p = log_prob_fn(step, self.grid)
            title = names[step] if names is not None else f"step {step}"
            return _picture_batch(render_density(log_p, points_fn(step), lim=lim, title=title))  # (1, 3, H, W)

        super().__init__(frame_fn=frame, n_steps=n_steps, nrow=1, scale=scale, interval_ms=interval_ms)


class LangevinScrubber(StepScrubber):
    """Scrub (or play) through a Langevin chain, with its step size, noise scale and seed as controls:
    2D points over an energy's density, or images (digits) turning from noise into samples.

    chain_fn(n_steps, step_size, noise_scale, generator) -> frames (n_steps + 1, B, ...): the chain's
    states, frame 0 the start, each frame 2D points (B, 2) or images (B, C, H, W) / (B, H, W) in
    [0, 1] (clamp them). It must draw all its randomness (the start too) from ``generator`` (a
    ``torch.Generator`` on ``device``), so the same seed and controls give the same chain. It is
    called with gradients enabled, as Langevin needs the energy's gradient; the usual update is
    ``x <- x - step_size * grad E(x) + noise_scale * sqrt(2 step_size) * N(0, I)`` (lecture 05's eq. (7):
    noise_scale 1 samples exp(-E); 0 is gradient descent on E), but the widget only passes the numbers on.

    log_density_fn(grid (G, 2)) -> (G,): for 2D points, the unnormalised log density (e.g. -E) on a
    grid over [-lim, lim]^2, drawn once as the background under the points; without it, points are
    a plain scatter on [-lim, lim]^2 and images a grid of ``nrow`` columns.

    Changing the step size, the noise scale or the seed reruns the chain once and keeps its frames
    (``.frames``, on the CPU); moving the step only picks a frame. The widget opens on the chain's
    last step (``step`` chooses another); Play runs from step 0. The step size has a log-scale slider
    over ``step_size_limits`` (both > 0). scale: how many times the picture is enlarged; by default 1
    for points (a 240-pixel plot) and 3 for images.
    """

    def __init__(self, chain_fn: Callable, n_steps: int, step_size: float = 0.1, noise_scale: float = 1.0,
                 step_size_limits=(1e-3, 1.0), noise_limits=(0.0, 2.0), seed: int = 0,
                 log_density_fn: Callable | None = None, lim: float = 4.0, n_grid: int = 100, nrow: int = 8,
                 scale: int | None = None, interval_ms: int = 200, step: int | None = None, device="cpu"):
        _check_callable("chain_fn", chain_fn)
        if log_density_fn is not None:
            _check_callable("log_density_fn", log_density_fn)
        if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
            raise ValueError(f"n_steps must be an int >= 1 (the chain's steps; it has n_steps + 1 frames), "
                             f"got {n_steps!r}")
        low, high = _check_limits("step_size_limits", step_size_limits)
        if low <= 0:
            raise ValueError(f"step_size_limits must be positive (the slider is log-scale), "
                             f"got {tuple(step_size_limits)!r}")
        if not low <= step_size <= high:
            raise ValueError(f"step_size must lie in step_size_limits [{low:g}, {high:g}], got {step_size!r}")
        noise_low, noise_high = _check_limits("noise_limits", noise_limits)
        if not noise_low <= noise_scale <= noise_high:
            raise ValueError(f"noise_scale must lie in noise_limits [{noise_low:g}, {noise_high:g}], "
                             f"got {noise_scale!r}")
        if scale is not None:
            _check_scale(scale)
        self.chain_fn, self.lim, self.device = chain_fn, float(lim), _check_device(device)
        self.chain_length, self._chain_key, self._scale = n_steps, None, scale
        self.log_p = None  # the background, (n_grid^2,), drawn once
        if log_density_fn is not None:
            grid = grid_points(self.lim, n_grid)  # (G, 2)
            with torch.no_grad():
                log_p = torch.as_tensor(log_density_fn(grid)).detach().cpu().double()
            if log_p.shape != (len(grid),):
                raise ValueError(f"log_density_fn must map the grid ({len(grid)}, 2) to ({len(grid)},), "
                                 f"got shape {tuple(log_p.shape)}")
            self.log_p = log_p  # render_density shifts it by its maximum before exp()
        log_low, log_high = math.log10(low), math.log10(high)
        self.step_size_slider = w.FloatLogSlider(value=step_size, base=10, min=log_low, max=log_high,
                                                 step=(log_high - log_low) / 100, description="step size",
                                                 readout_format=".3g", continuous_update=False)
        self.noise_slider = w.FloatSlider(value=noise_scale, min=noise_low, max=noise_high,
                                          step=(noise_high - noise_low) / 100, description="noise",
                                          continuous_update=False)
        self.seed_box = _seed_box(seed)
        super().__init__(frame_fn=self._frame, n_steps=n_steps + 1, nrow=nrow, scale=scale or 1,
                         interval_ms=interval_ms, step=n_steps if step is None else step)
        self.widget.children = (self.step_size_slider, self.noise_slider, self.seed_box, *self.widget.children)
        for control in (self.step_size_slider, self.noise_slider, self.seed_box):
            control.observe(self._on_change, names="value")

    def _run_chain(self) -> torch.Tensor:
        """Run chain_fn for the current controls; its frames (n_steps + 1, B, ...) on the CPU."""
        generator = torch.Generator(device=self.device).manual_seed(self.seed_box.value)
        with torch.enable_grad():  # Langevin needs grad E, even when called under no_grad
            frames = self.chain_fn(self.chain_length, self.step_size_slider.value, self.noise_slider.value, generator)
        frames = torch.as_tensor(frames).detach().cpu()
        expected = self.chain_length + 1
        points = frames.ndim == 3 and frames.shape[-1] == 2
        if not (points or frames.ndim in (4, 5)) or len(frames) != expected:
            raise ValueError(f"chain_fn must return n_steps + 1 = {expected} frames, frame 0 the start, of points "
                             f"({expected}, B, 2) or images ({expected}, B, C, H, W); got shape {tuple(frames.shape)}")
        if self.log_p is not None and not points:
            raise ValueError(f"with log_density_fn, chain_fn must return 2D points (T+1, B, 2), "
                             f"got shape {tuple(frames.shape)}")
        if self._scale is None:
            self.scale = 1 if points else 3
        self._points = points
        return frames

    def _frame(self, step: int) -> torch.Tensor:
        x = self.frames[step]  # (B, 2) or (B, C, H, W)
        if not self._points:
            return x
        if self.log_p is None:
            return _picture_batch(render(x, lim=self.lim))  # (1, 3, H, W)
        return _picture_batch(render_density(self.log_p, x, lim=self.lim, title=f"step {step} of {self.chain_length}"))

    def update(self):
        key = (self.step_size_slider.value, self.noise_slider.value, self.seed_box.value)
        if key != self._chain_key:  # a new chain only when its controls changed, not the step
            self.frames, self._chain_key = self._run_chain(), key
        return super().update()  # draws frame_fn(step), our _frame


class ReverseProcessScrubber(StepScrubber):
    """Scrub (or play) through a diffusion model's reverse process, x_T (pure noise) to x_0, with the
    model's prediction of x_0 at each step beside it; the seed and the number of sampler steps are
    controls.

    chain_fn(n_steps, generator) -> (x_t, x0_hat): two tensors of frames, each (n_steps + 1, B, ...).
    x_t[0] is x_T, x_t[n_steps] the sample x_0, x_t[k] the state after k reverse steps; x0_hat[k] is the
    model's prediction of x_0 from x_t[k] (x0_hat[n_steps] is usually x_0 itself). chain_fn must draw
    all its randomness (x_T too) from ``generator`` (a ``torch.Generator`` on ``device``), so the same
    seed and steps give the same chain; it is called under ``torch.no_grad()`` (classifier guidance
    would turn gradients on inside). Frames are images (B, C, H, W) / (B, H, W) on the [0, 1] display
    scale (for data in [-1, 1], return (x + 1) / 2), clamped to [0, 1] for display only (x_t's noise
    leaves it), or 2D points (B, 2), drawn on [-lim, lim]^2.

    timesteps(n_steps) -> (n_steps + 1,) numbers: the diffusion time of each frame, x_T's first, e.g.
    ``lambda n: torch.linspace(1000, 0, n + 1).round()`` for a model trained with T = 1000; the caption
    then reads "step 3 of 10 · t = 700 of 1000" (t of frame 0's time), without it "step 3 of 10".

    The picture: x_t on the left and x̂_0 on the right, two grids of ``nrow`` columns ``gap`` white
    pixels apart, or two scatter panels titled x_t and predicted x̂_0; ``.caption`` above it names the
    step. Controls, in this order: the step (a slider, with Play), the seed, the sampler steps (a
    dropdown of ``step_options``). Changing the seed or the sampler steps reruns chain_fn once and
    keeps its frames (``.x_t``, ``.x0_hat``, on the CPU, and ``.timesteps``); moving the step only
    picks a frame. The widget opens on step 0, x_T (``step`` chooses another; not the last step in a
    lecture, whose browser test moves the first slider to the right); when the sampler steps
    go from n to m, the step keeps its place along the chain (k becomes round(k m / n)). scale: how
    many times the picture is enlarged; by default 1 for points (240-pixel panels), 3 for images.
    """

    def __init__(self, chain_fn: Callable, n_steps: int = 20, step_options: Sequence[int] = (10, 20, 50, 100),
                 timesteps: Callable | None = None, seed: int = 0, lim: float = 4.0, nrow: int = 4,
                 scale: int | None = None, gap: int = 6, interval_ms: int = 200, step: int = 0, device="cpu"):
        _check_callable("chain_fn", chain_fn)
        if timesteps is not None:
            _check_callable("timesteps", timesteps)
        options = _check_distinct_ints("step_options", step_options, minimum=1)
        if n_steps not in options or isinstance(n_steps, bool):
            raise ValueError(f"n_steps must be one of step_options {options}, got {n_steps!r}")
        if scale is not None:
            _check_scale(scale)
        if not isinstance(gap, int) or isinstance(gap, bool) or gap < 0:
            raise ValueError(f"gap must be an int >= 0, got {gap!r}")
        self.chain_fn, self.timesteps_fn, self.lim, self.device = chain_fn, timesteps, float(lim), _check_device(device)
        self.gap, self._scale, self._chain_key, self._quiet = gap, scale, None, False
        self.seed_box = _seed_box(seed)
        self.steps_dropdown = w.Dropdown(options=list(options), value=n_steps, description="sampler steps",
                                         style={"description_width": "initial"})
        self.caption = w.Label()
        super().__init__(frame_fn=self.picture_at, n_steps=n_steps + 1, nrow=nrow, scale=scale or 1,
                         interval_ms=interval_ms, step=step)
        scrubber, view = self.widget.children
        self.widget.children = (scrubber, w.HBox([self.seed_box, self.steps_dropdown]), self.caption, view)
        self.seed_box.observe(self._on_change, names="value")
        self.steps_dropdown.observe(self._on_steps, names="value")

    def _on_change(self, change) -> None:
        if not self._quiet:  # not while _on_steps moves the step slider to its new range
            self.update()

    def _on_steps(self, change) -> None:
        old, new = change["old"], change["new"]
        step = round(self.step_slider.value * new / old)
        self._quiet = True
        try:
            for control in (self.step_slider, self.play):  # the value always inside [min, max]
                if new > old:
                    control.max, control.value = new, step
                else:
                    control.value, control.max = step, new
        finally:
            self._quiet = False
        self.n_steps = new + 1
        self.update()

    def _run_chain(self) -> None:
        """Run chain_fn for the current seed and steps; keep its frames on the CPU, and the times."""
        n = self.steps_dropdown.value
        generator = torch.Generator(device=self.device).manual_seed(self.seed_box.value)
        with torch.no_grad():
            out = self.chain_fn(n, generator)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            got = f"{type(out).__name__} of length {len(out)}" if isinstance(out, (tuple, list)) else type(out).__name__
            raise ValueError(f"chain_fn must return a pair (x_t frames, x0_hat frames), got a {got}")
        x_t, x0_hat = (torch.as_tensor(frames).detach().cpu() for frames in out)
        expected = n + 1
        points = x_t.ndim == 3 and x_t.shape[-1] == 2
        if not (points or x_t.ndim in (4, 5)) or len(x_t) != expected or x0_hat.shape != x_t.shape:
            raise ValueError(f"chain_fn must return x_t and x0_hat frames of one shape, n_steps + 1 = {expected} "
                             f"frames each (frame 0 at x_T), of points ({expected}, B, 2) or images ({expected}, B, C, "
                             f"H, W); got shapes {tuple(x_t.shape)} and {tuple(x0_hat.shape)}")
        times = None
        if self.timesteps_fn is not None:
            times = torch.as_tensor(self.timesteps_fn(n)).detach().cpu().double()
            if times.shape != (expected,):
                raise ValueError(f"timesteps must map n_steps = {n} to ({expected},) times, one per frame, x_T's "
                                 f"first; got shape {tuple(times.shape)}")
        self.x_t, self.x0_hat, self.timesteps, self._points = x_t, x0_hat, times, points
        if self._scale is None:
            self.scale = 1 if points else 3

    def picture_at(self, step: int) -> np.ndarray:
        """The picture of a step of the current chain: x_t beside x̂_0, (H, W, C) in [0, 1]."""
        x, x0 = self.x_t[step], self.x0_hat[step]  # (B, 2) or (B, C, H, W)
        if self._points:
            left = render_points(x, lim=self.lim, title=r"$x_t$")
            right = render_points(x0, lim=self.lim, title=r"predicted $\hat{x}_0$")
        else:
            left, right = render(x.clamp(0, 1), nrow=self.nrow), render(x0.clamp(0, 1), nrow=self.nrow)
        return side_by_side([left, right], gap=self.gap)

    def update(self):
        key = (self.seed_box.value, self.steps_dropdown.value)
        if key != self._chain_key:  # a new chain only when the seed or the steps changed, not the step
            self._run_chain()
            self._chain_key = key
        step, n = self.step_slider.value, self.steps_dropdown.value
        time = "" if self.timesteps is None else f" · t = {self.timesteps[step]:g} of {self.timesteps[0]:g}"
        self.caption.value = f"step {step} of {n}{time} · left: xₜ, right: predicted x̂₀"
        return self._show_picture(self.picture_at(step))


class GuidanceExplorer(_SeededWidget):
    """Class-conditional samples for a guidance scale and a label (a digit): how guidance trades
    variety for fidelity to the label. The same seed always gives the same picture.

    sample_fn(label, guidance_scale, generator) -> images (B, C, H, W) / (B, H, W) in [0, 1] (or 2D
    points (B, 2)): B samples of class ``label`` (an int of ``labels``) at that guidance scale (a float;
    its meaning, e.g. classifier-free guidance's eps_uncond + w (eps_cond - eps_uncond), is the
    caller's). It must draw all its randomness from ``generator`` (a ``torch.Generator`` on ``device``)
    and is called under ``torch.no_grad()``.

    labels: the classes the picker offers; names: what their buttons read (default ``str(label)``);
    label: the one picked first (default the first). score_fn(images, label) -> str: an optional line
    shown under the picture (``.score``), e.g. a classifier's "13/16 classified as 3".

    Controls, in this order: the guidance scale (a slider over ``guidance_limits``, first), the label
    (toggle buttons), the seed (a box and a "new seed" button). Every change samples again.
    """

    def __init__(self, sample_fn: Callable, labels: Sequence[int] = range(10), guidance_scale: float = 1.0,
                 guidance_limits=(0.0, 8.0), label: int | None = None, names: Sequence[str] | None = None,
                 score_fn: Callable | None = None, seed: int = 0, nrow: int = 8, scale: int = 2, device="cpu"):
        _check_callable("sample_fn", sample_fn)
        if score_fn is not None:
            _check_callable("score_fn", score_fn)
        labels = _check_distinct_ints("labels", labels)
        label = labels[0] if label is None else label
        if label not in labels or isinstance(label, bool):
            raise ValueError(f"label must be one of labels {labels}, got {label!r}")
        names = [str(c) for c in labels] if names is None else list(names)
        if len(names) != len(labels) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"names must be one str per label ({len(labels)}), got {names!r}")
        low, high = _check_limits("guidance_limits", guidance_limits)
        if not low <= guidance_scale <= high:
            raise ValueError(f"guidance_scale must lie in guidance_limits [{low:g}, {high:g}], got {guidance_scale!r}")
        self.sample_fn, self.score_fn, self.device = sample_fn, score_fn, _check_device(device)
        self.samples = None  # the last samples, on the CPU
        self.guidance_slider = w.FloatSlider(value=guidance_scale, min=low, max=high, step=(high - low) / 80,
                                             description="guidance", readout_format=".2f", continuous_update=False)
        width = f"{max(2, max(len(name) for name in names)) * 0.6 + 1.2:.1f}em"  # fits the longest name
        self.label_picker = w.ToggleButtons(options=list(zip(names, labels)), value=label, description="label",
                                            style={"button_width": width})
        super().__init__([self.guidance_slider, self.label_picker, self._seed_controls(seed)], scale=scale, nrow=nrow)
        self.score = w.Label()
        if score_fn is not None:
            self.widget.children = (*self.widget.children, self.score)
        for control in (self.guidance_slider, self.label_picker, self.seed_box):
            control.observe(self._on_change, names="value")
        self.update()

    def update(self):
        label, guidance_scale = self.label_picker.value, self.guidance_slider.value
        generator = torch.Generator(device=self.device).manual_seed(self.seed_box.value)
        with torch.no_grad():
            x = torch.as_tensor(self.sample_fn(label, guidance_scale, generator)).detach()  # (B, C, H, W)
            if self.score_fn is not None:
                score = self.score_fn(x, label)
                if not isinstance(score, str):
                    raise ValueError(f"score_fn must return a str to show, got {type(score).__name__}")
                self.score.value = score
        self.samples = x.cpu()
        return self._show(self.samples)


class Completion(_PictureWidget):
    """Image completion: keep the top rows of each image, let the model fill in the rest.

    complete_fn(x_observed, mask, generator) -> completions (B, C, H, W) in [0, 1], where
    x_observed = x * mask and mask (B, C, H, W) is 1 where a pixel is observed. Shows three rows:
    the observed part (hidden pixels grey), the completions, the originals.
    """

    def __init__(self, complete_fn: Callable, x, n_rows: int | None = None, seed: int = 0,
                 scale: int = 3, device="cpu"):
        _check_callable("complete_fn", complete_fn)
        x = torch.as_tensor(x)
        if x.ndim != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
            raise ValueError(f"x must be float images (B, C, H, W) in [0, 1] with C in (1, 3), "
                             f"got shape {tuple(x.shape)} and {x.dtype}")
        h = x.shape[2]
        n_rows = h // 2 if n_rows is None else n_rows
        top_rows_mask(x, n_rows)  # checks n_rows before the slider would silently clip it
        self.complete_fn, self.x, self.device = complete_fn, x, _check_device(device)
        self.rows_slider = w.IntSlider(value=n_rows, min=0, max=h, description="rows kept")
        self.seed_box = _seed_box(seed)
        super().__init__([self.rows_slider, self.seed_box], scale=scale, nrow=len(x))
        self.rows_slider.observe(self._on_change, names="value")
        self.seed_box.observe(self._on_change, names="value")
        self.update()

    @property
    def mask(self) -> torch.Tensor:
        return top_rows_mask(self.x, self.rows_slider.value)  # (B, C, H, W)

    def update(self):
        mask = self.mask
        generator = torch.Generator(device=self.device).manual_seed(self.seed_box.value)
        with torch.no_grad():
            x_hat = torch.as_tensor(self.complete_fn(self.x * mask, mask, generator))  # (B, C, H, W)
        if x_hat.shape != self.x.shape:
            raise ValueError(f"complete_fn must return {tuple(self.x.shape)}, got {tuple(x_hat.shape)}")
        x = self.x.to(x_hat.device, x_hat.dtype)
        shown = x * mask.to(x_hat.device) + 0.5 * (1 - mask.to(x_hat.device))
        return self._show(torch.cat([shown, x_hat, x]))  # (3B, C, H, W)


def _summary_html(summaries: list[dict], names: list[str]) -> str:
    """An HTML table of graph_summary dicts: a row per graph (named by ``names``), a column per
    statistic, and a "mean" row below when there are several graphs."""
    def cell(value, tag="td") -> str:
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        return f'<{tag} style="padding: 0 0.6em; text-align: right">{text}</{tag}>'

    rows = [(name, [summary[key] for key in GRAPH_STATISTICS]) for name, summary in zip(names, summaries)]
    if len(summaries) > 1:
        rows.append(("mean", [float(np.mean([summary[key] for summary in summaries])) for key in GRAPH_STATISTICS]))
    header = "".join(cell(key.replace("_", " "), "th") for key in GRAPH_STATISTICS)
    body = "".join(f"<tr><th style='text-align: left'>{name}</th>{''.join(cell(v) for v in values)}</tr>"
                   for name, values in rows)
    return f"<table><tr><th></th>{header}</tr>{body}</table>"


class FamilyPicker(_SeededWidget):
    """Pick a model (a family: a VAE, a GAN, a flow, a diffusion model, ...) and a seed, see its
    samples: how the families compare on one data set. The same model and seed always give the
    same picture.

    sample_fn(model_name, seed) -> images (n, C, H, W) / (n, H, W) in [0, 1], 2D points (n, 2), or a
    networkx graph or a list of them (what :func:`gmcourse.widgets_core.render` draws), e.g. n
    digits of the named model; ``model_name`` is one of ``models`` (strs, or one str), ``seed`` an int
    that must decide all its randomness (e.g. through ``torch.Generator(device).manual_seed(seed)``).
    It is called under ``torch.no_grad()``; its output is kept on the CPU as ``.samples``.
    model: the one picked first (default the first). nrow: images to a row. device: the device the
    caller's models run on, kept as ``.device`` for sample_fn's use (the widget itself samples
    nothing).

    Controls, in this order: the model (a dropdown, ``.model_picker``), the seed (a box and a "new
    seed" button). Every change samples again.
    """

    def __init__(self, sample_fn: Callable, models: Sequence[str], model: str | None = None, seed: int = 0,
                 nrow: int = 8, scale: int = 2, device="cpu"):
        _check_callable("sample_fn", sample_fn)
        models, model = _check_models(models, model)
        self.sample_fn, self.device = sample_fn, _check_device(device)
        self.samples = None  # the last samples, on the CPU
        self.model_picker = w.Dropdown(options=list(models), value=model, description="model")
        super().__init__([self.model_picker, self._seed_controls(seed)], scale=scale, nrow=nrow)
        self.widget.children = (*self.widget.children, *self._panels())
        for control in (self.model_picker, self.seed_box):
            control.observe(self._on_change, names="value")
        self.update()

    def _panels(self) -> list:
        """Widgets shown below the picture (none here)."""
        return []

    def _sample(self):
        """sample_fn's output for the picked model and seed."""
        with torch.no_grad():
            return self.sample_fn(self.model_picker.value, self.seed_box.value)

    def update(self):
        out = self._sample()
        if as_graphs(out) is None:
            if not isinstance(out, (torch.Tensor, np.ndarray)):
                raise ValueError(f"sample_fn must return images (n, C, H, W) in [0, 1], points (n, 2) or networkx "
                                 f"graphs, got {type(out).__name__}")
            out = torch.as_tensor(out).detach().cpu()
        self.samples = out
        return self._show(out)


class GraphSampler(FamilyPicker):
    """Graphs sampled from a choice of models, with their statistics: how a graph model's samples
    look, and how their sizes, degrees, clustering and connectivity compare across models and seeds.
    The same model and seed always give the same picture.

    sample_fn(model_name, seed) -> a ``networkx.Graph`` (undirected, simple), or a non-empty list of
    them, drawn ``ncol`` to a row and numbered; ``model_name`` is one of ``models`` (strs, e.g.
    ``("GraphRNN", "Erdős–Rényi")``), ``seed`` an int that must decide all its randomness. It is
    called under ``torch.no_grad()``. model: the one picked first (default the first).

    The picture: each graph drawn by :func:`gmcourse.widgets_core.render_graph` (spring layout from
    ``layout_seed``, ``size_px`` square); below it ``.stats``, a table of
    :func:`gmcourse.widgets_core.graph_summary` per graph (nodes, edges, mean degree, average
    clustering, connected components, diameter of the largest component), with their mean for a
    list. ``.graphs`` and ``.summaries`` hold the last graphs and their statistics.

    Controls, in this order: the model (a dropdown, ``.model_picker``), the seed (a box and a "new
    seed" button). Every change samples again. It is a :class:`FamilyPicker` with graphs' pictures
    and the statistics panel.
    """

    def __init__(self, sample_fn: Callable, models: Sequence[str], model: str | None = None, seed: int = 0,
                 ncol: int = 4, size_px: int = 200, layout_seed: int = 0, scale: int = 1):
        if not isinstance(ncol, int) or isinstance(ncol, bool) or ncol < 1:
            raise ValueError(f"ncol must be an int >= 1, got {ncol!r}")
        if not isinstance(size_px, int) or isinstance(size_px, bool) or size_px < 32:
            raise ValueError(f"size_px must be an int >= 32, got {size_px!r}")
        if not isinstance(layout_seed, int) or isinstance(layout_seed, bool):
            raise ValueError(f"layout_seed must be an int, got {layout_seed!r}")
        self.size_px, self.layout_seed = size_px, layout_seed
        self.graphs, self.summaries = None, None  # the last sample and its statistics
        self.stats = w.HTML()
        super().__init__(sample_fn, models, model=model, seed=seed, nrow=ncol, scale=scale)

    def _panels(self) -> list:
        return [self.stats]

    def update(self):
        out = self._sample()
        graphs = as_graphs(out)
        if graphs is None:
            got = f"an empty {type(out).__name__}" if isinstance(out, (list, tuple)) else type(out).__name__
            raise ValueError(f"sample_fn must return a networkx graph or a non-empty list of them, got {got}")
        names = ["graph"] if len(graphs) == 1 else [f"graph {i + 1}" for i in range(len(graphs))]
        self.samples = self.graphs = graphs
        self.summaries = [graph_summary(g) for g in graphs]
        self.stats.value = _summary_html(self.summaries, names)
        picture = render_graphs(graphs, ncol=self.nrow, titles=None if len(graphs) == 1 else names,
                                size_px=self.size_px, layout_seed=self.layout_seed)
        return self._show_picture(picture)
