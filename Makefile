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

# The browser tests drive Debian's chromium (Playwright never downloads a browser of its own),
# the deliverability tests run Debian's spamassassin, and the PostgreSQL tests start a server
# of their own from Debian's postgresql-15: each installed here when missing.
test: $(STAMP)
	p=$$([ -x /usr/bin/chromium ] || echo chromium; [ -x /usr/bin/spamassassin ] || echo spamassassin; \
		ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || echo postgresql-15); \
	[ -z "$$p" ] || { s=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$s apt-get update && $$s env DEBIAN_FRONTEND=noninteractive apt-get install -y $$p; }
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) automator.db outbox
