"""sidbench: SiD-LSG distillation and reproducible text-to-image evaluation."""
from sidbench.core import _tvguard  # noqa: F401  (must run before anything imports torchvision)

__version__ = "0.1.0"
