"""Benchmark suites: one module per study (see polyinstruct/eval/__init__.py for how to add one)."""
