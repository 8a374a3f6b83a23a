"""Benchmarks: figures printed, saved as JSON with a PNG plot under benchmarks/results/."""
