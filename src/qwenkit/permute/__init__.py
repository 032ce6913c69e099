"""qwenkit.permute: tensor permutation by generated SIMD C kernels, bit-exact to NumPy and many times faster.

>>> from qwenkit.permute import permute
>>> out = permute(a, (0, 2, 3, 1))   # == np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))

See docs/permute.md for the design (planner, code generator, cache) and the measured speed-ups.
"""

from qwenkit.permute.api import PermutePlan, clear_cache, empty_aligned, make_plan, permute
from qwenkit.permute.build import PermuteFallbackWarning, cache_info
from qwenkit.permute.isa import UnknownIsaError, cpu_isas


def available_isas() -> list[str]:
    """The kernel ISAs this CPU can run (``scalar`` first); each is accepted by ``permute(..., isa=...)``."""
    return cpu_isas()


__all__ = ["PermuteFallbackWarning", "PermutePlan", "UnknownIsaError", "available_isas", "cache_info",
           "clear_cache", "empty_aligned", "make_plan", "permute"]
