# Two commands: `make lab` (set up, then open JupyterLab on the course) and `make test`
# (set up the same way, then run the whole test suite). Both create .venv from the lock.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gmcourse-installed

.PHONY: setup lab test assign lock clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned first and on its own so that pip never reaches for a newer (CUDA) build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab lectures/

test: $(STAMP)
	$(PY) -m pytest

assign: $(STAMP)
	$(VENV)/bin/gmcourse assign

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^gmcourse' | sed 's/+cpu$$//' > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV)
