# optrun: `make stability_gap` (main job, offline) and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
OPTRUN := $(BIN)/optrun
REPORT := $(BIN)/optrun-report
RESULTS ?= results

.PHONY: install test stability_gap stability_gap-paper saddle_to_saddle saddle_to_saddle-paper curl_descent \
	curl_descent-paper langevin_swa langevin_swa-paper discretisation_drift discretisation_drift-paper report \
	reproduce-smoke clean help

help:
	@echo "make install        create $(VENV) and install optrun with its dev extras"
	@echo "make test           run the test suite"
	@echo "make stability_gap  smoke scale of the stability-gap paper + figure + claim report"
	@echo "make saddle_to_saddle  smoke scale of the saddle-to-saddle paper (linear, conv, ReLU) + claim report"
	@echo "make curl_descent   smoke scale of the curl-descent paper (phase diagram, speed-up) + claim report"
	@echo "make langevin_swa   smoke scale of the Langevin + iterate-averaging paper (k* = 3, 4) + claim report"
	@echo "make discretisation_drift  smoke scale of the discretisation-drift work (flows, DAL vs fixed lr) + claims"
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

# Linear 10-50-10 net (eps sweep incl. eps = 1), linear conv (4 kernels), univariate ReLU (3 kinks); 2 seeds.
saddle_to_saddle: install
	$(OPTRUN) -m experiment=saddle_to_saddle model.init_scale=1,1e-3,1e-4,1e-6 seed=0,1 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=saddle_to_saddle dataset=conv_teacher model=linear_conv optimizer.lr=0.0025 \
		trainer.steps=4000 model.init_scale=1e-3,1e-4,1e-6 seed=0,1 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=saddle_to_saddle dataset=kink_teacher model.activation=relu model.bias=true \
		model.hidden=200 model.init_scale=1e-10 optimizer.lr=0.1 trainer.steps=4000 seed=0,1 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/saddle_to_saddle --check

saddle_to_saddle-paper: install
	$(OPTRUN) -m experiment=saddle_to_saddle scale=paper model.init_scale=1,1e-2,1e-3,1e-4,1e-5,1e-6 \
		seed=0,1,2,3,4 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/saddle_to_saddle

# Linear student-teacher nets: contracting 100->10 with 0/1/5/25/50 flipped inputs, a phase diagram over
# expansion ratio x flipped fraction (inputs 50 or 20, hidden 50 or 199), and the tanh 100->10
# speed-up with one flipped hidden neuron (3 seeds, against GD).
curl_descent: install
	$(OPTRUN) -m experiment=curl_descent 'optimizer.flipped_fraction=[0,0],[0.01,0],[0.05,0],[0.25,0],[0.5,0]' \
		results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=curl_descent dataset.d_in=50,20 model.hidden=50,199 \
		'optimizer.flipped_fraction=[0,0],[0.25,0],[0.5,0],[0.75,0]' results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=curl_descent model.activation=tanh model.output_activation=tanh model.init_scale=2 \
		dataset.n_train=2000 trainer.steps=1000 'optimizer.flipped=[0,0],[0,1]' seed=0,1,2 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/curl_descent --check

curl_descent-paper: install
	$(OPTRUN) -m experiment=curl_descent scale=paper dataset.d_in=20 model.hidden=199 \
		'optimizer.flipped=[0,0],[4,0],[8,0],[12,0],[16,0],[20,0]' seed=0,1,2,3,4,5,6,7,8,9 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=curl_descent scale=paper model.activation=tanh model.output_activation=tanh \
		model.init_scale=2 dataset.n_train=2000 'optimizer.flipped=[0,0],[0,1]' seed=0,1,2,3,4,5,6,7,8,9 \
		results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/curl_descent

# Spherical Langevin on single-index models: k* = 3 (d = 30, n = 9000) and k* = 4 (d = 20, n = 4000), 2 seeds.
langevin_swa: install
	$(OPTRUN) -m experiment=langevin_swa seed=0,1 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=langevin_swa dataset.k=4 dataset.dim=20 dataset.n_train=4000 seed=0,1 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/langevin_swa --check

langevin_swa-paper: install
	$(OPTRUN) -m experiment=langevin_swa scale=paper dataset.k=3,4 seed=0,1,2 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/langevin_swa

# Flows vs GD on a quadratic (h lambda = 0.5, 1.5, 2.2) and a Rosenbrock toy; full-batch GD on a digits MLP
# at fixed lr 0.5 .. 3.5 against the drift-adjusted lr (DAL, p = 1 and 0.5).
discretisation_drift: install
	$(OPTRUN) -m experiment=discretisation_drift trainer=flow_check 'hooks=[]' trainer.h=0.5,1.5,2.2 results_dir=$(RESULTS)
	$(OPTRUN) experiment=discretisation_drift trainer=flow_check 'hooks=[]' trainer.landscape=rosenbrock \
		'trainer.start=[-1,1.5]' trainer.h=0.015 trainer.steps=60 trainer.substeps=20 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=discretisation_drift optimizer.lr=0.5,1,2,3.5 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=discretisation_drift optimizer=dal optimizer.p=1,0.5 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/discretisation_drift --check

discretisation_drift-paper: install
	$(OPTRUN) -m experiment=discretisation_drift scale=paper optimizer.lr=0.05,0.1,0.2,0.5 seed=0,1,2 \
		results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=discretisation_drift scale=paper optimizer=dal optimizer.p=1,0.5 seed=0,1,2 \
		results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/discretisation_drift

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
