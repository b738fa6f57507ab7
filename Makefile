# Two commands: `make demo` and `make test`. Each does all set-up on a fresh Linux machine.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
CONSTRAINT := $(VENV)/constraints.txt

.PHONY: demo test install clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (or run: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch first (the CPU wheel), then the package with torch pinned by a constraint, so that
# no other torch build is ever pulled in by a dependency.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	echo "$(TORCH_SPEC)" > $(CONSTRAINT)
	$(PY) -m pip install -q -c $(CONSTRAINT) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m kpop_helpers.demo --out outputs

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) outputs/* .pytest_cache
