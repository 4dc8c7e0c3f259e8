"""Throughput benchmarks run by hand (``python -m training.benchmarks.<name>``), never by the test suite."""
