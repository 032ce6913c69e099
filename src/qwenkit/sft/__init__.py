"""SFT with and without rationales, measured for accuracy and calibration over task difficulty (``qwenkit sft``).

After "Rationales Are Not Silver Bullets" (Zhu et al., arXiv 2505.24147).

- :mod:`qwenkit.sft.metrics`: ECE / MCE / Brier, reliability-diagram bins, ``self_consistency``, answer extraction,
  line fit with a bootstrap interval (pure, no torch).
- :mod:`qwenkit.sft.data`: the JSONL record format (validated at load), chat examples with loss on target tokens
  only, packing with block-diagonal masks; :mod:`qwenkit.sft.loaders`: GSM8K, SVAMP, ARC, CSQA, SST-2 files;
  :mod:`qwenkit.sft.tasks`: toy tasks with controllable difficulty and gold rationales.
- :mod:`qwenkit.sft.train`: training through ``qwenkit.core.loop`` (full or LoRA); :mod:`qwenkit.sft.evaluate`:
  greedy, self-consistency and token-probability confidence; :mod:`qwenkit.sft.rationales`: rejection-sampled
  rationales from any chat backend with a content-hash call cache.

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
        "SFTRecord": "qwenkit.sft.data",
        "load_records": "qwenkit.sft.data",
        "load_dataset_file": "qwenkit.sft.loaders",
        "make_task": "qwenkit.sft.tasks",
        "SFTConfig": "qwenkit.sft.config",
        "train_records": "qwenkit.sft.train",
        "evaluate_records": "qwenkit.sft.evaluate",
        "generate_rationales": "qwenkit.sft.rationales",
    },
)
