"""The sandbox keeps its promises (uid, capabilities, namespaces, limits, kills from outside); the
grader refuses to run without one unless told to; the plain-data channel refuses anything but
plain arrays; submissions are taken in safely (links, FIFOs, duplicate names, formula names)."""
import csv
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gmcourse.cli import main
from gmcourse.grading import sandbox
from gmcourse.grading.batch import Limits, read_outputs, run_sandboxed
from gmcourse.grading.gradebook import feedback_name, neutralise
from gmcourse.grading.intake import collect, student_ids

ROOT = Path(__file__).resolve().parents[1]
ISOLATION, WHY = sandbox.detect()
needs_sandbox = pytest.mark.skipif(not ISOLATION.sandboxed, reason=f"no sandbox here: {WHY}")

INSIDE = r'''
import json, os, subprocess, sys, time
report = {"uid": os.getuid(), "pid": os.getpid(), "course": os.path.exists(sys.argv[1]),
          "cap_eff": [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]}
children = []
try:
    for _ in range(400):
        children.append(subprocess.Popen(["sleep", "30"]))
except OSError as error:
    report["spawn_error"] = error.errno
report["spawned"] = len(children)
for child in children:
    child.kill()
try:
    with open("/work/big", "wb") as f:
        f.write(b"x" * (40 << 20))
    report["big_file"] = "written"
except OSError as error:
    report["big_file"] = error.errno
try:
    for i in range(10):
        with open(f"/tmp/fill{i}", "wb") as f:
            f.write(b"x" * (10 << 20))
    report["tmp_fill"] = "written"
except OSError as error:
    report["tmp_fill"] = error.errno
open("/out/result.json", "w").write(json.dumps(report))
'''


def in_sandbox(tmp_path, argv, limits: Limits, uid=sandbox.NOBODY, isolation=ISOLATION):
    job = tmp_path / "job"
    job.mkdir()
    job.chmod(0o755)
    out = tmp_path / "result.json"
    sandbox.prepare_out_file(out, uid, isolation)
    command = sandbox.command(isolation, argv, job, {"result.json": out}, uid, limits.sandbox())
    ran = run_sandboxed(command, limits)
    return ran, out


@needs_sandbox
@pytest.mark.parametrize("mode", ["detected", "userns"])
def test_sandbox_uid_capabilities_limits(tmp_path, mode):
    isolation = ISOLATION if mode == "detected" else sandbox.Isolation("userns", "user namespace", ISOLATION.bwrap)
    if mode == "userns":
        ok, why = sandbox.trial(isolation, [ROOT / "solutions"])
        assert ok, why
    limits = Limits(file_mb=16, processes=64, tmpfs_mb=32)
    ran, out = in_sandbox(tmp_path, [sys.executable, "-I", "-c", INSIDE, str(ROOT / "solutions")], limits,
                          isolation=isolation)
    report = json.loads(out.read_text())
    assert ran["killed"] == "" and ran["returncode"] == 0, ran
    assert report["uid"] == sandbox.NOBODY and int(report["cap_eff"], 16) == 0
    assert report["pid"] < 10 and report["course"] is False
    if isolation.mode == "setpriv" or os.geteuid() != 0:  # Linux exempts uid 0, which userns maps to here
        assert report["spawned"] < 64 and report["spawn_error"] == 11      # EAGAIN: RLIMIT_NPROC
    assert report["big_file"] == 27                                       # EFBIG: RLIMIT_FSIZE
    assert report["tmp_fill"] == 28                                        # ENOSPC: the tmpfs cap


@needs_sandbox
def test_each_parallel_slot_has_its_own_uid(tmp_path):
    (tmp_path / "a").mkdir()
    ran, out = in_sandbox(tmp_path / "a", [sys.executable, "-I", "-c",
                          "import os; open('/out/result.json', 'w').write(str(os.getuid()))"], Limits(),
                          uid=sandbox.NOBODY - 1)
    expected = sandbox.NOBODY - 1 if ISOLATION.mode == "setpriv" else sandbox.NOBODY
    assert out.read_text() == str(expected)


@needs_sandbox
def test_wall_clock_limit_is_enforced_from_outside(tmp_path):
    start = time.monotonic()
    ran, _ = in_sandbox(tmp_path, ["sh", "-c", "kill -STOP $$; sleep 600"], Limits(total_timeout=1, startup_s=2))
    assert "wall-clock limit of 3 s" in ran["killed"]
    assert time.monotonic() - start < 15


def test_refuses_to_grade_without_a_sandbox(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "detect", lambda must_be_absent=(): (sandbox.NONE, "no bwrap (test)"))
    gradebook = tmp_path / "grades.csv"
    code = main(["grade", str(ROOT / "exercises" / "00_intro.ipynb"), str(ROOT / "exercises" / "00_intro.ipynb"),
                 "-o", str(gradebook)])
    assert code == 2 and not gradebook.exists()
    assert "--no-sandbox" in capsys.readouterr().err


def test_no_sandbox_flag_says_so_on_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "detect", lambda must_be_absent=(): (sandbox.NONE, "no bwrap (test)"))
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("a", "b"):
        (subs / f"{name}.ipynb").write_bytes((ROOT / "exercises" / "00_intro.ipynb").read_bytes())
    (subs / "c.ipynb").write_text("not json")
    gradebook = tmp_path / "grades.csv"
    code = main(["grade", str(ROOT / "exercises" / "00_intro.ipynb"), *map(str, sorted(subs.iterdir())),
                 "-o", str(gradebook), "--no-sandbox", "--cell-timeout", "30", "--total-timeout", "60"])
    with open(gradebook, newline="") as f:
        rows = list(csv.DictReader(f))
    assert code == 0 and len(rows) == 3
    assert all(row["notes"].startswith("UNSANDBOXED") for row in rows)
    assert all(float(row["total"]) == 0 for row in rows)


def _npz(members: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, array in members.items():
            data = io.BytesIO()
            np.save(data, array, allow_pickle=True)
            archive.writestr(name, data.getvalue())
    return buffer.getvalue()


@pytest.mark.parametrize("members, compression, message", [
    ({"a.npy": np.array([object()], dtype=object)}, zipfile.ZIP_STORED, "Object arrays"),
    ({"a.npy": np.zeros(10)}, zipfile.ZIP_DEFLATED, "unexpected member"),
    ({"../a.npy": np.zeros(10)}, zipfile.ZIP_STORED, "unexpected member"),
    ({"a.npy": np.array(["text"])}, zipfile.ZIP_STORED, "not numeric"),
])
def test_outputs_are_plain_arrays_only(tmp_path, members, compression, message):
    path = tmp_path / "outputs.npz"
    path.write_bytes(_npz(members, compression))
    with pytest.raises(ValueError, match=message):
        read_outputs(path)


def test_plain_outputs_are_read_as_float64(tmp_path):
    path = tmp_path / "outputs.npz"
    np.savez(path, public__q1__x=np.arange(3, dtype=np.int32))
    assert read_outputs(path)["public__q1__x"].dtype == np.float64


def test_student_ids_are_unique_whatever_the_names(tmp_path):
    paths = [tmp_path / "a" / "alice.ipynb", tmp_path / "b" / "alice.ipynb", tmp_path / "alice-2.ipynb",
             tmp_path / "alice~a.ipynb", tmp_path / "c" / "bob.ipynb"]
    ids = student_ids(paths)
    assert len(set(ids)) == len(ids) == 5
    assert ids[2] == "alice-2" and ids[4] == "bob" and ids[3] == "alice~a" and ids[0] != "alice~a"


def test_links_folders_fifos_and_duplicates_are_refused_with_a_reason(tmp_path):
    real = tmp_path / "real.ipynb"
    real.write_text("{}")
    (tmp_path / "link.ipynb").symlink_to(real)
    (tmp_path / "dir.ipynb").mkdir()
    os.mkfifo(tmp_path / "fifo.ipynb")
    linked_dir = tmp_path / "linked_dir"
    linked_dir.symlink_to(tmp_path)
    entries = collect([real, tmp_path / "link.ipynb", tmp_path / "dir.ipynb", tmp_path / "fifo.ipynb",
                       linked_dir / "real.ipynb", real])
    reasons = [e.refusal for e in entries]
    assert reasons[0] == "" and entries[0].data == b"{}"
    assert "symbolic link" in reasons[1] and "directory" in reasons[2] and "not a regular file" in reasons[3]
    assert "through a symbolic link" in reasons[4] and "the same file" in reasons[5]
    assert len({e.student for e in entries}) == len(entries)


@pytest.mark.parametrize("text", ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_formula_fields_are_neutralised(text):
    assert neutralise(text) == "'" + text and neutralise("alice") == "alice"


def test_feedback_names_are_safe_and_distinct():
    names = [feedback_name(s) for s in ["a b", "a_b", "../x", "=1", "alice"]]
    assert len(set(names)) == 5 and all("/" not in n and not n.startswith(".") for n in names)
    assert feedback_name("alice") == "alice.md"
