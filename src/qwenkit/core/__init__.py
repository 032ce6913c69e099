"""Shared infrastructure of qwenkit: config, runs and reports, checkpoints, the training loop, progress, seeding.

``qwenkit.core`` imports nothing else of qwenkit. Import submodules directly (``from qwenkit.core.loop import
train_loop``); this package does no import-time work so that ``qwenkit --help`` stays fast.
"""
