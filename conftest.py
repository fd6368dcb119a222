"""Test-wide settings: every notebook kernel started by nbval inherits smoke mode, Agg, a fresh
run cache (no training result of an earlier test session is reused) and a throwaway folder for
the lectures' results files (the committed, full-mode ones are never overwritten)."""
import os
import tempfile

os.environ.setdefault("GMCOURSE_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GMCOURSE_RUNS", tempfile.mkdtemp(prefix="gmcourse-runs-"))
os.environ.setdefault("GMCOURSE_RESULTS", tempfile.mkdtemp(prefix="gmcourse-results-"))
