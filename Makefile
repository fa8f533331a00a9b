# optrun: `make stability_gap` (main job, offline) and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
OPTRUN := $(BIN)/optrun
REPORT := $(BIN)/optrun-report
RESULTS ?= results

.PHONY: install test stability_gap stability_gap-paper report reproduce-smoke clean help \
	sinkhorn_newton sinkhorn_newton-paper cbo cbo-paper gn_smoothness gn_smoothness-paper

help:
	@echo "make install        create $(VENV) and install optrun with its dev extras"
	@echo "make test           run the test suite"
	@echo "make stability_gap  smoke scale of the stability-gap paper + figure + claim report"
	@echo "make sinkhorn_newton  smoke scale of Sinkhorn-Newton-Sparse vs Sinkhorn + figure + claim report"
	@echo "make cbo            smoke scale of CBO vs consensus hopping, GD and Langevin + figure + claim report"
	@echo "make gn_smoothness  smoke scale of gradient-normalized-smoothness Newton vs gradient methods + report"
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

# Random costs n = 100, eta = 200 and 600, 3 seeds: Sinkhorn (capped at 20,000 iterations) and SNS with
# the paper's lambda = 2/n and with 5/n.
sinkhorn_newton: install
	$(OPTRUN) -m experiment=sinkhorn_newton algorithm=sinkhorn,sns problem.eta=200,600 seed=0,1,2 \
		results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=sinkhorn_newton algorithm.keep_per_row=5 problem.eta=200,600 seed=0,1,2 \
		results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/sinkhorn_newton --check
	@echo "figure: $(RESULTS)/sinkhorn_newton/sinkhorn_newton.png   report: $(RESULTS)/sinkhorn_newton/report.md"

# Table 1: random assignment n = 500, eta = 1200 (SNS with lambda = 2/n and 5/n); W2 and W1 between MNIST
# images (needs MNIST under data/); W1 with the paper's lambda = 15/n and N1 = 700.
sinkhorn_newton-paper: install
	$(OPTRUN) -m experiment=sinkhorn_newton scale=paper algorithm=sinkhorn,sns results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=sinkhorn_newton scale=paper algorithm.keep_per_row=5 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=sinkhorn_newton scale=paper problem=image_ot problem.dataset=mnist problem.n=784 \
		problem.p=2 algorithm=sinkhorn,sns results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=sinkhorn_newton scale=paper problem=image_ot problem.dataset=mnist problem.n=784 \
		problem.p=1 algorithm=sinkhorn results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=sinkhorn_newton scale=paper problem=image_ot problem.dataset=mnist problem.n=784 \
		problem.p=1 algorithm=sns algorithm.keep_per_row=15 algorithm.n_sinkhorn=700 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/sinkhorn_newton

# The authors' 2-D canyon: 50 runs of each method per optrun run, 3 seeds.
cbo: install
	$(OPTRUN) -m experiment=cbo algorithm=cbo,consensus_hopping,gd,langevin seed=0,1,2 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/cbo --check
	@echo "figure: $(RESULTS)/cbo/cbo.png   report: $(RESULTS)/cbo/report.md"

# The paper's setting is the 2-D one above; the extra is 10-d Rastrigin (CBO with anisotropic noise).
cbo-paper: install
	$(OPTRUN) -m experiment=cbo scale=paper algorithm=cbo,consensus_hopping,gd,langevin seed=0,1,2,3,4 \
		results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=cbo scale=paper problem=rastrigin problem.d=10 algorithm=cbo algorithm.noise=anisotropic \
		algorithm.sigma=3.0 algorithm.particles=500 algorithm.iters=1000 algorithm.init_std=3.0 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=cbo scale=paper problem=rastrigin problem.d=10 algorithm=gd,langevin results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/cbo

# LogSumExp n = m = 100 at mu = 1 and 0.25 (3 seeds) and logistic regression on breast_cancer: exact
# Hessian, weighted Gauss-Newton, B-preconditioned and plain gradient method (capped at 3000 iterations).
gn_smoothness: install
	$(OPTRUN) -m experiment=gn_smoothness problem.mu=1,0.25 algorithm.hessian=exact,weighted_gn,none seed=0,1,2 \
		results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=gn_smoothness problem.mu=1,0.25 algorithm.hessian=none algorithm.metric=identity \
		seed=0,1,2 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=gn_smoothness problem=logistic algorithm.hessian=exact,weighted_gn,none results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=gn_smoothness problem=logistic algorithm.hessian=none algorithm.metric=identity \
		results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/gn_smoothness --check
	@echo "figure: $(RESULTS)/gn_smoothness/gn_smoothness.png   report: $(RESULTS)/gn_smoothness/report.md"

# The authors' LogSumExp (n = m = 1000, mu = 1) and the p = 4 residual with the Fisher-term approximation.
gn_smoothness-paper: install
	$(OPTRUN) -m experiment=gn_smoothness scale=paper algorithm.hessian=exact,weighted_gn,none results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=gn_smoothness scale=paper algorithm.hessian=none algorithm.metric=identity \
		results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=gn_smoothness scale=paper problem=power_residual problem.n=100 problem.m=200 \
		algorithm.hessian=exact,fisher,none results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/gn_smoothness

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
