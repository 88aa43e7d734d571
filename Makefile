PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean debian-tools bytecode kernels

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP) bytecode kernels
	$(BIN)/telemetry demo

# The kernel specializations runs use, compiled ahead into the kernel cache (kernels/build.py):
# a run then starts without importing Numba. Nothing to do when up to date; about a minute
# on a cold cache; a failed build only warns (runs then compile with Numba, as before).
kernels: $(STAMP)
	$(BIN)/python -m kernels.build

# The package's bytecode, compiled ahead as a non-editable install would: where
# PYTHONDONTWRITEBYTECODE is set (as on the machines here) every run would otherwise
# compile the sources again, about 50 ms of each start-up. Up-to-date files are skipped.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q telemetry kernels

test: $(STAMP) debian-tools kernels
	$(BIN)/python -m pytest -q

# Writes benchmarks/RESULTS.md (the one generated file kept in git); --memory adds the
# minutes-long 10 M / 40 M peak-RSS run that CI leaves out.
bench: $(STAMP) bytecode kernels
	$(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-columns=min,median,mean,ops \
		--benchmark-sort=name --results benchmarks/RESULTS.md --memory

# promtool (Debian prometheus) and chromium for tests/test_serve.py, test_alerts.py, test_report.py
debian-tools:
	@command -v promtool >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus chromium fonts-dejavu-core; }

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks

# atheris harnesses of the text readers and sniffers (fuzz/): FUZZ_SECONDS in total, split evenly
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz: $(STAMP)
	@$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install --quiet atheris
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python fuzz/run.py
