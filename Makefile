# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# The browser tests drive Debian's chromium: installed here when missing (Playwright never
# downloads a browser of its own).
test: $(STAMP)
	[ -x /usr/bin/chromium ] || { s=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$s apt-get update && $$s env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) automator.db outbox
