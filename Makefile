# rawinfer: `make run` sets up and starts the service; `make test` sets up and runs the tests.
.PHONY: setup run stop test test-unit bench clean

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/run.sh

stop:
	@bash scripts/stop.sh

test: setup
	RAY_AUTH_MODE=disabled .venv/bin/python -m pytest -q $(PYTEST_ARGS)

test-unit: setup
	.venv/bin/python -m pytest -q -m "not integration" $(PYTEST_ARGS)

bench: setup
	cd bench && ../.venv/bin/python embeddings.py --serve default
	cd bench && ../.venv/bin/python embeddings.py --serve tuned
	cd bench && ../.venv/bin/python transcribe.py
	cd bench && ../.venv/bin/python chat.py
	cd bench && ../.venv/bin/python video.py

clean: stop
	rm -rf .rawinfer
