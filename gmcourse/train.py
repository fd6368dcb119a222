"""One training loop for every model that exposes ``loss(x)``, and batched evaluation.

Shapes: B batch, N data set size; ``x`` is whatever the model takes, batched on dim 0.

``fit`` gives: a tqdm.auto progress bar, per-epoch train/validation history, an optional time
budget, checkpoint save and resume (a killed run continues from its last finished epoch), and a
guard that stops with a message naming the step when the loss stops being finite.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm


@dataclass
class History:
    """Per-epoch record of a run; ``train_loss`` and ``val_loss`` are means over examples."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall-clock seconds since the start
    steps: int = 0
    stopped_by: str = ""  # "epochs", "time budget"

    def as_dict(self) -> dict:
        return dict(vars(self))


def _check_data(name, x):
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or len(x) == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a non-empty tensor batched on dim 0, got {got}")


def _device_of(model: torch.nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 500,
             device: torch.device | str | None = None) -> float:
    """Mean of ``fn`` over the examples of ``x``, in batches.

    ``fn(batch)`` returns either a scalar (the batch mean) or a (B,) tensor of per-example values.
    """
    _check_data("x", x)
    total, count = 0.0, 0
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        if device is not None:
            batch = batch.to(device)
        value = fn(batch)
        if value.ndim == 0:
            total += float(value) * len(batch)
        elif value.shape == (len(batch),):
            total += float(value.sum())
        else:
            raise ValueError(f"fn must return a scalar or shape ({len(batch)},), got {tuple(value.shape)}")
        count += len(batch)
    return total / count


def _save_atomic(state: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-save never leaves a half-written checkpoint


def fit(model: torch.nn.Module, x_train: torch.Tensor, x_val: torch.Tensor | None = None, *,
        epochs: int = 10, batch_size: int = 128, lr: float = 1e-3,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        time_budget: float | None = None, checkpoint: str | os.PathLike | None = None,
        seed: int = 0, clip_grad: float | None = None, progress: bool = True) -> History:
    """Minimise ``model.loss(x)`` with Adam (or ``optimizer``) over mini-batches of ``x_train``.

    x_train, x_val: tensors (N, ...) kept where they are; each batch moves to the model's device.
    scheduler: a learning-rate scheduler built on ``optimizer``, stepped after every optimizer step
        (so its horizon is counted in steps, e.g. ``CosineAnnealingLR(opt, T_max=epochs * steps)``).
    transform: applied to every *training* batch on the device (e.g. dynamic binarisation).
    time_budget: seconds; training stops after the step that crosses it (counted across resumes).
    checkpoint: a file path; saved atomically after every epoch and at the budget; if it exists,
        training resumes from it (model, optimizer, history, data order).
    Returns the :class:`History`; raises FloatingPointError naming the step if the loss is NaN/inf.
    """
    _check_data("x_train", x_train)
    if x_val is not None:
        _check_data("x_val", x_val)
    if not hasattr(model, "loss"):
        raise ValueError(f"model must have a loss(x) method, got {type(model).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = _device_of(model)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    if scheduler is not None and scheduler.optimizer is not optimizer:
        raise ValueError("scheduler must be built on the optimizer passed to fit (optimizer=...)")
    order_rng = torch.Generator().manual_seed(seed)
    history, elapsed_before = History(), 0.0

    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = torch.load(path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        order_rng.set_state(state["order_rng"])
        history = History(**state["history"])
        elapsed_before = history.seconds[-1] if history.seconds else 0.0
        if progress:
            print(f"resumed from {path} after epoch {history.epoch[-1] if history.epoch else 0}")
        if time_budget is not None and elapsed_before >= time_budget:
            return history  # the budget was spent before the run was stopped

    def save():
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict() if scheduler is not None else None,
                          "order_rng": order_rng.get_state(), "history": history.as_dict()}, path)

    start = time.perf_counter() - elapsed_before
    first_epoch = (history.epoch[-1] if history.epoch else 0) + 1
    bar = tqdm(range(first_epoch, epochs + 1), desc="epochs", disable=not progress,
               initial=first_epoch - 1, total=epochs)
    history.stopped_by = "epochs"
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        out_of_time = False
        for step, idx in enumerate(torch.randperm(len(x_train), generator=order_rng).split(batch_size)):
            x = x_train[idx].to(device)
            if transform is not None:
                x = transform(x)
            loss = model.loss(x)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss is {loss.item()} at epoch {epoch}, step {step} (global step {history.steps}); "
                    f"last finite epoch mean: {history.train_loss[-1] if history.train_loss else 'none'}. "
                    "Try a smaller learning rate, gradient clipping, or check the inputs' range.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            history.steps += 1
            total, count = total + loss.item() * len(x), count + len(x)
            if time_budget is not None and time.perf_counter() - start >= time_budget:
                out_of_time = True
                break
        history.epoch.append(epoch)
        history.train_loss.append(total / count)
        if x_val is not None:
            model.eval()
            history.val_loss.append(evaluate(model.loss, x_val, batch_size=max(batch_size, 500), device=device))
        history.seconds.append(time.perf_counter() - start)
        bar.set_postfix(train=f"{history.train_loss[-1]:.3f}",
                        val=f"{history.val_loss[-1]:.3f}" if history.val_loss else "-")
        if out_of_time:
            history.stopped_by = "time budget"
            save()
            break
        save()
    bar.close()
    model.eval()
    return history


def stopwatch() -> Callable[[], float]:
    """``elapsed = stopwatch(); ...; elapsed()`` gives seconds since the call (CUDA-synchronised)."""
    start = time.perf_counter()

    def elapsed() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return elapsed


__all__ = ["History", "evaluate", "fit", "stopwatch"]
