"""The course's models, and the interface every family honours where it is honest.

The models themselves are written in their lectures and exported here by ``gmcourse export``
(see :mod:`gmcourse.export`): ``from gmcourse.models.autoregressive import ...``,
``from gmcourse.models.vae import ...``.

The interface (a model is an ``nn.Module``; B batch, x a batch of data)::

    loss(x)                     -> scalar tensor, what training minimises (mean over the batch)
    sample(n, generator=None)   -> (n, ...) a batch shaped like the data; the same generator
                                   seed gives the same samples
    log_prob(x)                 -> (B,) exact log-density / log-probability in nats, where exact
    elbo(x)                     -> (B,) a lower bound on log p(x) in nats, where only a bound exists
    likelihood                  -> "exact", "bound", "unnormalised" or "none" (class attribute)

A GAN has no likelihood (``likelihood = "none"``, neither method); an energy-based model has an
unnormalised one (``likelihood = "unnormalised"``, and ``energy(x)``). :func:`check_interface`
tests a model against all of it.
"""
from __future__ import annotations

import torch
from torch import nn

LIKELIHOODS = {"exact": "log_prob", "bound": "elbo", "unnormalised": "energy", "none": None}


def _generator(seed: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def check_interface(model: nn.Module, x: torch.Tensor, n: int = 3) -> dict:
    """Check ``model`` against the course's model interface on a batch ``x`` (B, ...).

    Raises AssertionError naming what is wrong; returns a small report (shapes, likelihood kind).
    """
    if not isinstance(model, nn.Module):
        raise AssertionError(f"a model must be an nn.Module, got {type(model).__name__}")
    kind = getattr(model, "likelihood", None)
    if kind not in LIKELIHOODS:
        raise AssertionError(f"{type(model).__name__}.likelihood must be one of {sorted(LIKELIHOODS)}, got {kind!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = x.to(device)
    report = {"likelihood": kind}

    model.train()
    loss = model.loss(x)
    if not (isinstance(loss, torch.Tensor) and loss.ndim == 0 and torch.isfinite(loss)):
        raise AssertionError(f"loss(x) must be a finite scalar tensor, got {loss!r}")
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads or not all(torch.isfinite(g).all() for g in grads):
        raise AssertionError("loss(x) must give finite gradients to the model's parameters")
    model.zero_grad(set_to_none=True)
    model.eval()

    method = LIKELIHOODS[kind]
    if method is not None:
        with torch.no_grad():
            values = getattr(model, method)(x)
        if values.shape != (len(x),):
            raise AssertionError(f"{method}(x) must have shape ({len(x)},), got {tuple(values.shape)}")
        if not torch.isfinite(values).all():
            raise AssertionError(f"{method}(x) must be finite, got {values}")
        report[method] = values
    if kind in ("bound", "none") and callable(getattr(model, "log_prob", None)):
        raise AssertionError(f"a model with likelihood {kind!r} must not claim an exact log_prob")

    with torch.no_grad():
        first = model.sample(n, generator=_generator(0, device))
        again = model.sample(n, generator=_generator(0, device))
        other = model.sample(n, generator=_generator(1, device))
    if tuple(first.shape) != (n, *x.shape[1:]):
        raise AssertionError(f"sample({n}) must have shape {(n, *x.shape[1:])}, got {tuple(first.shape)}")
    if not torch.isfinite(first.float()).all():
        raise AssertionError("sample(n) must be finite")
    if not torch.equal(first, again):
        raise AssertionError("sample(n, generator) must give the same samples for the same generator seed")
    if torch.equal(first, other):
        raise AssertionError("sample(n, generator) gave the same samples for different seeds")
    report["sample_shape"] = tuple(first.shape)
    report["loss"] = loss.item()
    return report


__all__ = ["LIKELIHOODS", "check_interface"]
