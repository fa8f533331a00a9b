"""The implicit regularization of dynamical stability in SGD (Wu & Su, ICML 2023), with an
edge-of-stability check (Cohen et al., ICLR 2021)."""
