"""Benchmarks of nima_tf: scripts, not tests. Run them as `python -m benchmarks.<name>`."""
