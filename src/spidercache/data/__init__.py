"""Training data: datasets, slow-storage emulation, cached datasets, training policies, the loop.

Heavy parts (torch DataLoader plumbing, the training loop) are imported from
their modules: ``spidercache.data.loader``, ``spidercache.data.train``.
"""

from .datasets import CIFAR, ArrayImageDataset, FashionMNIST, NpzDataset, Subset, files_fingerprint, read_idx
from .imagefolder import ImageFolder
from .splits import open_splits

__all__ = [
    "ArrayImageDataset",
    "FashionMNIST",
    "CIFAR",
    "ImageFolder",
    "NpzDataset",
    "Subset",
    "files_fingerprint",
    "open_splits",
    "read_idx",
]
