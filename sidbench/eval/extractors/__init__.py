"""Feature extractors behind one registry (see registry.py) and the table of known weights."""
from sidbench.eval.extractors.registry import Extractor, build_extractor, known_extractors, register_extractor  # noqa: F401
