"""The demo world: its toy data, teacher and metric networks, and `sidbench demo`.

Importing it registers the world's metric network as the ``world-cnn`` extractor.
"""
from sidbench.demo import extractor  # noqa: F401  (registers world-cnn)
