"""Measure the sample-quality reference ladder and the course classifiers' test accuracies.

    .venv/bin/python scripts/quality_reference.py

For MNIST and Fashion-MNIST: 2,000 "generated" images (the first 2,000 training images, as they
are, binarised, top/bottom halves of different images, 3x3-blurred, uniform noise) against the
first 2,000 test images, scored by :func:`gmcourse.quality.sample_quality`. Prints one markdown
table per data set (pasted into docs/sample_quality.md) and writes
``gmcourse/data/files/quality_reference.json``, which lectures and tests read through
:func:`gmcourse.quality.load_reference_ladder`.
"""
from __future__ import annotations

import json
import time

import torch

from gmcourse.quality import (
    DATASETS,
    N_REFERENCE,
    REFERENCE_LADDER_PATH,
    classifier_accuracy,
    measure_reference_ladder,
)

LABELS = {
    "real": "real training images (the floor)",
    "binarised": "binarised at 0.5",
    "halves": "top/bottom halves of different images",
    "blurred": "3×3 box blur",
    "noise": "uniform noise",
}


def main() -> None:
    torch.set_num_threads(2)
    ladders = {}
    for dataset in DATASETS:
        start = time.perf_counter()
        accuracy = classifier_accuracy(dataset, "test")
        rows = measure_reference_ladder(dataset, N_REFERENCE)
        seconds = time.perf_counter() - start
        ladders[dataset] = {
            "n": N_REFERENCE,
            "test_accuracy": accuracy,
            "rows": {name: q.as_dict() for name, q in rows.items()},
        }
        print(f"\n{dataset}: classifier test accuracy {accuracy:.4f}; "
              f"{N_REFERENCE} vs {N_REFERENCE} test images ({seconds:.1f} s)\n")
        print("| generated set | FD | precision | recall | confident share |")
        print("|---|---:|---:|---:|---:|")
        for name, q in rows.items():
            print(f"| {LABELS[name]} | {q.fd:.1f} | {q.precision:.3f} | {q.recall:.3f} | "
                  f"{q.confident_share:.3f} |")
    REFERENCE_LADDER_PATH.write_text(json.dumps(ladders, indent=1) + "\n")
    print(f"\nwrote {REFERENCE_LADDER_PATH}")


if __name__ == "__main__":
    main()
