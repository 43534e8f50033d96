"""A tiny trained base model and explored heads, shared by the inference tests."""

import pytest
import torch
from gati_synthetic import make_images

from spidercache.inference.explore import explore
from spidercache.inference.training import train_base_model

# Tiny tensors: one thread avoids thread hand-offs that dominate on a busy 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_base():
    torch.manual_seed(0)
    images, labels = make_images(512, seed=1)
    return train_base_model("small", images, labels, num_classes=4, epochs=2, batch_size=64, lr=0.05)


@pytest.fixture(scope="session")
def tiny_exploration(tiny_base):
    train_x, train_y = make_images(256, seed=2)
    val_x, val_y = make_images(128, seed=3)
    return explore(tiny_base, train_x, train_y, val_x, val_y, head_epochs=3, timing_reps=2)
