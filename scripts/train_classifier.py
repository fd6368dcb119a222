"""Train the course classifiers behind gmcourse.quality (sample-quality scores).

    .venv/bin/python scripts/train_classifier.py                  # both data sets
    .venv/bin/python scripts/train_classifier.py --dataset mnist  # one

Trains :class:`gmcourse.quality.QualityClassifier` on the "train" split (MNIST: the 7,000-digit
subset; Fashion-MNIST: 50,000 images) on the CPU with a fixed seed, keeps the epoch with the best
accuracy on "val", reports the accuracy on "test" once, and writes the weights as a plain
state_dict (``torch.load(..., weights_only=True)``) to
``gmcourse/data/files/classifier_{dataset}.pt`` (package data).

Augmentation: each batch is randomly moved by up to 2 pixels, and rotated by up to 10 degrees and
rescaled by up to 10% (MNIST) or mirrored left-right (Fashion-MNIST), with one affine warp.

Noise is not a digit: without help, a CNN labels uniform noise as some class with confidence
near 1, and the confident share of eq. (4) in gmcourse.quality would call noise a good sample.
So every batch also holds B/4 images of uniform noise of random brightness, u * U[0, 1]^784 with
u ~ U[0, 1], whose target is the uniform distribution over the 10 classes (outlier exposure,
Hendrycks et al., 2019):

    loss = CE(p(. | x), y) + 0.5 * mean_noise CE(p(. | z), uniform)                    (1)
"""
from __future__ import annotations

import argparse
import copy
import math
import time

import torch
import torch.nn.functional as F

from gmcourse.config import set_seed
from gmcourse.data import to_unit
from gmcourse.quality import DATASETS, QualityClassifier, _load, classifier_path

# epochs (over "train"), batch size and peak learning rate per data set
SETTINGS = {
    "mnist": dict(epochs=12, batch_size=64, lr=3e-3, rotate_deg=10.0, scale=0.1, flip=False),
    "fashion_mnist": dict(epochs=5, batch_size=128, lr=3e-3, rotate_deg=0.0, scale=0.0, flip=True),
}
SHIFT_PX = 2.0
NOISE_SHARE, NOISE_WEIGHT = 0.25, 0.5  # noise images per batch image, weight of their loss, eq. (1)


def augment(x: torch.Tensor, generator: torch.Generator, rotate_deg: float, scale: float,
            flip: bool) -> torch.Tensor:
    """Random affine warp of a batch x (B, 1, 28, 28): shift <= 2 px, rotation, scale, flip."""
    b = len(x)
    u = lambda: torch.rand(b, generator=generator) * 2 - 1  # noqa: E731, U[-1, 1) per image
    angle = u() * math.radians(rotate_deg)
    s = 1 + u() * scale
    sx = s * (torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if flip else 1.0)
    theta = torch.zeros(b, 2, 3)  # maps output coordinates to input coordinates in [-1, 1]
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) / sx, -torch.sin(angle) / s
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) / sx, torch.cos(angle) / s
    theta[:, :, 2] = torch.stack([u(), u()], dim=1) * SHIFT_PX * 2 / 28  # shift in pixels -> [-1, 1] units
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")  # (B, 1, 28, 28)


@torch.no_grad()
def accuracy(model: QualityClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    logits = torch.cat([model(batch) for batch in x.split(1000)])  # (N, 10)
    return (logits.argmax(1) == y).float().mean().item()


def train(dataset: str, seed: int = 0) -> None:
    cfg = SETTINGS[dataset]
    set_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    (x_train, y_train), (x_val, y_val) = _load(dataset, "train"), _load(dataset, "val")
    x_train, x_val = to_unit(x_train), to_unit(x_val)  # (N, 1, 28, 28) in [0, 1]
    model = QualityClassifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    steps_per_epoch = math.ceil(len(x_train) / cfg["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg["lr"], epochs=cfg["epochs"],
                                                   steps_per_epoch=steps_per_epoch)
    best_val, best_state, best_epoch = -1.0, None, 0
    for epoch in range(1, cfg["epochs"] + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for idx in order.split(cfg["batch_size"]):
            x = augment(x_train[idx], generator, cfg["rotate_deg"], cfg["scale"], cfg["flip"])
            b = len(x)
            z = torch.rand(int(b * NOISE_SHARE), 1, 28, 28, generator=generator)
            z = z * torch.rand(len(z), 1, 1, 1, generator=generator)  # noise of random brightness
            logits = model(torch.cat([x, z]))  # (B + B/4, 10)
            to_uniform = -logits[b:].log_softmax(-1).mean(-1).mean()  # CE(p(. | z), uniform)
            loss = F.cross_entropy(logits[:b], y_train[idx]) + NOISE_WEIGHT * to_uniform  # eq. (1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(idx)
        val = accuracy(model, x_val, y_val)
        if val > best_val:
            best_val, best_state, best_epoch = val, copy.deepcopy(model.state_dict()), epoch
        print(f"{dataset} epoch {epoch:2d}: train loss {total / len(x_train):.4f}, "
              f"val accuracy {val:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    model.load_state_dict(best_state)
    x_test, y_test = _load(dataset, "test")
    test = accuracy(model, to_unit(x_test), y_test)  # reported once, for the kept epoch
    seconds = time.perf_counter() - start
    path = classifier_path(dataset)
    torch.save(model.state_dict(), path)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{dataset}: kept epoch {best_epoch} (val accuracy {best_val:.4f}); "
          f"test accuracy {test:.4f} on {len(x_test)} images; {n_params} parameters; "
          f"trained in {seconds:.0f} s; wrote {path} ({path.stat().st_size / 1024:.0f} KB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, action="append",
                        help="train only this data set (repeatable); default: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: the committed weights; fastest on a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for dataset in args.dataset or DATASETS:
        train(dataset, args.seed)


if __name__ == "__main__":
    main()
