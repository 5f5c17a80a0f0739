"""Benchmarks of this project against a PyTorch peer of the same networks.

Run everything with ``bash scripts/run_bench.sh`` (or ``python -m bench.run``);
the table goes to docs/benchmarks.md and docs/benchmarks.json.
"""
