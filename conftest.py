"""Test-wide settings: every notebook kernel started by nbval inherits smoke mode and Agg."""
import os

os.environ.setdefault("GMCOURSE_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
