"""Speech-driven 3D facial animation with speaking styles (StyleSpeaker, arXiv 2503.09852): exact LVE/FDD metrics,
the sync losses, an offline synthetic talking-face corpus, the style model and its baselines, real-data loaders and a
headless MP4 renderer.

Light at import: numpy/torch load on first use of the names below.
"""

from qwenkit.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "lve": "qwenkit.face.metrics",
        "lve_sqrt_mm": "qwenkit.face.metrics",
        "fdd": "qwenkit.face.metrics",
        "ffe": "qwenkit.face.metrics",
        "mean_vertex_error_mm": "qwenkit.face.metrics",
        "vertex_loss": "qwenkit.face.losses",
        "velocity_loss": "qwenkit.face.losses",
        "trend_loss": "qwenkit.face.losses",
        "local_contrastive_loss": "qwenkit.face.losses",
    },
)
