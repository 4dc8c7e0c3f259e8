"""Benchmarks of the service, four modes of ``python -m service.bench`` (``service/bench/__main__.py``):
``--local`` times the engines in-process (:mod:`service.bench.local`, with the FLOP count and matrix-multiply
floor of :mod:`service.bench.floor`), ``--target`` loads a running server and ``--suite`` a spawned one
(:mod:`service.bench.load`), and ``--agreement`` compares two backends' answers (:mod:`service.bench.agreement`).
Every report records the command line, machine and versions behind it (:mod:`service.bench.provenance`).
"""

from __future__ import annotations
