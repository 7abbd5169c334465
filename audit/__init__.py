"""Sieve's domain layer: datasets, the store, embedders, detectors, export and the CLI."""

__version__ = "0.1.0"
