# optrun: `make stability_gap` (main job, offline) and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
OPTRUN := $(BIN)/optrun
REPORT := $(BIN)/optrun-report
RESULTS ?= results

.PHONY: install test stability_gap stability_gap-paper report reproduce-smoke clean help \
	ghosts_softmax ghosts_softmax-spike ghosts_softmax-rsweep ghosts_softmax-temperature ghosts_softmax-paper

help:
	@echo "make install        create $(VENV) and install optrun with its dev extras"
	@echo "make test           run the test suite"
	@echo "make stability_gap  smoke scale of the stability-gap paper + figure + claim report"
	@echo "make ghosts_softmax smoke scale of Ghosts of Softmax (LR spike, r-sweep, temperature) + claim report"
	@echo "make report         claim reports and figures for everything under $(RESULTS)/, and $(RESULTS)/REPORT.md"
	@echo "make reproduce-smoke  every experiment's smoke target, then $(RESULTS)/REPORT.md (state of all 30 papers)"
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

# Ghosts of Softmax: LR spike (plain / clipped / rho-controller, 3 seeds), r-sweep over six architectures,
# temperature test; each sub-experiment is its own target (about 1-2 min each on 2 cores).
GHOSTS = $(OPTRUN) -m experiment=ghosts_softmax results_dir=$(RESULTS)
GHOSTS_ARCHS = linear,mlp,cnn,mlp_ln,cnn_bn,transformer
ghosts_softmax: ghosts_softmax-spike ghosts_softmax-rsweep ghosts_softmax-temperature
	$(REPORT) $(RESULTS)/ghosts_softmax --check
	@echo "figures: $(RESULTS)/ghosts_softmax/ghosts_softmax_*.png   report: $(RESULTS)/ghosts_softmax/report.md"

ghosts_softmax-spike: install
	$(GHOSTS) seed=0,1,2 optimizer.lr=1e-4,1e-3,1e-2 trainer.clip_grad_norm=null,1.0
	$(GHOSTS) seed=0,1,2 optimizer.lr=1e-4,1e-3,1e-2 hooks.radius.controller=true
	$(GHOSTS) seed=0,1,2 optimizer.lr=1e-2 schedule.factor=10000 schedule.length=1 trainer.clip_grad_norm=null,1.0
	$(GHOSTS) seed=0,1,2 optimizer.lr=1e-2 schedule.factor=10000 schedule.length=1 hooks.radius.controller=true

ghosts_softmax-rsweep: install
	$(GHOSTS) ghosts_softmax=rsweep seed=0,1 model=$(GHOSTS_ARCHS)

ghosts_softmax-temperature: install
	$(GHOSTS) ghosts_softmax=temperature seed=0,1,2 trainer.temperature=0.25,0.5,1,2,4,8

# The paper's settings: 5 seeds everywhere, 20 random directions; ResNet-18 on CIFAR-10 (needs the data
# under data/ or dataset.download=true, and a GPU): rho-set controller at r in {0.5,1,2,4} vs fixed LRs.
ghosts_softmax-paper: install
	$(GHOSTS) scale=paper seed=0,1,2,3,4 optimizer.lr=1e-4,1e-3,1e-2 trainer.clip_grad_norm=null,1.0
	$(GHOSTS) scale=paper seed=0,1,2,3,4 optimizer.lr=1e-4,1e-3,1e-2 hooks.radius.controller=true
	$(GHOSTS) scale=paper seed=0,1,2,3,4 optimizer.lr=1e-3,1e-2 schedule.factor=10000 schedule.length=1 \
		trainer.clip_grad_norm=null,1.0
	$(GHOSTS) scale=paper seed=0,1,2,3,4 optimizer.lr=1e-3,1e-2 schedule.factor=10000 schedule.length=1 \
		hooks.radius.controller=true
	$(GHOSTS) scale=paper ghosts_softmax=rsweep seed=0,1,2,3,4 model=$(GHOSTS_ARCHS)
	$(GHOSTS) scale=paper ghosts_softmax=temperature seed=0,1,2,3,4 trainer.temperature=0.25,0.5,1,2,4,8
	$(GHOSTS) scale=paper ghosts_softmax=resnet seed=0,1,2,3,4 hooks.radius.target_r=0.5,1,2,4
	$(GHOSTS) scale=paper ghosts_softmax=resnet seed=0,1,2,3,4 hooks.radius.controller=false \
		optimizer.lr=0.01,0.03,0.1,0.3
	$(REPORT) $(RESULTS)/ghosts_softmax

report: install
	$(REPORT) $(RESULTS)

# Smoke targets: every conf/experiment/<id>.yaml whose id is also a target of this Makefile.
EXPERIMENTS := $(basename $(notdir $(wildcard conf/experiment/*.yaml)))
SMOKE_TARGETS = $(sort $(filter $(EXPERIMENTS),$(shell sed -n 's/^\([A-Za-z0-9_]*\):.*/\1/p' $(firstword $(MAKEFILE_LIST)))))

# Runs them all (going on past failures), then writes $(RESULTS)/REPORT.md; exits 1 if one failed.
reproduce-smoke: install
	@failed=""; for t in $(SMOKE_TARGETS); do echo "== make $$t"; \
		$(MAKE) --no-print-directory $$t || failed="$$failed $$t"; done; \
	mkdir -p $(RESULTS); $(REPORT) $(RESULTS) --failed-targets "$$failed" > $(RESULTS)/.reproduce-smoke.log 2>&1 \
		|| { cat $(RESULTS)/.reproduce-smoke.log; exit 1; }; \
	echo "overview: $(RESULTS)/REPORT.md"; \
	if [ -n "$$failed" ]; then echo "smoke targets that failed:$$failed"; exit 1; fi

clean:
	find $(RESULTS) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache
