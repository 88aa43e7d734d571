"""Numba kernels: the hazmat layer.

Module-level ``@njit`` functions over NumPy views of Arrow buffers. Kernels do
no validation and hold no Python objects; each states what its caller
guarantees. Importing this package compiles nothing: compilation happens on
the first call of each kernel (or through :func:`telemetry.warmup`).
"""
