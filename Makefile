# optrun: `make stability_gap` (main job, offline) and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
OPTRUN := $(BIN)/optrun
REPORT := $(BIN)/optrun-report
RESULTS ?= results

.PHONY: install test stability_gap stability_gap-paper report bench clean help

help:
	@echo "make install        create $(VENV) and install optrun with its dev extras"
	@echo "make test           run the test suite"
	@echo "make stability_gap  smoke scale of the stability-gap paper + figure + claim report"
	@echo "make report         claim reports and figures for everything under $(RESULTS)/"
	@echo "make bench          speed benchmarks -> $(RESULTS)/bench/BENCH.md (BENCH_ARGS='loop --quick' ...)"
	@echo "make clean          remove $(RESULTS)/ run folders and caches (keeps $(VENV))"

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# NO_INSTALL=1 uses an existing $(VENV) as it is (e.g. a shared one: make X VENV=/path/.venv NO_INSTALL=1)
install: $(if $(NO_INSTALL),,$(STAMP))

test: install
	$(BIN)/python -m pytest

# Split-digits (5 tasks) and Rotated-digits (3 tasks), ER and fine-tuning, 3 seeds each.
stability_gap: install
	$(OPTRUN) -m experiment=stability_gap seed=0,1,2 trainer.method=er,finetune results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=stability_gap dataset=rotated_digits trainer.iters_per_task=200 \
		seed=0,1,2 trainer.method=er,finetune results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/stability_gap --check
	@echo "figure: $(RESULTS)/stability_gap/stability_gap.png   report: $(RESULTS)/stability_gap/report.md"

# The paper's Split-MNIST setting (needs MNIST under data/ or dataset.base.download=true, and a GPU).
stability_gap-paper: install
	$(OPTRUN) -m experiment=stability_gap scale=paper seed=0,1,2,3,4 trainer.method=er,finetune results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/stability_gap

report: install
	$(REPORT) $(RESULTS)

# Speed benchmarks (bench/bench_*.py, each in its own process): ratios against hand-written loops,
# Avalanche and the hooks' references, smoke wall times. Installs the bench extra (avalanche-lib); if
# that fails, the Avalanche row is skipped with a note.
BENCH_STAMP := $(VENV)/.bench.stamp
$(BENCH_STAMP): $(STAMP)
	-$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(if $(NO_INSTALL),,$(BENCH_STAMP))
	$(BIN)/python -m bench --out $(RESULTS)/bench $(BENCH_ARGS)

clean:
	find $(RESULTS) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache
