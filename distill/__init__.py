"""The SiD-LSG trainer (``sidbench distill``).

Not implemented yet: the trainer is issue 6 of the tracker. Importing the package works so the
layout is fixed; no entry point claims to train.
"""
