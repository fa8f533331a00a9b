"""Constrained Bi-Level Optimization: Proximal Lagrangian Value function Approach and Hessian-free Algorithm (Yao, Yu, Zeng, Zhang, ICLR 2024)."""
