"""Machine-readable results of a lecture run: the measured figures, the run's time and device.

A lecture ends with::

    save_results("02_vae", {"conv_vae_nelbo_test": 97.4, ...}, seconds=lecture_clock())

which writes ``lectures/02_vae.results.json`` beside the notebook (in a clone; the current folder
elsewhere; ``$GMCOURSE_RESULTS`` when set, as the test suite does so that smoke runs never
overwrite the committed full-mode figures). Tests and the README's results table read the file
through :func:`load_results` instead of searching the printed text.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from pathlib import Path
from typing import Mapping

import torch

from gmcourse.config import SMOKE, get_device

_CHECKOUT = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_LECTURE = re.compile(r"^\d\d_[a-z0-9_]+$")


def results_path(lecture: str) -> Path:
    """Where the results of ``lecture`` (e.g. "02_vae") are written and read."""
    if not isinstance(lecture, str) or not _LECTURE.match(lecture):
        raise ValueError(f"lecture must be a notebook's name such as '02_vae', got {lecture!r}")
    folder = os.environ.get("GMCOURSE_RESULTS")
    if folder:
        return Path(folder) / f"{lecture}.results.json"
    lectures = _CHECKOUT / "lectures"
    return (lectures if lectures.is_dir() else Path.cwd()) / f"{lecture}.results.json"


def _check_figures(figures: Mapping) -> dict:
    if not isinstance(figures, Mapping) or not figures:
        raise ValueError(f"figures must be a non-empty dict of name -> number, got {figures!r}")
    out = {}
    for name, value in figures.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"figure names must be identifiers such as 'made_nll_test', got {name!r}")
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"figure {name!r} must be a finite number, got {value!r}")
        out[name] = value
    return out


def save_results(lecture: str, figures: Mapping[str, float], *, seconds: float) -> Path:
    """Write the lecture's measured figures (name -> number) and the run's wall time in seconds,
    mode (smoke or full), device, torch version and date; returns the file's path."""
    figures = _check_figures(figures)
    if not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"seconds must be the run's wall time (a number >= 0), got {seconds!r}")
    device = get_device()
    record = {
        "lecture": lecture,
        "mode": "smoke" if SMOKE else "full",
        "seconds": round(float(seconds), 1),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "figures": figures,
    }
    path = results_path(lecture)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_results(lecture: str, path: str | os.PathLike | None = None) -> dict:
    """The record :func:`save_results` wrote for ``lecture`` (or the file at ``path``)."""
    path = Path(path) if path is not None else results_path(lecture)
    if not path.is_file():
        raise FileNotFoundError(f"expected the results of {lecture} at {path}; run the lecture to write them")
    record = json.loads(path.read_text())
    missing = {"lecture", "mode", "seconds", "device", "figures"} - set(record)
    if missing:
        raise ValueError(f"{path}: expected a results record, it lacks {sorted(missing)}")
    return record


def committed_results(lecture: str) -> dict:
    """The record of ``lecture`` as committed with the course (its full-mode run, in the checkout's
    lectures/ folder), wherever this run writes its own results: for a lecture that cites another
    lecture's measured figures."""
    lectures = _CHECKOUT / "lectures"
    return load_results(lecture, path=(lectures if lectures.is_dir() else Path.cwd()) / f"{lecture}.results.json")


__all__ = ["committed_results", "load_results", "results_path", "results_table", "save_results", "update_readme"]


# --- the README's results table, read from the results files ---------------------------------

HEADLINES = {  # lecture -> (figure, what it is, unit): the numbers the README quotes
    "00_intro": [("mixture8_test_nll", "mixture of 8 Gaussians, test NLL on 8 gaussians", "nats"),
                 ("eight_gaussians_entropy", "entropy of 8 gaussians (the floor)", "nats")],
    "01_autoregressive": [("made_test_nll_nats", "MADE, test NLL", "nats"),
                          ("gated_pixelcnn_test_nll_nats", "dilated gated PixelCNN, test NLL", "nats"),
                          ("transformer_test_nll_nats", "causal transformer over rows, test NLL", "nats"),
                          ("gated_pixelcnn_digits_share", "dilated gated PixelCNN, share of samples the classifier "
                           "recognises", ""),
                          ("test_digits_share", "binarised test digits, share the classifier recognises", "")],
    "02_vae": [("conv_vae_test_nll_bound_k1", "conv VAE, test -ELBO", "nats"),
               ("conv_vae_test_nll_bound_k100", "conv VAE, test -IWAE (k = 100)", "nats")],
    "03_gan": [("dcgan_test_fd", "DCGAN, Fréchet distance to the test digits (real digits: 3.8)", ""),
               ("toy_r1_hq_min", "2D, R1-penalised GAN, share of high-quality samples (worst of 3 seeds)", ""),
               ("toy_plain_modes_min", "2D, plain GAN, modes covered of 8 (worst of 3 seeds)", "")],
    "04_flows": [("glow_best_test_bpd", "multi-scale Glow, 8-bit test digits (with the dequantisation correction)", "bits/dim"),
                 ("best_kl_8_gaussians", "best 2D flow, KL to 8 gaussians", "nats"),
                 ("best_kl_checkerboard", "best 2D flow, KL to the checkerboard", "nats"),
                 ("best_kl_rings", "best 2D flow, KL to the rings", "nats")],
    "05_ebm": [("toy_cd_kl_8_gaussians", "2D EBM by contrastive divergence, KL to 8 gaussians (Z by quadrature)", "nats"),
               ("toy_grid_ml_kl_8_gaussians", "2D EBM by exact maximum likelihood (Z on a grid), KL to 8 gaussians", "nats"),
               ("auroc_EBM_energy_mnist_in", "digit EBM's energy, AUROC against Fashion-MNIST", ""),
               ("auroc_EBM_energy_fashion_in", "Fashion-MNIST EBM's energy, AUROC against MNIST", ""),
               ("sample_fd_buffer", "digit EBM, Fréchet distance of its buffer chains to the test digits", "")],
    "06_diffusion": [("sample_fd", "class-conditional U-Net, guided DDIM samples, Fréchet distance to the test digits", ""),
                     ("sample_requested_share", "guided DDIM samples read as the requested digit", ""),
                     ("test_bpd_bound", "the same U-Net, bound on 8-bit test digits", "bits/dim"),
                     ("toy_support_share_ddpm", "2D, DDPM samples within 3 std of a mode of 8 gaussians", ""),
                     ("toy_ode_kl_8_gaussians", "2D, probability-flow ODE, KL to 8 gaussians (exact likelihood)", "nats")],
    "07_graphs": [("mmd_degree_graph_rnn", "GraphRNN on two-community graphs, degree MMD² to the test graphs", ""),
                  ("mmd_degree_erdos_renyi", "Erdős–Rényi baseline, degree MMD² to the test graphs", ""),
                  ("mmd_clustering_graph_rnn", "GraphRNN, clustering MMD² to the test graphs", ""),
                  ("mmd_clustering_erdos_renyi", "Erdős–Rényi baseline, clustering MMD² to the test graphs", ""),
                  ("mmd_clustering_graph_vae", "GraphVAE (one-shot), clustering MMD² to the test graphs", ""),
                  ("nll_bound_graph_rnn_k64", "GraphRNN, bound on the test graphs' NLL (64 BFS orders)", "nats"),
                  ("nll_erdos_renyi", "Erdős–Rényi baseline, exact test NLL", "nats")],
    "08_comparison": [("gan_fd_mean", "all families, 20 s of training each: GAN, Fréchet distance (mean of 3 seeds)", ""),
                      ("autoregressive_fd_mean", "the same budget: MADE, Fréchet distance (mean of 3 seeds)", ""),
                      ("autoregressive_bits_per_dim", "the same budget: MADE, binarised test digits (exact)", "bits/dim"),
                      ("diffusion_probe_accuracy", "the same budget: diffusion U-Net features, linear probe (100 labels a class)", ""),
                      ("probe_accuracy_pixels", "raw pixels, the same linear probe", "")],
}
TABLE_BEGIN, TABLE_END = "<!-- results table: begin -->", "<!-- results table: end -->"


def _figure(value: float) -> str:
    """Two decimals, or two significant digits for a figure below 0.1 (a discrepancy of 0.0013)."""
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.1 else f"{value:.2g}"


def results_table(folder: str | os.PathLike = _CHECKOUT / "lectures") -> str:
    """The README's table of headline figures, from the results files in ``folder`` (the
    committed ones, beside the lectures, by default)."""
    lines = [TABLE_BEGIN, "| lecture | figure | value | run |", "|---|---|---|---|"]
    for lecture, rows in HEADLINES.items():
        record = load_results(lecture, Path(folder) / f"{lecture}.results.json")
        for key, what, unit in rows:
            run = f"{record['mode']} mode, {record['seconds'] / 60:.1f} min on {record['device']}"
            lines.append(f"| {lecture} | {what} | {_figure(record['figures'][key])} {unit} | {run} |")
    lines.append(TABLE_END)
    return "\n".join(lines)


# lecture 08's comparison table: (label, key prefix in its figures, what its likelihood is)
COMPARISON_FAMILIES = (("autoregressive", "autoregressive", "binarised, exact"), ("VAE", "vae", "binarised, bound"),
                       ("GAN", "gan", "none"), ("flow", "flow", "8-bit, exact (dequantised)"),
                       ("EBM", "ebm", "unnormalised"), ("diffusion", "diffusion", "8-bit, bound"))
COMPARISON_BEGIN, COMPARISON_END = "<!-- comparison table: begin -->", "<!-- comparison table: end -->"


def comparison_table(figures: Mapping[str, float] | None = None) -> str:
    """Lecture 00's comparison table with lecture 08's measured numbers (its figures, or the committed
    ones by default): one row per family, means over the seeds with the spread after the ±."""
    if figures is None:
        figures = load_results("08_comparison", _CHECKOUT / "lectures" / "08_comparison.results.json")["figures"]
    f = figures
    rows = ["| family | training stability | likelihood | sampling speed | compression | representation |",
            "|---|---|---|---|---|---|"]
    for label, key, kind in COMPARISON_FAMILIES:
        stability = (f"FD {f[key + '_fd_mean']:.0f} ± {f[key + '_fd_spread']:.1f}; "
                     f"{f[key + '_failed_runs']:.0f} of {f['n_seeds']:.0f} runs failed")
        if key + "_bits_per_dim" in f:
            likelihood = f"{f[key + '_bits_per_dim']:.3f} ± {f[key + '_bits_spread']:.3f} bits/dim ({kind})"
            lzma_key = "lzma_bits_binarised" if kind.startswith("binarised") else "lzma_bits_8bit"
            compression = f"{f[key + '_bits_per_image']:,.0f} bits/image (lzma {f[lzma_key]:,.0f})"
        else:
            likelihood, compression = kind, "no"
        sampling = f"{f[key + '_samples_per_second']:,.0f} samples/s; {f[key + '_evaluations']:.0f} network evaluations per sample"
        representation = f"probe {f[key + '_probe_accuracy']:.3f} ± {f[key + '_probe_spread']:.3f} (pixels {f['probe_accuracy_pixels']:.3f})"
        rows.append(f"| {label} | {stability} | {likelihood} | {sampling} | {compression} | {representation} |")
    return "\n".join(rows)


def _replace_block(text: str, begin: str, end: str, block: str, where: Path) -> str:
    """text with everything from the marker ``begin`` through ``end`` replaced by ``block`` (which
    carries both markers)."""
    if begin not in text or end not in text:
        raise ValueError(f"{where}: expected the markers {begin!r} and {end!r}")
    head, rest = text.split(begin, 1)
    return head + block + rest.split(end, 1)[1]


def update_readme(readme: str | os.PathLike = _CHECKOUT / "README.md") -> bool:
    """Rewrite the tables between the README's markers (the headline figures; lecture 08's comparison
    table where its markers are); returns whether it changed."""
    path = Path(readme)
    text = path.read_text()
    new = _replace_block(text, TABLE_BEGIN, TABLE_END, results_table(), path)
    if COMPARISON_BEGIN in new:
        new = _replace_block(new, COMPARISON_BEGIN, COMPARISON_END,
                             f"{COMPARISON_BEGIN}\n{comparison_table()}\n{COMPARISON_END}", path)
    path.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m gmcourse.results: refresh the README's results table
    print("README.md", "updated" if update_readme() else "unchanged")
