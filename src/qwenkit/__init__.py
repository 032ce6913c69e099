"""qwenkit: the methods of the Qwen team's 2025 research as one coherent, tested, fast toolkit.

Layers: ``qwenkit.core`` (shared infrastructure) <- ``qwenkit.lm`` (language-model plumbing) <- one package per method
(``qwenkit.rl``, ``qwenkit.infer``, ...) <- ``qwenkit.cli``. See docs/ARCHITECTURE.md.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qwenkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
