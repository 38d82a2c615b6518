# mltag: every target does its own set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
MLTAG  := $(VENV)/bin/mltag
MODELS ?= all
DEMO_MODELS ?= clip,wd14,florence2
export HF_HUB_DISABLE_TELEMETRY := 1
# Packages that are not on PyPI (RAM++'s `ram`) are pinned VCS references in the locks; where
# ../shared is beside the checkout (developers, CI: no GitHub access), its wheel stands in for the
# reference (orchestrator/models/envbuild.py, local_substitutes). Set MLTAG_FIND_LINKS to use another.
MLTAG_FIND_LINKS ?= $(wildcard ../shared/upstream/recognize-anything)
export MLTAG_FIND_LINKS

.PHONY: setup setup-envs test test-fast check docs wheel-check demo health lint lock bench clean

# make test runs the suite in TEST_WORKERS processes (pytest-xdist), a test file per worker at a time; each
# runner the tests start computes on one thread (tests/conftest.py). Four workers on 2 cores: one waiting on a
# subprocess leaves its core to another (warm pytest here: 414 s with three, 383 s with four, 400 s with five;
# CONTRIBUTING.md "Test time"). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 4

# Optional extras of the orchestrator's venv: EXTRAS=ray adds Ray for `--cluster` (make test does).
EXTRAS ?=

# The orchestrator's venv (typer, rich, msgpack, psutil, uv, ...). No model library here.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# compileall: the CLI starts ~0.1 s faster where PYTHONDONTWRITEBYTECODE is set (containers, CI),
# which leaves an editable install's own modules compiled again at every start.
setup: $(VENV)/.installed
	@$(VENV)/bin/python -m compileall -q orchestrator runners schemas
	@if [ -n "$(EXTRAS)" ] && { [ ! -f $(VENV)/.installed-$(EXTRAS) ] || [ pyproject.toml -nt $(VENV)/.installed-$(EXTRAS) ]; }; then \
		echo "$(VENV): pip install -e '.[dev,$(EXTRAS)]'"; \
		$(VENV)/bin/pip install -q -e '.[dev,$(EXTRAS)]' && touch $(VENV)/.installed-$(EXTRAS); \
	fi

# One venv per env under .cache/venvs (uv, deduplicated, locked). MODELS=a,b builds a subset.
setup-envs: setup
	$(MLTAG) setup-envs --models $(MODELS)

# The test suite: builds the envs and tiny random models it needs, offline. The ray extra is
# installed so that the cluster tests (tests/integration/test_cluster.py) run too.
test: EXTRAS = ray
# The `wheel` tests (the installed wheel) are left to wheel-check, which runs them on the wheel it built.
test: setup
	$(MLTAG) setup-envs --models $(DEMO_MODELS)
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q -m "not wheel" -n $(TEST_WORKERS) --dist loadfile

# mltag as users install it: the sdist and wheel built and checked, the wheel installed in a fresh venv
# outside the checkout, an env built and a photo analysed from there (.ci/wheel-check; ~1 min warm).
wheel-check: setup
	.ci/wheel-check

# The contributors' lane: no model env, no tiny model, no browser (the `adapter` and `browser`
# marks are the slow part); under a minute.
test-fast: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q -m "not adapter and not browser and not wheel"

# The main job on sample photos: real weights when the Hub is reachable, else tiny random models.
demo: setup
	$(MLTAG) setup-envs --models $(DEMO_MODELS)
	$(VENV)/bin/python -m tests.demo --models $(DEMO_MODELS) samples

health: setup
	$(MLTAG) health

# Static checks, run by .ci/run before the tests: formatting (ruff format), lint, the import contracts,
# types ([tool.mypy]). `.venv/bin/ruff format orchestrator runners schemas tests bench docs/scripts` fixes the first.
check: setup
	$(VENV)/bin/ruff format --check orchestrator runners schemas tests bench docs/scripts
	$(VENV)/bin/ruff check orchestrator runners schemas tests bench docs/scripts
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

lint: check

# The documentation site (mkdocs.yml, docs/) into site/ (git-ignored), --strict: a broken link, a missing
# page or snippet, a generated page that fails (the model table, the CLI reference) fails the build.
# CI runs it after make check. `.venv/bin/mkdocs serve` previews it while editing.
docs: EXTRAS = docs
docs: setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict --site-dir site

# Re-compile the env locks from envs/requirements/*.in (maintainers, needs network).
lock: setup
	for f in envs/requirements/*.in; do $(MLTAG) lock $$(basename $$f .in); done

# Benchmarks print figures (not timed tests). decode/throughput build a real-size random WD14
# once (offline, ~1 min, cached under .cache/bench/); the modern env builds it.
bench: EXTRAS = ray
bench: setup
	$(MLTAG) setup-envs --models wd14,clip
	$(VENV)/bin/python bench/transport.py
	$(VENV)/bin/python bench/decode.py
	$(VENV)/bin/python bench/throughput.py
	$(VENV)/bin/python bench/scale.py
	$(VENV)/bin/python bench/cluster.py
	$(VENV)/bin/python bench/ranking.py
	$(VENV)/bin/python bench/serve.py
	$(VENV)/bin/python bench/report.py

clean:
	rm -rf .cache $(VENV)
