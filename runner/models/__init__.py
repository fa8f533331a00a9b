"""Small reusable networks. Every model takes `input_shape` and `n_classes` from the data set."""
