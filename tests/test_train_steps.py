"""The step loop: any update function over any batches, with an explicit state that a resume
restores bit for bit (models, optimisers, EMA, buffers, generators), gradient-needing
validation, named metrics, the NaN guard, and the run cache keyed by the run's settings."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from gmcourse import train
from gmcourse.train import History, ema_of, fit, fit_steps, run_key


def points(n=256, seed=0):
    return 2.0 + 0.5 * torch.randn(n, 1, generator=torch.Generator().manual_seed(seed))


def gan_state(seed=0):
    torch.manual_seed(seed)
    generator = nn.Linear(1, 1)
    discriminator = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    return {"generator": generator, "discriminator": discriminator,
            "opt_g": torch.optim.Adam(generator.parameters(), lr=0.02),
            "opt_d": torch.optim.Adam(discriminator.parameters(), lr=0.02),
            "ema": ema_of(generator, decay=0.9),
            "buffer": torch.zeros(32, 1),
            "noise": torch.Generator().manual_seed(seed)}


def gan_step(x, state):
    """One alternating GAN update on 1D points: discriminator, then generator (non-saturating)."""
    G, D = state["generator"], state["discriminator"]
    z = torch.randn(len(x), 1, generator=state["noise"])
    bce = nn.functional.binary_cross_entropy_with_logits
    fake = G(z)
    real_logit, fake_logit = D(x), D(fake.detach())
    d_loss = bce(real_logit, torch.ones_like(real_logit)) + bce(fake_logit, torch.zeros_like(fake_logit))
    state["opt_d"].zero_grad()
    d_loss.backward()
    state["opt_d"].step()
    fake_logit = D(fake)
    g_loss = bce(fake_logit, torch.ones_like(fake_logit))
    state["opt_g"].zero_grad()
    g_loss.backward()
    state["opt_g"].step()
    state["ema"].update_parameters(G)
    buffer = state["buffer"]  # a replay buffer: keep the newest fakes, in place
    buffer.copy_(torch.cat([fake.detach(), buffer])[: len(buffer)])
    return {"d_loss": d_loss, "g_loss": g_loss, "noise_mean": torch.randn(()).abs()}  # global RNG too


def snapshot(state):
    out = {}
    for name, obj in state.items():
        if isinstance(obj, nn.Module):
            out[name] = [t.clone() for t in obj.state_dict().values()]
        elif isinstance(obj, torch.Tensor):
            out[name] = [obj.clone()]
        elif isinstance(obj, torch.Generator):
            out[name] = [obj.get_state()]
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        for x, y in zip(a[name], b[name]):
            assert torch.equal(x, y), f"{name} differs"


def test_two_optimiser_update_records_named_metrics_and_learns():
    state = gan_state()
    z = torch.randn(2000, 1, generator=torch.Generator().manual_seed(5))
    start = abs(state["generator"](z).mean().item() - 2.0)
    history = fit(gan_step, state, points(), epochs=30, batch_size=64, progress=False)
    assert set(history.metrics) == {"d_loss", "g_loss", "noise_mean"}
    assert len(history.d_loss) == len(history.g_loss) == 30 and history.steps == 30 * 4
    assert abs(state["generator"](z).mean().item() - 2.0) < start / 2  # G moved towards the data
    assert state["ema"].n_averaged.item() == history.steps
    assert not state["generator"].training  # models handed back in eval mode


class Killed(Exception):
    pass


def killing(step, after):
    calls = {"n": 0}

    def wrapped(batch, state):
        calls["n"] += 1
        if calls["n"] > after:
            raise Killed
        return step(batch, state)
    return wrapped


@pytest.mark.parametrize("checkpoint_every, kill_after", [(1e9, 4 * 3 + 2), (0.0, 4 * 3 + 2), (0.0, 5)])
def test_killed_run_with_ema_buffer_and_generators_resumes_bit_for_bit(tmp_path, checkpoint_every, kill_after):
    """Killed mid-epoch, with checkpoints at epoch ends only or after every step."""
    straight = gan_state()
    h_straight = fit(gan_step, straight, points(), epochs=6, batch_size=64, progress=False, seed=3)

    ckpt = tmp_path / "run.pt"
    torch.manual_seed(123)  # the global RNG at kill time must not matter: it is restored
    with pytest.raises(Killed):
        fit(killing(gan_step, kill_after), gan_state(), points(), epochs=6, batch_size=64,
            checkpoint=ckpt, checkpoint_every=checkpoint_every, progress=False, seed=3)
    assert ckpt.exists() and not (tmp_path / "run.pt.tmp").exists()
    torch.manual_seed(0)  # a fresh kernel: the global RNG as the first run started it
    resumed = gan_state()
    h_resumed = fit(gan_step, resumed, points(), epochs=6, batch_size=64, checkpoint=ckpt,
                    checkpoint_every=checkpoint_every, progress=False, seed=3)
    assert_same(snapshot(straight), snapshot(resumed))
    assert h_resumed.metrics == h_straight.metrics and h_resumed.steps == h_straight.steps


def test_x_y_batches_arrive_as_aligned_pairs():
    x = torch.arange(100.0)[:, None]
    y = 2 * torch.arange(100)
    seen = []

    def step(batch, state):
        xb, yb = batch
        assert torch.equal(2 * xb[:, 0].long(), yb)
        seen.append(len(xb))
        return {"loss": torch.tensor(0.0)}
    fit(step, {"model": nn.Linear(1, 1)}, (x, y), epochs=2, batch_size=32, progress=False)
    assert seen == [32, 32, 32, 4] * 2


def test_any_batch_object_through_a_batches_function():
    graphs = [{"n": n} for n in range(10)]

    def batches(generator):
        order = torch.randperm(len(graphs), generator=generator).tolist()
        return ([graphs[i] for i in order[k:k + 3]] for k in range(0, len(order), 3))

    seen = []

    def step(batch, state):
        seen.extend(g["n"] for g in batch)
        return {"size": len(batch)}
    history = fit(step, {"model": nn.Linear(1, 1)}, batches, epochs=1, progress=False)
    assert sorted(seen) == list(range(10))
    assert history.size == [pytest.approx((3 * 3 + 3 * 3 + 3 * 3 + 1 * 1) / 10)]  # weighted by batch size


def test_validation_may_use_gradients():
    def validate(state):
        x = torch.zeros(5, 1, requires_grad=True)
        energy = (state["model"](x) ** 2).sum()
        (grad,) = torch.autograd.grad(energy, x)  # e.g. a Langevin step
        return {"val_grad_norm": grad.norm()}

    def step(batch, state):
        return {"loss": torch.tensor(1.0)}
    history = fit(step, {"model": nn.Linear(1, 1)}, points(8), validate=validate, epochs=2, progress=False)
    assert len(history.val_grad_norm) == 2 and all(math.isfinite(v) for v in history.val_grad_norm)


def test_nan_guard_names_the_metric_epoch_and_step():
    def step(batch, state):
        return {"g_loss": torch.tensor(float("nan")) if state["count"].add_(1).item() > 5 else torch.tensor(0.0)}
    with pytest.raises(FloatingPointError, match=r"metric 'g_loss' is nan at epoch 2, step 1 \(global step 5\)"):
        fit(step, {"count": torch.zeros(())}, points(64), epochs=3, batch_size=16, progress=False)

    def validate(state):
        return {"val_fd": float("inf")}
    with pytest.raises(FloatingPointError, match=r"metric 'val_fd' is inf at validation after epoch 1"):
        fit(lambda b, s: {}, {"model": nn.Linear(1, 1)}, points(8), validate=validate, epochs=1, progress=False)


@pytest.mark.parametrize("state, data, match", [
    ({}, points(8), "state must be a non-empty dict"),
    ({"model": nn.Linear(1, 1), "lr": 0.1}, points(8), r"state\['lr'\] is a float"),
    ({"model": nn.Linear(1, 1)}, [1.0, 2.0], "data must be a tensor"),
    ({"model": nn.Linear(1, 1)}, (torch.zeros(3, 1), torch.zeros(4)), "same non-zero length"),
])
def test_bad_state_and_data_are_named(state, data, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit_steps(lambda b, s: {}, state, data, epochs=1, progress=False)


def test_step_must_return_named_metrics():
    with pytest.raises(ValueError, match="dict of named metrics"):
        fit(lambda b, s: 1.0, {"model": nn.Linear(1, 1)}, points(8), epochs=1, progress=False)


def test_a_finished_cached_run_is_loaded_not_trained(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "RUNS_DIR", tmp_path)
    first = gan_state()
    h1 = fit(gan_step, first, points(), epochs=3, batch_size=64, cache="demo/gan", progress=False)
    assert len(list((tmp_path / "demo").glob("gan-*.pt"))) == 1

    def no_batches(*args):
        raise AssertionError("trained again")
    monkeypatch.setattr(train, "_batches_of", no_batches)
    second = gan_state()
    h2 = fit(gan_step, second, points(), epochs=3, batch_size=64, cache="demo/gan", progress=False)
    assert h2.metrics == h1.metrics and h2.seconds == h1.seconds
    assert_same(snapshot(first), snapshot(second))


def test_a_killed_cached_run_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "RUNS_DIR", tmp_path)
    with pytest.raises(Killed):
        fit(killing(gan_step, 6), gan_state(), points(), epochs=3, batch_size=64, cache="demo/gan",
            checkpoint_every=0.0, progress=False)
    # the killing wrapper is other code, so it has its own key; the real run starts fresh
    straight, cached = gan_state(), gan_state()
    fit(gan_step, straight, points(), epochs=3, batch_size=64, progress=False)
    fit(gan_step, cached, points(), epochs=3, batch_size=64, cache="demo/gan", progress=False)
    assert_same(snapshot(straight), snapshot(cached))


def test_load_cached_run_gives_the_newest_finished_run_and_refuses_unfinished_ones(tmp_path, monkeypatch):
    """How lecture 03 loads lecture 02's model: the state of a finished cached run, by name only."""
    monkeypatch.setattr(train, "RUNS_DIR", tmp_path)
    with pytest.raises(train.RunNotCached, match="demo/gan"):
        train.load_cached_run("demo/gan")
    with pytest.raises(Killed):  # a run killed mid-way leaves a checkpoint that is not a finished run
        fit(killing(gan_step, 6), gan_state(), points(), epochs=3, batch_size=64, cache="demo/gan",
            checkpoint_every=0.0, progress=False)
    assert list((tmp_path / "demo").glob("gan-*.pt"))
    with pytest.raises(FileNotFoundError, match="run the lecture that trains it first"):
        train.load_cached_run("demo/gan")
    trained = gan_state()
    fit(gan_step, trained, points(), epochs=3, batch_size=64, cache="demo/gan", progress=False)
    loaded = train.load_cached_run("demo/gan")
    assert set(loaded) == set(trained)
    for name, value in trained["generator"].state_dict().items():
        assert torch.equal(loaded["generator"][name], value)
    with pytest.raises(ValueError, match="relative name"):
        train.load_cached_run("../elsewhere")
    monkeypatch.setattr(train, "SMOKE", not train.SMOKE)  # a run of the other mode never stands in
    with pytest.raises(train.RunNotCached):
        train.load_cached_run("demo/gan")


BETA = 1.0


def step_with_global(batch, state):
    return {"loss": torch.tensor(BETA)}


def key(step=gan_step, state=None, data=None, **settings):
    torch.manual_seed(0)
    return run_key(step=step, state=state or gan_state(), data=points() if data is None else data,
                   settings=dict(dict(epochs=3, batch_size=64), **settings))


def test_the_key_changes_with_every_setting_and_only_then(monkeypatch):
    base = key()
    assert key() == base  # the same settings rebuilt from scratch: the same key
    changed_lr = gan_state()
    changed_lr["opt_g"].param_groups[0]["lr"] = 0.01
    other_init = gan_state(seed=1)
    other_arch = gan_state()
    other_arch["discriminator"] = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))

    def other_step(x, state):
        return {"d_loss": torch.tensor(0.0)}
    others = {
        "learning rate": key(state=changed_lr),
        "initial weights (seed)": key(state=other_init),
        "architecture": key(state=other_arch),
        "update code": key(step=other_step),
        "data": key(data=points(seed=1)),
        "epochs": key(epochs=4),
        "batch size": key(batch_size=32),
    }
    state = gan_state()
    torch.manual_seed(1)
    others["global random state"] = run_key(step=gan_step, state=state, data=points(),
                                            settings=dict(epochs=3, batch_size=64))
    for what, value in others.items():
        assert value != base, f"changing the {what} kept the key"
    g1 = key(step=step_with_global, state={"m": nn.Linear(1, 1)})
    monkeypatch.setitem(globals(), "BETA", 2.0)
    assert key(step=step_with_global, state={"m": nn.Linear(1, 1)}) != g1  # a global setting read by the step

    def closure_step(scale):
        return lambda batch, state: {"loss": torch.tensor(scale)}
    assert key(step=closure_step(1.0), state={"m": nn.Linear(1, 1)}) != key(step=closure_step(2.0), state={"m": nn.Linear(1, 1)})

    class Net(nn.Module):
        def forward(self, x):
            return x
    torch.manual_seed(0)
    before = run_key(step=gan_step, state={"m": nn.Sequential(Net())}, data=points(), settings={})

    def doubled(self, x):
        return 2 * x
    Net.forward = doubled  # the same shapes and weights, other code inside the network
    torch.manual_seed(0)
    assert run_key(step=gan_step, state={"m": nn.Sequential(Net())}, data=points(), settings={}) != before

    torch.manual_seed(0)
    plain = nn.Linear(1, 1)
    torch.manual_seed(0)
    warm = nn.Linear(1, 1)
    warm.warmup_steps = 100  # a plain attribute the loss reads: a setting too
    assert run_key(step=gan_step, state={"m": plain}, data=points(), settings={}) != \
        run_key(step=gan_step, state={"m": warm}, data=points(), settings={})

    def schedule(factor):
        model = nn.Linear(1, 1)
        opt = torch.optim.Adam(model.parameters())
        torch.manual_seed(0)
        return {"m": model, "opt": opt, "sched": torch.optim.lr_scheduler.LambdaLR(opt, lambda s: factor)}
    torch.manual_seed(0)
    a = run_key(step=gan_step, state=schedule(1.0), data=points(), settings={})
    torch.manual_seed(0)
    b = run_key(step=gan_step, state=schedule(0.5), data=points(), settings={})
    assert a != b  # a LambdaLR's schedule counts


def test_cache_name_is_checked():
    for bad in ("", "/abs/path", "../up"):
        with pytest.raises(ValueError, match="cache must be a relative name"):
            train.cached_run_path(bad, "0" * 16)


def test_ema_of_is_torchs_averaged_model_and_checks_decay():
    model = nn.Linear(1, 1)
    ema = ema_of(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model.weight.fill_(4.0)
    ema.update_parameters(model)
    assert ema.module.weight.item() == pytest.approx(3.0)  # 0.5 * 2 + 0.5 * 4
    with pytest.raises(ValueError, match="decay"):
        ema_of(model, decay=1.0)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 50), batch_size=st.integers(1, 20), epochs=st.integers(0, 3))
def test_every_example_is_seen_once_per_epoch_and_means_are_weighted(n, batch_size, epochs):
    x = torch.arange(float(n))[:, None]
    seen = []

    def step(batch, state):
        seen.extend(batch[:, 0].tolist())
        return {"mean_x": batch.mean()}
    history = fit(step, {"m": nn.Linear(1, 1)}, x, epochs=epochs, batch_size=batch_size, progress=False)
    assert sorted(seen) == sorted(list(range(n)) * epochs)
    assert history.steps == epochs * math.ceil(n / batch_size)
    for value in history.metrics.get("mean_x", []):
        assert value == pytest.approx((n - 1) / 2)  # per-batch means weighted by batch size


def test_history_names_missing_metrics():
    with pytest.raises(AttributeError, match=r"no metric 'g_loss'; it has \['d_loss'\]"):
        History(metrics={"d_loss": [1.0]}).g_loss


def test_a_stopwatch_in_a_schedule_does_not_change_the_key():
    """Lecture 01's step decay reads a stopwatch: its start time is not a setting."""
    def state_with_clock():
        torch.manual_seed(0)
        model = nn.Linear(1, 1)
        opt = torch.optim.Adam(model.parameters())
        clock = train.stopwatch()
        return {"m": model, "opt": opt,
                "sched": torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if clock() < 5 else 0.1)}
    keys = set()
    for _ in range(2):
        state = state_with_clock()
        torch.manual_seed(0)
        keys.add(run_key(step=gan_step, state=state, data=points(), settings={}))
    assert len(keys) == 1
