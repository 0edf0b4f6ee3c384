# The two commands of README.md: `make demo` and `make test`. Both create .venv and install the project first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
# Label Studio and label-studio-sdk live in their own environment (requirements/label-studio.txt says why)
LS_VENV ?= .venv-label-studio

.PHONY: install label-studio demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstalled when the package metadata or a compiled kernel changes (an editable install does not rebuild .pyx).
$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py $(wildcard src/adaspx/_*.pyx src/adaspx/_*.pxd src/adaspx/_*.h)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

$(LS_VENV)/.installed: requirements/label-studio.txt
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet -r requirements/label-studio.txt
	touch $@

label-studio: $(LS_VENV)/.installed

demo: install
	$(BIN)/snakemake --cores $(CORES)

# CI runs `make test`: the lints (ruff, snakefmt --check, snakemake --lint) first, then the suite; the tests marked
# label_studio start a Label Studio server from $(LS_VENV)
test: lint label-studio
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests benchmarks workflow/scripts
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1

clean:
	rm -rf results logs .snakemake
