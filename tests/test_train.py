import math

import pytest
import torch
from torch import nn

from gmcourse.train import evaluate, fit, stopwatch


class Gaussian(nn.Module):
    """Smallest model with the course interface: a 1-D Gaussian with learnable mean and log std."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(1))
        self.log_std = nn.Parameter(torch.zeros(1))

    def log_prob(self, x):
        return (-0.5 * ((x - self.mu) / self.log_std.exp()) ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(1)

    def loss(self, x):
        return -self.log_prob(x).mean()


def data(n=512, seed=0):
    return 3 + 0.5 * torch.randn(n, 1, generator=torch.Generator().manual_seed(seed))


def test_fit_learns_and_records_history():
    model = Gaussian()
    h = fit(model, data(), data(256, 1), epochs=40, batch_size=64, lr=0.05, progress=False)
    assert h.epoch == list(range(1, 41)) and len(h.train_loss) == len(h.val_loss) == 40
    assert h.train_loss[-1] < h.train_loss[0] - 1
    assert model.mu.item() == pytest.approx(3.0, abs=0.1)
    assert h.steps == 40 * 8 and h.stopped_by == "epochs"


def test_fit_is_deterministic_given_the_seed():
    a, b = Gaussian(), Gaussian()
    fit(a, data(), epochs=3, progress=False, seed=5)
    fit(b, data(), epochs=3, progress=False, seed=5)
    assert torch.equal(a.mu, b.mu)


def test_time_budget_stops_early():
    h = fit(Gaussian(), data(50_000), epochs=1000, batch_size=8, time_budget=0.2, progress=False)
    assert h.stopped_by == "time budget" and len(h.epoch) == 1 and h.seconds[-1] < 2


def test_killed_run_resumes_from_checkpoint(tmp_path):
    ckpt = tmp_path / "run.pt"
    straight = Gaussian()
    fit(straight, data(), data(64, 1), epochs=6, lr=0.05, progress=False, checkpoint=tmp_path / "straight.pt")

    first = Gaussian()

    class Killed(Exception):
        pass

    original_loss = first.loss
    calls = {"n": 0}

    def loss_then_die(x):
        calls["n"] += 1
        if calls["n"] > 3 * 4 + 2:  # 4 steps per epoch: die during epoch 4
            raise Killed
        return original_loss(x)

    first.loss = loss_then_die
    with pytest.raises(Killed):
        fit(first, data(), data(64, 1), epochs=6, lr=0.05, progress=False, checkpoint=ckpt)
    assert ckpt.exists() and not (tmp_path / "run.pt.tmp").exists()

    resumed = Gaussian()
    h = fit(resumed, data(), data(64, 1), epochs=6, lr=0.05, progress=False, checkpoint=ckpt)
    assert h.epoch == [1, 2, 3, 4, 5, 6]
    assert torch.allclose(resumed.mu, straight.mu) and torch.allclose(resumed.log_std, straight.log_std)


def test_nan_guard_names_the_step():
    class Exploding(Gaussian):
        def loss(self, x):
            return super().loss(x) * float("nan") if self.mu.item() > 0.5 else super().loss(x)

    with pytest.raises(FloatingPointError, match=r"metric 'train_loss' is nan at epoch \d+, step \d+"):
        fit(Exploding(), data(), epochs=50, lr=0.1, progress=False)


def test_transform_applies_to_training_batches_only():
    seen = []
    fit(Gaussian(), data(64), data(32), epochs=1, batch_size=64,
        transform=lambda x: seen.append(len(x)) or x, progress=False)
    assert seen == [64]


@pytest.mark.parametrize("kwargs, match", [
    (dict(x_train=torch.zeros(0, 1)), "x_train"),
    (dict(x_train=[1.0, 2.0]), "x_train"),
    (dict(x_train=torch.zeros(4, 1), epochs=-1), "epochs"),
    (dict(x_train=torch.zeros(4, 1), batch_size=0), "batch_size"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(Gaussian(), **kwargs, progress=False)


def test_model_without_loss_is_rejected():
    with pytest.raises(ValueError, match="loss"):
        fit(nn.Linear(1, 1), torch.zeros(4, 1), progress=False)


def test_evaluate_weights_batches_by_size():
    x = torch.arange(10.0)[:, None]
    assert evaluate(lambda b: b[:, 0], x, batch_size=3) == pytest.approx(4.5)
    assert evaluate(lambda b: b.mean(), x, batch_size=4) == pytest.approx(4.5)
    with pytest.raises(ValueError, match="scalar or shape"):
        evaluate(lambda b: b, x, batch_size=4)


def test_stopwatch_counts_up():
    elapsed = stopwatch()
    assert 0 <= elapsed() < 1


def test_scheduler_steps_once_per_optimizer_step():
    model = Gaussian()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=40)
    history = fit(model, data(), epochs=5, batch_size=64, optimizer=optimizer, scheduler=scheduler, progress=False)
    assert history.steps == 40
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_scheduler_must_belong_to_the_optimizer():
    model = Gaussian()
    other = torch.optim.SGD(Gaussian().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="scheduler"):
        fit(model, data(), epochs=1, scheduler=torch.optim.lr_scheduler.StepLR(other, 1), progress=False)


def test_scheduler_state_resumes_from_checkpoint(tmp_path):
    def run(epochs):
        model = Gaussian()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=64)
        fit(model, data(), epochs=epochs, batch_size=64, optimizer=optimizer, scheduler=scheduler,
            checkpoint=tmp_path / "ckpt.pt", progress=False)
        return optimizer.param_groups[0]["lr"]
    run(3)
    resumed = run(8)  # continues from the end of epoch 3: 64 steps in all
    assert resumed == pytest.approx(0.0, abs=1e-12)
