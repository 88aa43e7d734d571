PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test bench clean debian-tools bytecode kernels

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 2; }
	@echo "installing telemetry and its dependencies into $(VENV) (once; under a minute)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --quiet -e .
	@touch $(STAMP)

# pytest, hypothesis, DuckDB … for test and bench only: a first demo does not wait for them
$(TEST_STAMP): $(STAMP)
	@echo "installing the test dependencies into $(VENV) (once)"
	@$(BIN)/pip install --quiet --quiet -e '.[test]'
	@touch $(TEST_STAMP)

# The demo compiles with Numba, on first use, only the kernels it calls (cached on disk:
# about 45 s of CPU once per machine), not the whole compiled-ahead module (`make kernels`).
demo: $(STAMP) bytecode
	@$(BIN)/telemetry demo

# The kernel specializations runs use, compiled ahead into the kernel cache (kernels/build.py):
# a run then starts without importing Numba. Nothing to do when up to date; a few minutes
# on a cold cache, with progress; a failed build only warns (runs then compile with Numba).
kernels: $(STAMP)
	@$(BIN)/python -m kernels.build

# The package's bytecode, compiled ahead as a non-editable install would: where
# PYTHONDONTWRITEBYTECODE is set (as on the machines here) every run would otherwise
# compile the sources again, about 50 ms of each start-up. Up-to-date files are skipped.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q telemetry kernels

test: $(TEST_STAMP) debian-tools kernels
	$(BIN)/python -m pytest -q

# Writes benchmarks/RESULTS.md (the one generated file kept in git); --memory adds the
# minutes-long 10 M / 40 M peak-RSS run that CI leaves out.
bench: $(TEST_STAMP) bytecode kernels
	$(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-columns=min,median,mean,ops \
		--benchmark-sort=name --results benchmarks/RESULTS.md --memory

# promtool (Debian's prometheus) and chromium, which tests/test_alerts.py, test_serve.py and
# test_report.py run. Installed with apt-get where this account may (root, or sudo without a
# password); otherwise a note, and pytest skips exactly the tests that run a missing tool, naming
# it. Under CI=true (.ci/run) a tool still missing is an error here and in pytest, never a skip.
TOOLS := promtool chromium
TOOL_PACKAGES := prometheus chromium fonts-dejavu-core
debian-tools:
	@absent() { for tool in $(TOOLS); do command -v $$tool >/dev/null 2>&1 || printf ' %s' $$tool; done; }; \
	missing=$$(absent); [ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true >/dev/null 2>&1; then sudo="sudo -n"; else sudo=no; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then why="no apt-get here: install them with your package manager"; \
	elif [ "$$sudo" = no ]; then why="apt-get needs root or sudo without a password"; \
	else \
	  echo "installing$$missing with apt-get (packages $(TOOL_PACKAGES))"; \
	  $$sudo apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $(TOOL_PACKAGES) >/dev/null; \
	  missing=$$(absent); [ -n "$$missing" ] || exit 0; why="apt-get did not install them"; \
	fi; \
	case "$(CI)" in true|1|yes) echo "error:$$missing missing ($$why), and CI=true runs every test" >&2; exit 1;; esac; \
	echo "note:$$missing not installed ($$why): the tests that run them are skipped; README.md says what a full run needs"

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks

# atheris harnesses of the text readers and sniffers (fuzz/): FUZZ_SECONDS in total, split evenly
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz: $(STAMP)
	@$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install --quiet atheris
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python fuzz/run.py
