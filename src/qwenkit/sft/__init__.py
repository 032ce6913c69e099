"""SFT with and without rationales, measured for accuracy and calibration over task difficulty (``qwenkit sft``).

After "Rationales Are Not Silver Bullets" (Zhu et al., arXiv 2505.24147).

- :mod:`qwenkit.sft.metrics`: ECE / MCE / Brier, reliability-diagram bins, ``self_consistency``, answer extraction,
  line fit with a bootstrap interval (pure, no torch).

Importing this package is light; torch is imported by the submodules.
"""

from qwenkit.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "expected_calibration_error": "qwenkit.sft.metrics",
        "maximum_calibration_error": "qwenkit.sft.metrics",
        "brier_score": "qwenkit.sft.metrics",
        "reliability_bins": "qwenkit.sft.metrics",
        "self_consistency": "qwenkit.sft.metrics",
        "extract_answer": "qwenkit.sft.metrics",
        "answers_match": "qwenkit.sft.metrics",
        "bootstrap_line_fit": "qwenkit.sft.metrics",
    },
)
