"""Benchmarks of the service: ``python -m service.bench --local`` times the engines in-process.

Public API: :func:`service.bench.local.main` (the ``--local`` command line) and :mod:`service.bench.floor`
(FLOP count and matrix-multiply floor).
"""

from __future__ import annotations
