"""Shared plumbing every stage uses: errors, atomic writes, provenance, log keys, process groups."""
