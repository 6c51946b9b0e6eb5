# One-command set-up: every target installs into .venv when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
REF    := .venv-ref/.installed

.PHONY: install test demo bench clean

install: $(STAMP)

# Reinstall when the metadata or the install pins change.
$(STAMP): pyproject.toml tools/constraints-cpu.txt tools/install.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash tools/install.sh
	touch $(STAMP)

# Reference packages that need other pins (tools/reference-pins.txt); their agreement tests skip without them.
$(REF): tools/reference-pins.txt tools/install-reference.sh | $(STAMP)
	-VENV=$(VENV) bash tools/install-reference.sh && touch $(REF)

test: $(STAMP) $(REF)
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/sidbench demo

bench: $(STAMP)
	$(PY) bench/bench_frechet.py
	$(PY) bench/bench_folder_fid.py

clean:
	rm -rf $(VENV) .venv-ref build *.egg-info .pytest_cache
