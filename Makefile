# Two commands matter: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch lies on this machine's disk; pinning it first keeps pip from pulling a CUDA build.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
SHARED ?= ../shared/data

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Offline, ir_datasets reads a private, writable copy of the shared data (it writes docstores beside it).
IRDS_COPY ?= out/ir_datasets

demo: install
	@if [ -z "$$IR_DATASETS_HOME" ] && [ -d "$(SHARED)/ir_datasets" ] && [ ! -d "$(IRDS_COPY)" ]; then \
		mkdir -p $(dir $(IRDS_COPY)) && cp -r "$(SHARED)/ir_datasets" "$(IRDS_COPY)" && chmod -R u+w "$(IRDS_COPY)"; fi
	IR_DATASETS_HOME="$${IR_DATASETS_HOME:-$(abspath $(IRDS_COPY))}" $(BIN)/rankdistill pipeline examples/dl20-demo.yaml

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
