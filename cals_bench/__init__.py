"""cals-bench: evaluation and fairness auditing for image enhancement models."""

from cals_bench.enhancer import Enhancer, VariantEnhancer, load_enhancer, register_enhancer
from cals_bench.errors import CalsBenchError

__version__ = "0.1.0"
__all__ = [
    "CalsBenchError",
    "Enhancer",
    "VariantEnhancer",
    "load_enhancer",
    "register_enhancer",
    "__version__",
]
