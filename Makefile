# Two commands: `make lab` (set up, then open JupyterLab on the course) and `make test`
# (set up the same way, then run the whole test suite). Both create .venv from the lock.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gmcourse-installed

.PHONY: setup lab test assign export lock clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned first and on its own so that pip never reaches for a newer (CUDA) build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# `make lab`: JupyterLab on the whole course (the repository root: lectures/, exercises/,
# solutions/) at http://$(LAB_IP):$(LAB_PORT)/lab; it prints that address, and JupyterLab prints
# the full URL with its token. As root (a container, a cloud box) it adds --allow-root; on Linux
# without a display it adds --no-browser. Another port: `make lab LAB_PORT=8890`; from outside a
# container or VM: `make lab LAB_IP=0.0.0.0` (anyone who has the token can then run code).
LAB_IP ?= 127.0.0.1
LAB_PORT ?= 8888
lab: $(STAMP)
	@flags=""; \
	if [ "$$(id -u)" = 0 ]; then flags="--allow-root"; echo "make lab: running as root, so JupyterLab runs with --allow-root"; fi; \
	if [ "$$(uname -s)" != Darwin ] && [ -z "$$DISPLAY$$WAYLAND_DISPLAY" ]; then flags="$$flags --no-browser"; \
	  echo "make lab: no display here, so no browser opens: open the URL below in a browser (over ssh: ssh -L $(LAB_PORT):localhost:$(LAB_PORT) <this host>)"; fi; \
	echo "make lab: JupyterLab on the whole course in $(CURDIR) (lectures/, exercises/, solutions/)"; \
	echo "make lab: point your browser at http://$(LAB_IP):$(LAB_PORT)/lab?token=<the token printed below>; Ctrl-C stops it"; \
	exec $(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --ServerApp.ip=$(LAB_IP) \
	  --ServerApp.port=$(LAB_PORT) --ServerApp.port_retries=0 $$flags

test: $(STAMP)
	$(PY) -m pytest

assign: $(STAMP)
	$(VENV)/bin/gmcourse assign

export: $(STAMP)
	$(VENV)/bin/gmcourse export

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^gmcourse' | sed 's/+cpu$$//' > requirements.lock.new
	mv requirements.lock.new requirements.lock

# Colab's environment (colab/check.py; docs/instructors.md, "Colab"). colab-lite: Colab's versions
# of the course's pure-Python stack on the lock's CPU torch, in .venv/colab-lite (make test builds
# and uses it too). colab-check: Colab's exact versions (Python 3.12 from pyenv, torch 2.9.0 from
# PyPI, about 5 GB) in build/colab-check, every notebook run there in smoke mode the way Colab runs
# it; the report is build/colab-check/report.md. Run it whenever Colab moves to a new runtime.
.PHONY: colab-lite colab-check
colab-lite: $(STAMP)
	$(PY) colab/check.py lite

colab-check: $(STAMP)
	$(PY) colab/check.py exact

clean:
	rm -rf $(VENV)
