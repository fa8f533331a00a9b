"""On discretisation drift and smoothness regularisation in neural network training (Rosca, thesis 2023; Rosca et al., TMLR 2023)."""
