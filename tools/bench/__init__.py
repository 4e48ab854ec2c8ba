"""Benchmarks: figures measured as ratios against a floor in the same run, written to docs/."""
