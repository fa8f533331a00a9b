"""Curvature of a model's loss: side-effect-free Hessian-vector products (`hvp`) and the spectral
estimators built on them (`estimators`: Lanczos, Hutch++ / deflated Hutchinson trace and Frobenius
norm with standard errors). The `sharpness` hook is their user; other probes may reuse them."""
