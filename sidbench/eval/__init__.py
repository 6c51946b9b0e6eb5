"""Evaluation: feature extractors, statistics, metrics, protocols and the results schema."""
