"""Toy 2D densities: samplers for every one, exact log-densities where they exist in closed form.

Shapes: B batch, K mixture components. Every sampler returns a float tensor of shape (B, 2) and
takes a ``generator`` (a ``torch.Generator``) so that data is reproducible without touching the
global RNG. Densities with a closed form (8 gaussians, checkerboard, rings) also have
``log_prob(x)`` and ``entropy()``, so a lecture can report a model's held-out NLL next to the
true density's entropy H(p) = -E_p[log p(x)], the lowest NLL any model can reach on average.
"""
from __future__ import annotations

import math

import torch

from gmcourse.gaussian import LOG_2PI


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return n


def _check_points(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (B, 2), got {got}")
    return x


def _randn(n, generator):
    return torch.randn(n, 2, generator=generator)


class ToyDensity:
    """Base class: a name, a sampler, and (for closed-form densities) ``log_prob``."""

    name = "toy"
    has_log_prob = False

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement sample")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no closed-form density")

    def entropy(self, n: int = 200_000, generator: torch.Generator | None = None) -> float:
        """H(p) = -E_p[log p(x)] in nats, by Monte Carlo over ``n`` samples (exact where overridden)."""
        if not self.has_log_prob:
            raise NotImplementedError(f"{self.name} has no closed-form density, so no exact entropy")
        if generator is None:
            generator = torch.Generator().manual_seed(12345)
        return float(-self.log_prob(self.sample(n, generator)).mean())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EightGaussians(ToyDensity):
    """Equal mixture of 8 isotropic Gaussians with means on a circle of radius ``radius``."""

    name = "8 gaussians"
    has_log_prob = True

    def __init__(self, radius: float = 2.0, std: float = 0.2):
        angle = torch.arange(8) * (2 * math.pi / 8)
        self.mu = radius * torch.stack([angle.cos(), angle.sin()], dim=1)  # (K, 2)
        self.std = std

    def sample(self, n, generator=None):
        k = torch.randint(0, 8, (_check_n(n),), generator=generator)
        return self.mu[k] + self.std * _randn(n, generator)

    def log_prob(self, x):
        x = _check_points(x)
        sq_dist = ((x[:, None, :] - self.mu[None]) ** 2).sum(-1)  # (B, K)
        log_normal = -0.5 * sq_dist / self.std**2 - 2 * math.log(self.std) - LOG_2PI
        return torch.logsumexp(log_normal, dim=1) - math.log(8)  # log sum_k (1/8) N(x; mu_k, std^2 I)


class Checkerboard(ToyDensity):
    """Uniform on the 8 dark squares of a 4x4 board covering [-4, 4]^2 (each square 2x2)."""

    name = "checkerboard"
    has_log_prob = True
    area = 32.0  # 8 squares of area 4

    def sample(self, n, generator=None):
        u = torch.rand(_check_n(n), 2, generator=generator)
        col = torch.randint(0, 4, (n,), generator=generator)
        row = 2 * torch.randint(0, 2, (n,), generator=generator) + col % 2  # dark squares: row + col even
        return torch.stack([col + u[:, 0], row + u[:, 1]], dim=1) * 2 - 4

    def _dark(self, x):
        cell = torch.floor((x + 4) / 2)
        inside = ((x >= -4) & (x < 4)).all(dim=1)
        return inside & ((cell[:, 0] + cell[:, 1]) % 2 == 0)

    def log_prob(self, x):
        x = _check_points(x)
        out = torch.full((len(x),), -math.inf, dtype=x.dtype)
        out[self._dark(x)] = -math.log(self.area)
        return out

    def entropy(self, n=0, generator=None):
        return math.log(self.area)  # uniform density: H = log(area)


class Rings(ToyDensity):
    """Concentric rings: angle uniform, radius |r_k + std * eps| with ring k chosen uniformly.

    In polar coordinates p(r, angle) = p(r) / (2 pi), and the Jacobian of (r, angle) -> x is r,
    so p(x) = p(r) / (2 pi r), with p(r) a folded Gaussian mixture (exact, no truncation).
    """

    name = "rings"
    has_log_prob = True

    def __init__(self, radii=(1.0, 2.0, 3.0), std: float = 0.1):
        self.radii = torch.tensor(radii, dtype=torch.float32)
        self.std = std

    def sample(self, n, generator=None):
        k = torch.randint(0, len(self.radii), (_check_n(n),), generator=generator)
        r = (self.radii[k] + self.std * torch.randn(n, generator=generator)).abs()
        angle = 2 * math.pi * torch.rand(n, generator=generator)
        return torch.stack([r * angle.cos(), r * angle.sin()], dim=1)

    def log_prob(self, x):
        x = _check_points(x)
        r = x.norm(dim=1, keepdim=True)  # (B, 1)
        log_norm = -0.5 * LOG_2PI - math.log(self.std)
        folded = torch.cat([(r - self.radii) ** 2, (r + self.radii) ** 2], dim=1)  # (B, 2K)
        log_pr = torch.logsumexp(-0.5 * folded / self.std**2, dim=1) + log_norm - math.log(len(self.radii))
        return log_pr - LOG_2PI - torch.log(r.squeeze(1))  # p(x) = p(r) / (2 pi r)


class TwoMoons(ToyDensity):
    """Two interleaving half circles with Gaussian noise (no closed-form density)."""

    name = "two moons"

    def __init__(self, noise: float = 0.08):
        self.noise = noise

    def sample(self, n, generator=None):
        t = math.pi * torch.rand(_check_n(n), generator=generator)
        upper = torch.rand(n, generator=generator) < 0.5
        x = torch.where(upper, t.cos(), 1 - t.cos())
        y = torch.where(upper, t.sin(), 0.5 - t.sin())
        pts = torch.stack([x - 0.5, y - 0.25], dim=1) * 2
        return pts + self.noise * _randn(n, generator)


class TwoSpirals(ToyDensity):
    """Two interleaved Archimedean spirals with Gaussian noise (no closed-form density)."""

    name = "two spirals"

    def __init__(self, noise: float = 0.1, turns: float = 1.5):
        self.noise, self.turns = noise, turns

    def sample(self, n, generator=None):
        t = torch.rand(_check_n(n), generator=generator).sqrt() * self.turns * 2 * math.pi
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        r = t / (self.turns * 2 * math.pi) * 3.5
        pts = sign[:, None] * torch.stack([r * t.cos(), r * t.sin()], dim=1)
        return pts + self.noise * _randn(n, generator)


class Pinwheel(ToyDensity):
    """Five curved arms: stretched Gaussians rotated by an angle that grows with radius."""

    name = "pinwheel"

    def __init__(self, n_arms: int = 5, radial_std: float = 0.3, tangential_std: float = 0.1, rate: float = 0.25):
        self.n_arms, self.radial_std, self.tangential_std, self.rate = n_arms, radial_std, tangential_std, rate

    def sample(self, n, generator=None):
        eps = _randn(_check_n(n), generator) * torch.tensor([self.radial_std, self.tangential_std])
        arm = torch.randint(0, self.n_arms, (n,), generator=generator)
        base = eps + torch.tensor([1.0, 0.0])
        angle = arm * (2 * math.pi / self.n_arms) + self.rate * base[:, 0].exp()
        cos, sin = angle.cos(), angle.sin()
        return 2 * torch.stack([cos * base[:, 0] - sin * base[:, 1], sin * base[:, 0] + cos * base[:, 1]], dim=1)


def all_densities() -> list[ToyDensity]:
    """One instance of every toy density, for dropdowns and loops in the lectures."""
    return [TwoMoons(), EightGaussians(), Checkerboard(), TwoSpirals(), Rings(), Pinwheel()]
