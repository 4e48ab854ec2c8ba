"""Mutation fuzzers for the parsers in protocols/: `python -m tools.fuzz.<name>`."""
