# The two commands of the README: `make demo` and `make test`.
# Both create .venv with the CPU build of torch (pinned: an unpinned `torch` pulls a CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint format venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m torchdet.tools.quickstart $(ARGS)

test: venv
	$(PY) -m ruff check torchdet tests benchmarks
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check torchdet tests benchmarks
	$(PY) -m ruff format --check torchdet tests benchmarks

format: venv
	$(PY) -m ruff format torchdet tests benchmarks
	$(PY) -m ruff check --fix torchdet tests benchmarks

clean:
	rm -rf $(VENV) output
