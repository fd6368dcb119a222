"""One training loop whose unit is the step, for every family of the course.

``fit`` runs an *update function written in the lecture* over mini-batches, so a GAN's
alternating update or a diffusion model's EMA step stays visible where it is taught::

    state = {"generator": G, "discriminator": D, "opt_g": opt_g, "opt_d": opt_d,
             "ema": ema_of(G), "noise": torch.Generator().manual_seed(0)}

    def gan_step(x, state):            # x: one batch (B, 1, 28, 28)
        ...                            # discriminator update, then generator update
        return {"d_loss": d_loss, "g_loss": g_loss}   # per-batch means, any names

    def validate(state):               # may use gradients (Langevin, Hutchinson)
        return {"val_fd": ...}

    history = fit(gan_step, state, x_train, validate=validate, epochs=20, batch_size=64,
                  cache="03_gan/dcgan")
    history.d_loss, history.val_fd    # per-epoch means, one list per named metric

``state`` holds *everything a resume needs*: models, optimisers, schedulers, EMA weights
(``AveragedModel``), replay buffers (tensors, or objects with ``state_dict``), random
generators. The loop saves all of it, with its own data order, the global random states and the
position inside the epoch, atomically (``checkpoint=`` a path, or ``cache=`` a name): a run
killed at any point and started again continues bit for bit where it stopped, and a finished
run is loaded instead of trained again.

Data may be a tensor (N, ...) (batches are tensors), a tuple of tensors with the same N
(batches are tuples, e.g. ``(x, y)``), or a function ``batches(generator) -> iterable`` that
yields any batch objects in an order drawn from ``generator`` (graphs, variable-size data).

``fit(model, x_train, x_val, ...)``, for a model with ``loss(x)``, is a thin wrapper over the
same loop (Adam, optional scheduler, clipping and training-batch transform).

Shapes: B batch, N data set size.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import os
import random
import sys
import time
import types
import warnings
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gmcourse.config import SMOKE
from gmcourse.data.download import CACHE_DIR

CHECKPOINT_FORMAT = 2
# Training runs cached by ``fit(..., cache=name)``: $GMCOURSE_RUNS, else the data cache's runs/.
RUNS_DIR = Path(os.environ.get("GMCOURSE_RUNS") or CACHE_DIR / "runs").expanduser()


# --- history ---------------------------------------------------------------------------------

@dataclass
class History:
    """Per-epoch record of a run: the mean of every named metric over each epoch's examples.

    ``history.train_loss`` (or ``history["train_loss"]``) is the list for that metric.
    """

    epoch: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall-clock seconds of training so far
    metrics: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    stopped_by: str = ""  # "epochs", "time budget"

    def __getattr__(self, name: str) -> list[float]:
        if name.startswith("_") or name == "metrics":
            raise AttributeError(name)
        try:
            return self.metrics[name]
        except KeyError:
            raise AttributeError(f"History has no metric {name!r}; it has {sorted(self.metrics)}") from None

    def __getitem__(self, name: str) -> list[float]:
        return self.as_dict()[name]

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "seconds": self.seconds, **self.metrics,
                "steps": self.steps, "stopped_by": self.stopped_by}

    def _record(self, epoch: int, seconds: float, values: Mapping[str, float]) -> None:
        self.epoch.append(epoch)
        self.seconds.append(seconds)
        for name, value in values.items():
            self.metrics.setdefault(name, []).append(value)


# --- evaluation ------------------------------------------------------------------------------

def _check_data(name, x):
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or len(x) == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a non-empty tensor batched on dim 0, got {got}")


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 500,
             device: torch.device | str | None = None) -> float:
    """Mean of ``fn`` over the examples of ``x``, in batches, without gradients.

    ``fn(batch)`` returns either a scalar (the batch mean) or a (B,) tensor of per-example values.
    (For a metric that needs gradients, write the loop in ``validate``: ``fit`` allows it.)
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


# --- EMA -------------------------------------------------------------------------------------

def ema_of(model: nn.Module, decay: float = 0.999) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s weights (and buffers), PyTorch's own:
    ``ema = ema_of(model)``; after each optimiser step ``ema.update_parameters(model)``;
    evaluate or sample with ``ema.module``. Put it in ``fit``'s state so it survives a resume."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay must be in (0, 1), e.g. 0.999, got {decay!r}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


# --- state: save and restore everything a resume needs ---------------------------------------

def _kind(name: str, obj: Any) -> str:
    if isinstance(obj, torch.Generator):
        return "generator"
    if isinstance(obj, torch.Tensor):
        return "tensor"
    if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
        return "state_dict"
    raise TypeError(
        f"state[{name!r}] is a {type(obj).__name__}; expected what a resume can save: an "
        "nn.Module, optimiser, scheduler, AveragedModel (anything with state_dict/load_state_dict), "
        "a tensor (e.g. a replay buffer) or a torch.Generator")


def _check_state(state) -> None:
    if not isinstance(state, dict) or not state:
        raise ValueError(f"state must be a non-empty dict of named models, optimisers, ...; "
                         f"got {type(state).__name__}")
    for name, obj in state.items():
        _kind(name, obj)


def _state_payload(state: dict) -> dict:
    out = {}
    for name, obj in state.items():
        kind = _kind(name, obj)
        if kind == "generator":
            out[name] = (kind, obj.get_state())
        elif kind == "tensor":
            out[name] = (kind, obj.detach().clone())
        else:
            out[name] = (kind, obj.state_dict())
    return out


def _restore_state(state: dict, payload: dict) -> None:
    if set(payload) != set(state):
        raise ValueError(f"the checkpoint holds state {sorted(payload)}, this run has {sorted(state)}")
    for name, (kind, value) in payload.items():
        obj = state[name]
        if kind == "generator":
            obj.set_state(value)
        elif kind == "tensor":
            if obj.shape == value.shape and obj.dtype == value.dtype:
                with torch.no_grad():
                    obj.copy_(value)  # in place: references the update function holds stay valid
            else:
                state[name] = value.to(obj.device)
        else:
            obj.load_state_dict(value)


def _global_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_global_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_atomic(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-save never leaves a half-written checkpoint


# --- the cache key: a fingerprint of everything that decides a run's result -------------------

_SIMPLE = (int, float, str, bool, bytes, type(None))


def _simple(value) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (tuple, list, frozenset)):
        return len(value) < 1000 and all(_simple(v) for v in value)
    if isinstance(value, dict):
        return len(value) < 1000 and all(_simple(k) and _simple(v) for k, v in value.items())
    return False


def _fingerprint_code(obj, digest, seen: set, depth: int = 0) -> None:
    """Feed a function's (or class's) code, and the simple values, functions and classes it
    reaches through its globals and closure, into ``digest``."""
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, type):
        if _is_library(obj.__module__):
            digest.update(f"class {obj.__module__}.{obj.__qualname__}".encode())
            return
        digest.update(f"class {obj.__qualname__}".encode())
        for base in obj.__bases__:
            _fingerprint_code(base, digest, seen, depth + 1)
        for name, member in sorted(vars(obj).items()):
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                member = member.fget
            if isinstance(member, types.FunctionType):
                _fingerprint_code(member, digest, seen, depth + 1)
            elif _simple(member) and not name.startswith("__"):
                digest.update(f"{name}={member!r}".encode())
        return
    if isinstance(obj, types.MethodType):
        _fingerprint_code(obj.__func__, digest, seen, depth)
        _fingerprint_code(type(obj.__self__), digest, seen, depth + 1)
        return
    if isinstance(obj, nn.Module):  # a module in a closure or a global: its class and structure
        digest.update(repr(obj).encode())
        _fingerprint_code(type(obj), digest, seen, depth + 1)
        return
    if getattr(obj, "_gmcourse_volatile", False):  # e.g. a stopwatch: its start time is no setting
        digest.update(f"volatile {getattr(obj, '__qualname__', type(obj).__name__)}".encode())
        return
    if not isinstance(obj, types.FunctionType):
        if callable(obj) and not isinstance(obj, type):
            _fingerprint_code(type(obj), digest, seen, depth + 1)
        return
    if _is_library(obj.__module__):
        digest.update(f"fn {obj.__module__}.{obj.__qualname__}".encode())  # a library: by name
        return
    try:
        digest.update(inspect.getsource(obj).encode())
    except (OSError, TypeError):
        code = obj.__code__
        digest.update(code.co_code + repr(code.co_consts).encode())
    digest.update(repr(obj.__defaults__).encode() + repr(obj.__kwdefaults__).encode())
    cells = [c.cell_contents for c in (obj.__closure__ or ()) if _cell_filled(c)]
    names = [obj.__globals__[n] for n in _global_names(obj.__code__) if n in obj.__globals__]
    for value in cells + names:
        if _simple(value):
            digest.update(repr(value).encode())
        elif isinstance(value, (types.FunctionType, types.MethodType, type, nn.Module)):
            _fingerprint_code(value, digest, seen, depth + 1)


def _is_library(module_name: str | None) -> bool:
    """Code of the standard library or an installed package (by name in the key; its version does
    not change a setting), as opposed to the course's, a notebook's or a test's (by source)."""
    if not module_name or module_name == "__main__" or module_name.startswith("gmcourse"):
        return False
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return True
    module = sys.modules.get(top)
    where = getattr(module, "__file__", None) or ""
    return "site-packages" in where or "dist-packages" in where


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def _global_names(code) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # nested functions, comprehensions
            names += _global_names(const)
    return names


def _fingerprint_tensor(t: torch.Tensor, digest) -> None:
    digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
    t = t.detach().cpu().contiguous().reshape(-1)
    digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _fingerprint_value(value, digest) -> None:
    if isinstance(value, torch.Tensor):
        _fingerprint_tensor(value, digest)
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            digest.update(str(k).encode())
            _fingerprint_value(value[k], digest)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for v in value:
            _fingerprint_value(v, digest)
    elif _simple(value):
        digest.update(repr(value).encode())
    else:
        digest.update(type(value).__name__.encode())


def run_key(*, step, state, data, validate=None, settings: Mapping | None = None) -> str:
    """A short hash of what decides a run: the update and validation code (and the settings and
    functions they reach), the code and initial values of everything in ``state`` (so seeds,
    architectures and optimiser and scheduler settings count), the global torch random state, the
    data, the loop's settings and the mode (smoke or full)."""
    digest = hashlib.sha256()
    seen: set = set()
    for fn in (step, validate, data if callable(data) else None):
        digest.update(b"|fn|")
        if fn is not None:
            _fingerprint_code(fn, digest, seen)
    for name, obj in sorted(state.items()):
        digest.update(f"|state {name} {type(obj).__name__}|".encode())
        if isinstance(obj, nn.Module):
            digest.update(repr(obj).encode())
            for module in obj.modules():  # the code of every network inside, not only its shape
                _fingerprint_code(type(module), digest, seen)
                settings_of = {k: v for k, v in vars(module).items()  # e.g. a VAE's beta, warm-up
                               if not k.startswith("_") and k != "training" and _simple(v)}
                digest.update(repr(sorted(settings_of.items())).encode())
        for fn in getattr(obj, "lr_lambdas", None) or ():  # a LambdaLR's schedule
            _fingerprint_code(fn, digest, seen)
        if isinstance(obj, torch.Generator):
            _fingerprint_tensor(obj.get_state(), digest)
        elif isinstance(obj, torch.Tensor):
            _fingerprint_tensor(obj, digest)
        else:
            _fingerprint_value(obj.state_dict(), digest)
    digest.update(b"|data|")
    if isinstance(data, torch.Tensor):
        _fingerprint_tensor(data, digest)
    elif isinstance(data, (tuple, list)):
        for t in data:
            _fingerprint_tensor(t, digest)
    digest.update(b"|global rng|")  # what the run draws without a generator of its own
    _fingerprint_tensor(torch.get_rng_state(), digest)
    _fingerprint_value(dict(settings or {}, smoke=SMOKE), digest)
    return digest.hexdigest()[:16]


def cached_run_path(name: str, key: str) -> Path:
    """Where ``fit(..., cache=name)`` keeps the run whose settings hash to ``key``."""
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in Path(name).parts:
        raise ValueError(f"cache must be a relative name such as '01_autoregressive/made', got {name!r}")
    return RUNS_DIR / f"{name}-{key}.pt"


class RunNotCached(FileNotFoundError):
    """No finished run of that name is in the run cache (raised by :func:`load_cached_run`)."""


def load_cached_run(name: str) -> dict:
    """The ``state`` (entry name -> state dict) of the newest *finished* run that
    ``fit(..., cache=name)`` kept in the run cache, trained in the current mode (a smoke run
    never stands in for a full one): how a lecture loads another lecture's trained model without
    training it again, e.g. ``load_cached_run("02_vae/conv_vae")["vae"]``.

    Raises :class:`RunNotCached` (a ``FileNotFoundError``) naming the folder searched when there
    is none: run that lecture first, or train the model yourself.
    """
    cached_run_path(name, "0")  # the same check of the name as fit's
    finished = []
    for path in (RUNS_DIR / name).parent.glob(f"{Path(name).name}-*.pt"):
        saved = torch.load(path, weights_only=False, map_location="cpu")
        history = saved.get("history", {})
        ended = (history.get("stopped_by") == "time budget"
                 or len(history.get("epoch", ())) >= saved.get("epochs", math.inf))
        if saved.get("position") is None and ended and saved.get("smoke") == SMOKE:  # done, in this mode
            state = {entry: value for entry, (_kind_of, value) in saved["state"].items()}  # state dicts, tensors
            finished.append((path.stat().st_mtime, str(path), state))
    if not finished:
        raise RunNotCached(f"no finished run named {name!r} in the run cache {RUNS_DIR} "
                           f"(files {name}-<key>.pt): run the lecture that trains it first")
    return max(finished, key=lambda run: run[:2])[2]


# --- the loop --------------------------------------------------------------------------------

def _batch_len(batch) -> int:
    """Examples in a batch: len of a tensor, of the first tensor of a tuple, or of the object."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return len(batch[0])
    try:
        return len(batch)
    except TypeError:
        return 1


def _to_device(batch, device):
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, tuple):
        return tuple(b.to(device) if isinstance(b, torch.Tensor) else b for b in batch)
    return batch


def _batches_of(data, batch_size: int, generator: torch.Generator) -> Iterable:
    if isinstance(data, torch.Tensor):
        return (data[idx] for idx in torch.randperm(len(data), generator=generator).split(batch_size))
    if isinstance(data, tuple):
        order = torch.randperm(len(data[0]), generator=generator).split(batch_size)
        return (tuple(t[idx] for t in data) for idx in order)
    return data(generator)


def _check_loop_data(data) -> None:
    if isinstance(data, torch.Tensor):
        _check_data("data", data)
    elif isinstance(data, tuple):
        if not data or not all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in data):
            raise ValueError("data as a tuple must hold tensors batched on dim 0, e.g. (x, y)")
        if len({len(t) for t in data}) != 1 or len(data[0]) == 0:
            raise ValueError(f"the tensors of data must have the same non-zero length, got "
                             f"{[len(t) for t in data]}")
    elif not callable(data):
        raise ValueError(f"data must be a tensor (N, ...), a tuple of tensors (x, y) or a function "
                         f"batches(generator) -> iterable of batches; got {type(data).__name__}")


def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be a {kind} int, got {value!r}")


def _as_float(name: str, value, where: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric {name!r} must be a scalar, got shape {tuple(value.shape)} ({where})")
        value = value.item()
    value = float(value)
    if not math.isfinite(value):
        raise FloatingPointError(
            f"metric {name!r} is {value} at {where}. Try a smaller learning rate, gradient clipping, "
            "or check the inputs' range.")
    return value


def _set_mode(state: dict, training: bool) -> None:
    for obj in state.values():
        if isinstance(obj, nn.Module):
            obj.train(training)


def fit(step_or_model, *args, **kwargs) -> History:
    """Train: ``fit(step, state, data, ...)`` runs an update function (see the module's help);
    ``fit(model, x_train, x_val=None, ...)`` minimises ``model.loss`` (see :func:`fit_model`)."""
    if isinstance(step_or_model, nn.Module):
        return fit_model(step_or_model, *args, **kwargs)
    return fit_steps(step_or_model, *args, **kwargs)


def fit_steps(step: Callable[[Any, dict], Mapping[str, Any]], state: dict, data, *,
              validate: Callable[[dict], Mapping[str, Any]] | None = None,
              epochs: int = 10, batch_size: int = 128, time_budget: float | None = None,
              checkpoint: str | os.PathLike | None = None, cache: str | None = None,
              checkpoint_every: float = 30.0, seed: int = 0,
              device: torch.device | str | None = None, progress: bool = True) -> History:
    """Run ``step(batch, state) -> {name: value}`` over mini-batches of ``data`` for ``epochs``.

    step: the update, written in the lecture; it does its own backward passes and optimiser,
        scheduler and EMA steps, and returns per-batch means of any named metrics.
    state: dict of everything a resume needs (models, optimisers, schedulers, EMA, buffers,
        generators); models are put in train mode for steps and eval mode for ``validate``.
    data: tensor (N, ...), tuple of tensors with the same N, or ``batches(generator)``.
    validate: ``validate(state) -> {name: value}`` after every epoch; gradients are allowed.
    time_budget: seconds of training; stops after the step that crosses it (across resumes).
    checkpoint: a file; saved atomically after every epoch, every ``checkpoint_every`` seconds
        and at the budget; if it exists, the run resumes from it (bit for bit).
    cache: a name such as ``"03_gan/dcgan"``: the checkpoint lives in the run cache under a key
        of the run's settings (:func:`run_key`), so a changed setting never reuses an old run and
        a finished run is loaded, not trained again.
    device: where tensor batches go (default: the device of the first model in ``state``).
    Returns the :class:`History`; raises FloatingPointError naming the metric, epoch and step
    when a value stops being finite.
    """
    if not callable(step):
        raise ValueError(f"step must be a function step(batch, state) -> dict of metrics, got {type(step).__name__}")
    _check_state(state)
    _check_loop_data(data)
    _check_positive_int("epochs", epochs, minimum=0)
    _check_positive_int("batch_size", batch_size)
    if time_budget is not None and not time_budget > 0:
        raise ValueError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    if checkpoint is not None and cache is not None:
        raise ValueError("pass either checkpoint= (a path) or cache= (a name), not both")
    if device is None:
        device = next((_device_of(m) for m in state.values() if isinstance(m, nn.Module)), None)

    path = Path(checkpoint) if checkpoint is not None else None
    if cache is not None:
        key = run_key(step=step, state=state, data=data, validate=validate,
                      settings=dict(epochs=epochs, batch_size=batch_size, time_budget=time_budget,
                                    seed=seed, device=str(torch.device(device).type) if device else None))
        path = cached_run_path(cache, key)
    if path is not None and not _writable(path):
        warnings.warn(f"cannot write checkpoints to {path.parent}; training without a checkpoint")
        path = None

    order_rng = torch.Generator().manual_seed(seed)
    history = History()
    position = None  # where inside an epoch a mid-epoch checkpoint was taken
    elapsed_before = 0.0
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=False, map_location="cpu")
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a gmcourse checkpoint of format {CHECKPOINT_FORMAT}; "
                             "delete it to train from scratch")
        _restore_state(state, saved["state"])
        _set_global_rng_state(saved["global_rng"])
        order_rng.set_state(saved["order_rng"])
        history = History(**saved["history"])
        position = saved["position"]
        elapsed_before = saved["elapsed"]
        done = history.stopped_by == "time budget" and time_budget is not None and elapsed_before >= time_budget
        done = done or (position is None and len(history.epoch) >= epochs)
        if progress:
            where = f"epoch {history.epoch[-1] if history.epoch else 0}" + (
                f", step {position['step']} of epoch {position['epoch']}" if position else "")
            print(f"{'loaded the finished run' if done else 'resumed'} from {path} after {where}")
        if done:
            _set_mode(state, False)
            return history

    def save(position=None):
        if path is None:
            return
        _save_atomic({"format": CHECKPOINT_FORMAT, "state": _state_payload(state),
                      "global_rng": _global_rng_state(), "order_rng": order_rng.get_state(),
                      "history": dataclasses.asdict(history), "epochs": epochs, "smoke": SMOKE,
                      "position": position, "elapsed": clock()}, path)

    start = time.perf_counter() - elapsed_before

    def clock() -> float:
        return time.perf_counter() - start

    first_epoch = (history.epoch[-1] if history.epoch else 0) + 1
    bar = tqdm(range(first_epoch, epochs + 1), desc="epochs", disable=not progress,
               initial=first_epoch - 1, total=epochs)
    history.stopped_by = "epochs"
    last_save = clock()
    for epoch in bar:
        _set_mode(state, True)
        if position is not None and position["epoch"] == epoch:  # resume inside this epoch
            order_rng.set_state(position["order_rng"])
            skip, sums, count = position["step"], dict(position["sums"]), position["count"]
        else:
            skip, sums, count = 0, {}, 0
        epoch_order = order_rng.get_state()
        position, out_of_time = None, False
        for index, batch in enumerate(_batches_of(data, batch_size, order_rng)):
            if index < skip:
                continue
            n = _batch_len(batch)
            metrics = step(_to_device(batch, device), state)
            if not isinstance(metrics, Mapping):
                raise ValueError(f"step must return a dict of named metrics, got {type(metrics).__name__}")
            where = f"epoch {epoch}, step {index} (global step {history.steps})"
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + _as_float(name, value, where) * n
            count += n
            history.steps += 1
            if time_budget is not None and clock() >= time_budget:
                out_of_time = True
                break
            if path is not None and clock() - last_save >= checkpoint_every:
                save({"epoch": epoch, "step": index + 1, "order_rng": epoch_order,
                      "sums": sums, "count": count})
                last_save = clock()
        values = {name: total / max(count, 1) for name, total in sums.items()}
        if validate is not None:
            _set_mode(state, False)
            for name, value in validate(state).items():
                values[name] = _as_float(name, value, f"validation after epoch {epoch}")
        history._record(epoch, clock(), values)
        bar.set_postfix({k: f"{v:.3f}" for k, v in list(values.items())[:4]})
        if out_of_time:
            history.stopped_by = "time budget"
        save()
        last_save = clock()
        if out_of_time:
            break
    bar.close()
    _set_mode(state, False)
    return history


def _writable(path: Path) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.access(path.parent, os.W_OK)
    except OSError:
        return False


def fit_model(model: nn.Module, x_train: torch.Tensor, x_val: torch.Tensor | None = None, *,
              epochs: int = 10, batch_size: int = 128, lr: float = 1e-3,
              optimizer: torch.optim.Optimizer | None = None,
              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
              transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
              time_budget: float | None = None, checkpoint: str | os.PathLike | None = None,
              cache: str | None = None, seed: int = 0, clip_grad: float | None = None,
              progress: bool = True) -> History:
    """Minimise ``model.loss(x)`` with Adam (or ``optimizer``) over mini-batches of ``x_train``.

    The thin wrapper over :func:`fit_steps` for a model with ``loss(x)``; the history holds
    ``train_loss`` and, with ``x_val``, ``val_loss`` (means over examples).
    x_train, x_val: tensors (N, ...) kept where they are; each batch moves to the model's device.
    scheduler: built on ``optimizer``, stepped after every optimiser step (horizon in steps).
    transform: applied to every *training* batch on the device (e.g. dynamic binarisation).
    time_budget, checkpoint, cache, seed, progress: as in :func:`fit_steps`.
    """
    _check_data("x_train", x_train)
    if x_val is not None:
        _check_data("x_val", x_val)
    if not hasattr(model, "loss"):
        raise ValueError(f"model must have a loss(x) method, got {type(model).__name__}")
    device = _device_of(model)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    if scheduler is not None and scheduler.optimizer is not optimizer:
        raise ValueError("scheduler must be built on the optimizer passed to fit (optimizer=...)")
    state = {"model": model, "optimizer": optimizer}
    if scheduler is not None:
        state["scheduler"] = scheduler

    def loss_step(x, state):
        if transform is not None:
            x = transform(x)
        loss = model.loss(x)
        if not torch.isfinite(loss):  # the loop names the metric, epoch and step
            return {"train_loss": loss}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return {"train_loss": loss}

    validate = None
    if x_val is not None:
        def validate(state):
            return {"val_loss": evaluate(model.loss, x_val, batch_size=max(batch_size, 500), device=device)}

    return fit_steps(loss_step, state, x_train, validate=validate, epochs=epochs,
                     batch_size=batch_size, time_budget=time_budget, checkpoint=checkpoint,
                     cache=cache, seed=seed, device=device, progress=progress)


def stopwatch() -> Callable[[], float]:
    """``elapsed = stopwatch(); ...; elapsed()`` gives seconds since the call (CUDA-synchronised)."""
    start = time.perf_counter()

    def elapsed() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    elapsed._gmcourse_volatile = True  # a run's cache key reads its code, not its start time
    return elapsed


__all__ = ["History", "RUNS_DIR", "RunNotCached", "cached_run_path", "ema_of", "evaluate", "fit", "fit_model",
           "fit_steps", "load_cached_run", "run_key", "stopwatch"]
