"""Datasets (and, later, cached datasets and slow-storage emulation)."""

from .datasets import ArrayImageDataset, FashionMNIST, files_fingerprint, read_idx

__all__ = ["ArrayImageDataset", "FashionMNIST", "files_fingerprint", "read_idx"]
