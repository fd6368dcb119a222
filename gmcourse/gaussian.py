"""Diagonal Gaussians: the reparameterised sample, the log-density, and the KL divergence.

Shapes: B batch; every other axis is a dimension of one example (Z latent dims, or C H W).
``mu`` and ``log_var`` (log sigma^2) have the same shape (B, ...); results are summed over
every axis but the first, so they are per example, (B,).

    z = mu + sigma * eps,  eps ~ N(0, I),  sigma = exp(log_var / 2)                    (1)

    log N(x; mu, diag sigma^2) = -1/2 sum_d [log 2 pi + log sigma_d^2 + (x_d - mu_d)^2 / sigma_d^2]   (2)

    KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2))
        = 1/2 sum_d [log sigma_p^2 - log sigma_q^2 + (sigma_q^2 + (mu_q - mu_p)^2) / sigma_p^2 - 1]  (3)

With the standard normal as p, eq. (3) is the VAE's 1/2 sum_d [mu^2 + sigma^2 - 1 - log sigma^2].
Taught in lecture 02 (VAE); kept here for the lectures that reuse it (flows' base density,
diffusion's Gaussian KL terms).
"""
from __future__ import annotations

import math

import torch

__all__ = ["reparameterize", "normal_log_prob", "normal_kl"]

LOG_2PI = math.log(2 * math.pi)


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b) -> None:
    if not isinstance(a, torch.Tensor) or a.ndim < 2:
        got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        raise ValueError(f"{name_a} must be a batched tensor (B, ...), got {got}")
    if b is not None and (not isinstance(b, torch.Tensor) or b.shape != a.shape):
        got = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f"{name_b} must have the shape of {name_a}, {tuple(a.shape)}, got {got}")


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample z ~ N(mu, diag(exp(log_var))) written as a differentiable function of mu and
    log_var, eq. (1). mu, log_var: (B, ...). Returns z with their shape."""
    _check_pair("mu", mu, "log_var", log_var)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * log_var) * eps  # eq. (1)


def normal_log_prob(x: torch.Tensor, mu: torch.Tensor | None = None,
                    log_var: torch.Tensor | None = None) -> torch.Tensor:
    """log N(x; mu, diag(exp(log_var))) per example, eq. (2); mu, log_var default to the standard
    normal. x: (B, ...); mu, log_var: x's shape. Returns (B,)."""
    _check_pair("x", x, "mu", mu)
    _check_pair("x", x, "log_var", log_var)
    mu = torch.zeros_like(x) if mu is None else mu
    log_var = torch.zeros_like(x) if log_var is None else log_var
    log_px = -0.5 * (LOG_2PI + log_var + (x - mu) ** 2 * torch.exp(-log_var))  # eq. (2)
    return log_px.flatten(1).sum(1)


def normal_kl(mu_q: torch.Tensor, log_var_q: torch.Tensor, mu_p: torch.Tensor | None = None,
              log_var_p: torch.Tensor | None = None) -> torch.Tensor:
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) per example in nats, eq. (3); p defaults to
    the standard normal. All arguments (B, ...) of one shape. Returns (B,), always >= 0."""
    _check_pair("mu_q", mu_q, "log_var_q", log_var_q)
    _check_pair("mu_q", mu_q, "mu_p", mu_p)
    _check_pair("mu_q", mu_q, "log_var_p", log_var_p)
    mu_p = torch.zeros_like(mu_q) if mu_p is None else mu_p
    log_var_p = torch.zeros_like(mu_q) if log_var_p is None else log_var_p
    kl = 0.5 * (log_var_p - log_var_q + (log_var_q.exp() + (mu_q - mu_p) ** 2) * torch.exp(-log_var_p) - 1)  # eq. (3)
    return kl.flatten(1).sum(1)
