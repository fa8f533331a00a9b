# optrun: `make stability_gap` (main job, offline) and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
OPTRUN := $(BIN)/optrun
REPORT := $(BIN)/optrun-report
RESULTS ?= results

.PHONY: install test stability_gap stability_gap-paper report reproduce-smoke clean help bench bench-smoke bench-all \
	ghosts_softmax ghosts_softmax-spike ghosts_softmax-rsweep ghosts_softmax-temperature ghosts_softmax-paper \
	wsd wsd-paper drop_muon drop_muon-paper mfac mfac-paper sinkhorn_newton sinkhorn_newton-paper \
	cbo cbo-paper gn_smoothness gn_smoothness-paper sgd_stability sgd_stability-paper \
	saddle_to_saddle saddle_to_saddle-paper curl_descent curl_descent-paper langevin_swa langevin_swa-paper \
	discretisation_drift discretisation_drift-paper

help:
	@echo "make install        create $(VENV) and install optrun with its dev extras"
	@echo "make test           run the test suite"
	@echo "make stability_gap  smoke scale of the stability-gap paper + figure + claim report"
	@echo "make sinkhorn_newton  smoke scale of Sinkhorn-Newton-Sparse vs Sinkhorn + figure + claim report"
	@echo "make cbo            smoke scale of CBO vs consensus hopping, GD and Langevin + figure + claim report"
	@echo "make gn_smoothness  smoke scale of gradient-normalized-smoothness Newton vs gradient methods + report"
	@echo "make ghosts_softmax smoke scale of Ghosts of Softmax (LR spike, r-sweep, temperature) + claim report"
	@echo "make saddle_to_saddle  smoke scale of the saddle-to-saddle paper (linear, conv, ReLU) + claim report"
	@echo "make curl_descent   smoke scale of the curl-descent paper (phase diagram, speed-up) + claim report"
	@echo "make langevin_swa   smoke scale of the Langevin + iterate-averaging paper (k* = 3, 4) + claim report"
	@echo "make discretisation_drift  smoke scale of the discretisation-drift work (flows, DAL vs fixed lr) + claims"
	@echo "make report         claim reports and figures for everything under $(RESULTS)/, and $(RESULTS)/REPORT.md"
	@echo "make reproduce-smoke  every experiment's smoke target, then $(RESULTS)/REPORT.md (state of all 30 papers)"
	@echo "make wsd            smoke scale of the WSD / river-valley paper + figure + claim report"
	@echo "make drop_muon      smoke scale of the Drop-Muon paper + figure + claim report"
	@echo "make mfac           smoke scale of the M-FAC paper (pruning + optimizer) + figure + claim report"
	@echo "make bench          speed benchmarks (<= 10 min) -> $(RESULTS)/bench/BENCH.md (BENCH_ARGS='loop --quick')"
	@echo "make bench-smoke    wall time of every experiment's smoke target, added to the same BENCH.md"
	@echo "make sgd_stability  smoke scale of the SGD dynamical-stability paper (+ edge of stability) + report"
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

# Bigram toy: WSD (branches forked at 2k/4k/8k), WSD-S, cyclic cosine, cosine tuned to each budget; 3 seeds.
wsd: install
	$(OPTRUN) -m experiment=wsd seed=0,1,2 schedule=wsd,wsd_s,cyclic_cosine results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=wsd seed=0,1,2 schedule=cyclic_cosine 'schedule.budgets=[2000],[4000],[8000]' \
		results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/wsd --check
	@echo "figure: $(RESULTS)/wsd/wsd.png   report: $(RESULTS)/wsd/report.md"
# The scaled-down LLaMA-style stand-in (GPU): transformer LM on bigram Markov text, AdamW, 5k/10k/20k.
WSD_PAPER := experiment=wsd scale=paper model=transformer_lm optimizer=adamw '~optimizer.momentum'
wsd-paper: install
	$(OPTRUN) -m $(WSD_PAPER) seed=0,1,2 schedule=wsd,wsd_s,cyclic_cosine results_dir=$(RESULTS)
	$(OPTRUN) -m $(WSD_PAPER) seed=0,1,2 schedule=cyclic_cosine 'schedule.budgets=[20000]' results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/wsd
# Digits, 3-conv CNN: Muon (all layers every step) vs Drop-Muon (uniform start layer), 3 seeds each.
drop_muon: install
	$(OPTRUN) -m experiment=drop_muon seed=0,1,2 trainer.sampling=full,uniform results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/drop_muon --check
	@echo "figure: $(RESULTS)/drop_muon/drop_muon.png   report: $(RESULTS)/drop_muon/report.md"
# The paper's MNIST CNN (channels [64,128,256], batch 8192, lr 0.1) on a GPU; needs MNIST under data/.
drop_muon-paper: install
	$(OPTRUN) -m experiment=drop_muon scale=paper seed=0,1,2 trainer.sampling=full,uniform results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/drop_muon
# Digits MLP: one-shot pruning (magnitude / diagonal Fisher / OBS with M-FAC) of an Adam-trained net,
# and M-FAC (m = 32) against Adam and SGD, each over a small grid, 3 seeds.
mfac: install
	$(OPTRUN) -m experiment=mfac seed=0,1,2 'hooks=[test_eval,prune]' results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=mfac seed=0,1,2 optimizer=adam optimizer.lr=0.001,0.003,0.01 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=mfac seed=0,1,2 optimizer=sgd optimizer.lr=0.03,0.1,0.3 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=mfac seed=0,1,2 optimizer=mfac optimizer.lr=0.003,0.01 optimizer.damp=1e-4,1e-3 \
		results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/mfac --check
	@echo "figure: $(RESULTS)/mfac/mfac.png   report: $(RESULTS)/mfac/report.md"
# ResNet-20 / CIFAR-10 on a GPU (needs CIFAR-10 under data/): M-FAC m=1024 vs SGD, one-shot pruning.
MFAC_PAPER := experiment=mfac scale=paper model=resnet20
mfac-paper: install
	$(OPTRUN) -m $(MFAC_PAPER) seed=0,1,2 optimizer=sgd optimizer.lr=0.1 'hooks=[test_eval,prune]' \
		hooks.prune.m=1024 hooks.prune.grad_batch=16 hooks.prune.method_mfac=cholesky results_dir=$(RESULTS)
	$(OPTRUN) -m $(MFAC_PAPER) seed=0,1,2 optimizer=mfac optimizer.m=1024 optimizer.damp=1e-5 results_dir=$(RESULTS)
	$(REPORT) $(RESULTS)/mfac

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
# at fixed lr 0.5 .. 3.5 against the drift-adjusted lr (DAL, p = 1 and 0.5), lambda_max every 10 steps.
DD_SHARPNESS := hooks.sharpness.every=10 hooks.sharpness.estimator=none hooks.sharpness.probe_samples=null
discretisation_drift: install
	$(OPTRUN) -m experiment=discretisation_drift trainer=flow_check 'hooks=[]' trainer.h=0.5,1.5,2.2 results_dir=$(RESULTS)
	$(OPTRUN) experiment=discretisation_drift trainer=flow_check 'hooks=[]' trainer.landscape=rosenbrock \
		'trainer.start=[-1,1.5]' trainer.h=0.015 trainer.steps=60 trainer.substeps=20 results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=discretisation_drift optimizer.lr=0.5,1,2,3.5 $(DD_SHARPNESS) results_dir=$(RESULTS)
	$(OPTRUN) -m experiment=discretisation_drift optimizer=dal optimizer.p=1,0.5 $(DD_SHARPNESS) results_dir=$(RESULTS)
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
