"""Curl descent: non-gradient learning dynamics with sign-diverse plasticity (Ninou, Kadmon & Cayco-Gajic, NeurIPS 2025)."""
