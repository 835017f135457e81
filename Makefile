# Every target builds and reuses .venv itself; nobody has to activate anything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF_VERSION := 1.75.0
PROTO_FILES := $(sort $(wildcard protos/taskyard/v1/*.proto))
STUBS_DIR := shared
# The wire contract as released: `make lint` fails on any change that breaks
# it. It changes only with a deliberate new major version (taskyard.v2):
# then add the new package and rebuild it with `make protos-baseline`.
BASELINE := protos/baseline/taskyard-v1.binpb

.PHONY: all run test lint protos protos-baseline protos-check bench fuzz clean

all: lint test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Taskyard needs Python 3.11 or newer; set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

run: $(STAMP)
	$(BIN)/taskyard demo --data-dir .taskyard

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	npx --yes @bufbuild/buf@$(BUF_VERSION) lint protos
	npx --yes @bufbuild/buf@$(BUF_VERSION) breaking protos --against $(BASELINE)

# protoc from grpcio-tools (pinned in pyproject.toml) with mypy-protobuf for .pyi stubs.
define generate
	$(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=$(1) --grpc_python_out=$(1) \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=$(1) \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=$(1) \
		$(PROTO_FILES)
endef

protos: $(STAMP)
	rm -f $(STUBS_DIR)/taskyard/v1/*_pb2*.py $(STUBS_DIR)/taskyard/v1/*_pb2*.pyi
	$(call generate,$(STUBS_DIR))

protos-baseline:
	npx --yes @bufbuild/buf@$(BUF_VERSION) build protos -o $(BASELINE)

protos-check: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(call generate,$$tmp) && \
	diff -r --exclude=__init__.py --exclude=__pycache__ --exclude=py.typed \
		"$$tmp/taskyard/v1" $(STUBS_DIR)/taskyard/v1 \
		&& echo "generated stubs are up to date" \
		|| { echo "stubs are stale: run 'make protos' and commit the result" >&2; exit 1; }

# The benchmark scripts (support.py and bare_server.py are their helpers).
BENCHMARKS := configure matching latency throughput upload faults logs web peers cli sandbox ha fairness pipelines

bench: $(STAMP)
	@for b in $(BENCHMARKS); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

# The fuzz suite at length: about 100,000 messages (make test runs a short share).
FUZZ_EXAMPLES ?= 80000

fuzz: $(STAMP)
	TASKYARD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) TASKYARD_FUZZ_REPORT=fuzz-report.txt \
		$(BIN)/pytest -q -s -p no:cacheprovider tests/fuzz

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
