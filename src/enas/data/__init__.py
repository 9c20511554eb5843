"""Datasets as tensors: image loaders (``images``), tensor augmentation (``augment``).

Import the submodules directly; this package imports nothing at import time.
"""
