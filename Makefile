# Two commands matter: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch lies on this machine's disk; pinning it first keeps pip from pulling a CUDA build.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
SHARED ?= ../shared/data

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python -m rankdistill.demo --shared $(SHARED)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
