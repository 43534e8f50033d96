"""Training data: datasets, slow-storage emulation, cached datasets, training policies, the loop.

Heavy parts (torch DataLoader plumbing, the training loop) are imported from
their modules: ``spidercache.data.loader``, ``spidercache.data.train``.
"""

from .datasets import (CIFAR, ArrayImageDataset, FashionMNIST, ImageFolder, NpzDataset, files_fingerprint,
                       open_dataset, read_idx)

__all__ = ["ArrayImageDataset", "FashionMNIST", "CIFAR", "ImageFolder", "NpzDataset", "files_fingerprint",
           "open_dataset", "read_idx"]
