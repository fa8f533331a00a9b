"""Ghosts of Softmax (Sao 2026): complex zeros of the softmax partition function bound the safe step size."""
