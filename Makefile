# optrun: `make stability_gap` (main job, offline) and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
OPTRUN := $(BIN)/optrun
REPORT := $(BIN)/optrun-report
RESULTS ?= results

# Every folder experiments/<id>/ with a studies.yaml is an experiment: `make <id>` runs its smoke scale
# (every study and arm, then the report and claims), `make <id>-paper` its paper scale (GPU/cluster;
# add ARGS='hydra/launcher=slurm hydra.launcher.partition=...'). No recipe here names a paper.
EXPERIMENTS := $(sort $(patsubst experiments/%/studies.yaml,%,$(wildcard experiments/*/studies.yaml)))
PAPER_TARGETS := $(addsuffix -paper,$(EXPERIMENTS))
export OPTRUN_EXPERIMENTS := $(CURDIR)/experiments

.PHONY: install test lint readme report reproduce-smoke clean help bench bench-smoke bench-all \
	$(EXPERIMENTS) $(PAPER_TARGETS)

help:
	@echo "make install        create $(VENV) and install optrun with its dev extras"
	@echo "make test           run the test suite (and make lint)"
	@echo "make <id>           smoke scale of one paper: every study and arm, figures, claims, its card refreshed"
	@echo "make <id>-paper     the paper's own setting (GPU / cluster; ARGS='hydra/launcher=slurm ...')"
	@echo "                    <id>: $(EXPERIMENTS)"
	@echo "make report         claim reports and figures for everything under $(RESULTS)/, and $(RESULTS)/REPORT.md"
	@echo "make reproduce-smoke  every experiment's smoke scale, then $(RESULTS)/REPORT.md (state of all 30 papers)"
	@echo "make readme         regenerate README.md's table of papers from the cards"
	@echo "make lint           ruff check"
	@echo "make bench          speed benchmarks (~9 min; target 10) -> $(RESULTS)/bench/BENCH.md (BENCH_ARGS='loop --quick')"
	@echo "make bench-smoke    wall time of every experiment's smoke target, added to the same BENCH.md"
	@echo "make clean          remove $(RESULTS)/ run folders and caches (keeps $(VENV))"

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# NO_INSTALL=1 uses an existing $(VENV) as it is (e.g. a shared one: make X VENV=/path/.venv NO_INSTALL=1)
install: $(if $(NO_INSTALL),,$(STAMP))

# PYTEST_WORKERS=1 runs the suite in one process; the default splits it over two (pytest-xdist)
PYTEST_WORKERS ?= 2
test: install lint
	$(BIN)/python -m pytest $(if $(filter-out 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS))

$(EXPERIMENTS): install
	$(OPTRUN) reproduce $@ results_dir=$(RESULTS) $(ARGS)

$(PAPER_TARGETS): install
	$(OPTRUN) reproduce $(@:-paper=) scale=paper results_dir=$(RESULTS) $(ARGS)

lint: install
	$(BIN)/ruff check .

readme: install
	$(REPORT) --readme README.md

report: install
	$(REPORT) $(RESULTS)

# Runs them all (going on past failures), then writes $(RESULTS)/REPORT.md; exits 1 if one failed.
reproduce-smoke: install
	@failed=""; for t in $(EXPERIMENTS); do echo "== make $$t"; \
		$(MAKE) --no-print-directory $$t || failed="$$failed $$t"; done; \
	mkdir -p $(RESULTS); $(REPORT) $(RESULTS) --failed-targets "$$failed" > $(RESULTS)/.reproduce-smoke.log 2>&1 \
		|| { cat $(RESULTS)/.reproduce-smoke.log; exit 1; }; \
	echo "overview: $(RESULTS)/REPORT.md"; \
	if [ -n "$$failed" ]; then echo "smoke targets that failed:$$failed"; exit 1; fi

# Speed benchmarks (bench/bench_*.py, each in its own process): ratios against hand-written loops,
# Avalanche and the hooks' references, smoke wall times. Installs the bench extra (avalanche-lib); if
# that fails, the Avalanche row is skipped with a note.
BENCH_STAMP := $(VENV)/.bench.stamp
$(BENCH_STAMP): $(STAMP)
	-$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)
bench: $(if $(NO_INSTALL),,$(BENCH_STAMP))
	$(BIN)/python -m bench --out $(RESULTS)/bench $(BENCH_ARGS)

# The smoke suite (every experiment's `make <id>`, ~1 min each): its rows join the same BENCH.md.
bench-smoke: $(if $(NO_INSTALL),,$(BENCH_STAMP))
	$(BIN)/python -m bench smoke --timeout 3600 --out $(RESULTS)/bench $(BENCH_ARGS)

bench-all: bench bench-smoke

clean:
	find $(RESULTS) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache
