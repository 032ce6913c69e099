"""RMTBench-style role-play evaluation: user-centric, bilingual (en/zh), multi-turn, judged per reply and dimension.

- :mod:`qwenkit.roleplay.data`: character cards, motivation scripts, the protocol (rubrics, scenario -> dimensions).
- :mod:`qwenkit.roleplay.scoring`: ``parse_judge_score`` and the deterministic rule overrides.
- :mod:`qwenkit.roleplay.agreement`: judge-validation statistics (Cohen, Fleiss, Krippendorff, majority, Spearman).

Names are imported on first use, so that ``qwenkit --help`` never loads heavy modules.
"""

from qwenkit.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "cohen_kappa": "qwenkit.roleplay.agreement",
        "exact_agreement": "qwenkit.roleplay.agreement",
        "fleiss_kappa": "qwenkit.roleplay.agreement",
        "krippendorff_alpha": "qwenkit.roleplay.agreement",
        "majority_agreement": "qwenkit.roleplay.agreement",
        "majority_labels": "qwenkit.roleplay.agreement",
        "spearman_rho": "qwenkit.roleplay.agreement",
        "CharacterCard": "qwenkit.roleplay.data",
        "Dataset": "qwenkit.roleplay.data",
        "MotivationScript": "qwenkit.roleplay.data",
        "RoleplayDataError": "qwenkit.roleplay.data",
        "applicable_dimensions": "qwenkit.roleplay.data",
        "load_dataset": "qwenkit.roleplay.data",
        "load_protocol": "qwenkit.roleplay.data",
        "parse_judge_score": "qwenkit.roleplay.scoring",
        "rule_override": "qwenkit.roleplay.scoring",
    },
)
