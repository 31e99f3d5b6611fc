# foldserve — one entry point for installing, serving, testing and measuring.
# Everything runs from the virtual environment in $(VENV), created on first use.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PERF_STAMP := $(VENV)/.perf-installed-stamp
PROTO := app/serving/v2/grpc_predict_v2.proto
CONFIG_PROTO := app/serving/v2/triton_model_config.proto
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test lint format test-fast test-gpu screenshots fuzz bench reproduce loadtest docker-test ray-test soak clean protos perf-analyzer

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# ray: the Ray Serve deployment's tests run in CI (tests/serving/ray/, a one-node cluster in about 35 s);
	# it adds about 250 MB and half a minute to a fresh install
	# onnx, openvino: the runtimes every variant is chosen among at load (app/runtimes); about 150 MB
	$(PY) -m pip install --quiet -e '.[train,loadtest,dev,ray,onnx,openvino]'
	touch $(STAMP)

install: $(STAMP)

serve: install  ## install, then serve model_store/ on $(HOST):$(PORT)
	$(PY) -m app serve --host $(HOST) --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app

protos: install  ## regenerate the committed gRPC stubs beside $(PROTO) (a test fails while they differ)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. $(CONFIG_PROTO)

$(PERF_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[perf]'
	touch $(PERF_STAMP)

perf-analyzer: $(PERF_STAMP)  ## Triton's perf_analyzer against a running server: make perf-analyzer ARGS="-m NAME ..."
	VENV=$(VENV) bash scripts/perf-analyzer.sh $(ARGS)

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint  ## install, lint, then run the whole test suite
	$(VENV)/bin/pytest

test-fast: install
	$(VENV)/bin/pytest -m "not slow"

screenshots: install  ## the comparison page's pictures in docs/img and its first paint, from a real browser
	FOLDSERVE_SCREENSHOTS=docs/img $(VENV)/bin/pytest -m screenshots -s tests/serving/test_ui_browser.py

test-gpu: install
	$(VENV)/bin/pytest -m gpu

FUZZ_EXAMPLES ?= 10000
FUZZ_TESTS := tests/serving/v2/test_fuzz_binary.py tests/serving/v2/test_fuzz_grpc.py

fuzz: install  ## the v2 protocol's inputs fuzzed: $(FUZZ_EXAMPLES) examples per target (the suite runs 200); docs/operations.md
	FOLDSERVE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest $(FUZZ_TESTS) -p no:cacheprovider --hypothesis-show-statistics

bench: install  ## the paper's network: linear ResNet34 collapsed, annealed ResNet34 stripped
	$(PY) -m app bench --config depth=34,width=64,activation=identity --batch-sizes 1,64
	$(PY) -m app bench --config depth=34,width=64,skips=annealed --plain --batch-sizes 1,64

reproduce: install
	$(PY) -m app reproduce

loadtest: install
	$(PY) -m loadtest --help

ray-test: install  ## opt-in: a real two-node Ray cluster on this machine, both ingress modes, failover, autoscaling (~8 min)
	VENV=$(VENV) bash scripts/ray-test.sh

DURATION ?= 3600
soak: install  ## opt-in: an hour (DURATION=s) of load on two workers while reloads, kills and bad uploads hit them
	$(PY) -m loadtest soak-faults --duration $(DURATION) --out loadtest/results/soak-faults-$$(date +%Y%m%d-%H%M%S)

docker-test:  ## opt-in: builds the images and runs compose for real (minutes, gigabytes)
	bash scripts/docker-test.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
