# rawinfer: `make run` sets up and starts the service; `make test` sets up and runs the tests.
.PHONY: setup run stop lint test test-unit bench clean fuzz load soak faults cluster-up cluster-down cluster-bench

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/run.sh

stop:
	@bash scripts/stop.sh

# The linter (line length 100) and the layer contract (pyproject.toml; docs/architecture.md).
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

test: lint
	RAY_AUTH_MODE=disabled .venv/bin/python -m pytest -q $(PYTEST_ARGS)

test-unit: lint
	.venv/bin/python -m pytest -q -m "not integration" $(PYTEST_ARGS)

bench: setup
	cd bench && ../.venv/bin/python embeddings.py --serve default
	cd bench && ../.venv/bin/python embeddings.py --serve tuned
	cd bench && ../.venv/bin/python transcribe.py
	cd bench && ../.venv/bin/python chat.py
	cd bench && ../.venv/bin/python video.py

# Reliability (issue #12): a longer fuzz run, load, a 30-minute soak, and fault injection.
FUZZ_EXAMPLES ?= 300
fuzz: setup
	RAY_AUTH_MODE=disabled RAWINFER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) .venv/bin/python -m pytest -q tests/integration/test_fuzz.py $(PYTEST_ARGS)

load: setup
	RAY_AUTH_MODE=disabled .venv/bin/python bench/load.py $(LOAD_ARGS)

soak: setup
	RAY_AUTH_MODE=disabled .venv/bin/python bench/load.py --soak $(LOAD_ARGS)

faults: setup
	RAY_AUTH_MODE=disabled .venv/bin/python bench/faults.py $(FAULTS_ARGS)

# A multi-node Ray cluster on this machine, the service placed by node kind (docs/deploy.md).
cluster-up: setup
	@bash scripts/cluster.sh up

cluster-down:
	@bash scripts/cluster.sh down

cluster-bench: setup
	.venv/bin/python bench/cluster.py $(CLUSTER_ARGS)

clean: stop
	rm -rf .rawinfer
