# Entry points, each doing the whole set-up on a fresh machine:
#   make demo   build the default model's bundle (from models/) and track the sample clip
#   make test   check the import contract (lint-imports), then run the test suite
#   make data   build the photo library of the synthetic train split (apt-get download, ~250 MB)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
OUT    ?= out

.PHONY: demo test install clean bench data

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: a looser spec pulls several GB of CUDA wheels
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[train,eval,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) samples/demo.py --out $(OUT)

# the import contract first (layers conversion -> training -> edgetrack, pyproject.toml)
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -n 2 --dist loadgroup

# real photographs from Debian packages for the synthetic train split ($$EDGETRACK_CACHE/photos)
data: $(STAMP)
	$(VENV)/bin/edgetrack data

# latency of the default model's bundle against torch FP32
bench: $(STAMP)
	$(VENV)/bin/edgetrack bench --model "$$($(PY) -c 'from edgetrack.default_model import default_bundle; print(default_bundle())')" --json $(OUT)/bench.json

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
