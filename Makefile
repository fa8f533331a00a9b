# optrun: `make stability_gap` (main job, offline) and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
OPTRUN := $(BIN)/optrun
REPORT := $(BIN)/optrun-report
RESULTS ?= results

.PHONY: install test stability_gap stability_gap-paper sgd_stability sgd_stability-paper report clean help

help:
	@echo "make install        create $(VENV) and install optrun with its dev extras"
	@echo "make test           run the test suite"
	@echo "make stability_gap  smoke scale of the stability-gap paper + figure + claim report"
	@echo "make sgd_stability  smoke scale of the SGD dynamical-stability paper (+ edge of stability) + report"
	@echo "make report         claim reports and figures for everything under $(RESULTS)/"
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

# Diagonal linear nets (3 lr x SGD/GD x 2 seeds), two-layer ReLU nets (2 lr x SGD/GD x 3 seeds),
# edge of stability (full-batch GD, 2 lr).
sgd_stability: install
	$(OPTRUN) -m experiment=sgd_stability sgd_stability=dln optimizer.lr=0.01,0.02,0.04 \
		trainer.batch_size=1,null seed=0,1 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=sgd_stability sgd_stability=relu optimizer.lr=0.02,0.07 \
		trainer.batch_size=1,null seed=0,1,2 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=sgd_stability sgd_stability=eos optimizer.lr=0.7,1.0 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/sgd_stability --check
	@echo "figures: $(RESULTS)/sgd_stability/{sgd_stability,edge_of_stability}.png   report: $(RESULTS)/sgd_stability/report.md"

# The paper-scale settings of conf/scale_preset/sgd_stability/paper/ (GPU).
sgd_stability-paper: install
	$(OPTRUN) -m experiment=sgd_stability scale=paper sgd_stability=dln optimizer.lr=0.004,0.016,0.032,0.126 \
		trainer.batch_size=1,null seed=0,1 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=sgd_stability scale=paper sgd_stability=eos optimizer.lr=0.05,0.1,0.2 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/sgd_stability

report: install
	$(REPORT) $(RESULTS)

clean:
	find $(RESULTS) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache
