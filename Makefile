# Two set-up commands: `make demo` (install + run the main job) and `make test` (install + run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 is the CPU build available locally; a bare `torch` may pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test docs docs-outputs mutants clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[full,test,docs]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/cnnlab train

# The browser tests drive Debian's Chromium at /usr/bin/chromium (Playwright's own browser
# download is not reachable): installed here when missing and we are root. Without it they
# skip, and the last lines say "browser tests: 0 ran, N skipped"; under CI=true that fails.
test: install
	@if [ ! -e /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make test: installing chromium for the browser tests (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	        || echo "make test: could not install chromium; the browser tests will be skipped" >&2; \
	fi
	$(PY) -m pytest -q

# The docs site (mkdocs-material, offline) into site/: executes the tutorials whose source
# changed (tools/docs_tutorials.py), then builds with --strict (a warning fails it).
docs: install
	$(PY) tools/docs_tutorials.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Rerun every marked command in README.md and docs/ (slow ones included) and rewrite its output.
docs-outputs: install
	$(PY) tools/docs_outputs.py --slow

# Mutation testing (slow; not in CI): the modules and tests listed under [tool.mutmut] in
# pyproject.toml, at low priority. MUTANTS="cnnlab.analysis*" limits the run to one module.
# One OpenMP thread: mutmut forks a worker per mutant, and a child forked from a process
# whose torch thread pool is up deadlocks in its first parallel op (every such mutant then
# reads as a timeout).
mutants: install
	$(PY) -m pip install -q -e ".[mutants]"
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 $(VENV)/bin/mutmut run $(MUTANTS)
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) runs .pytest_cache site mutants
