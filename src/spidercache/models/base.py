"""The shape every network in ``models/`` shares.

A network is a sequence of *units* (stem, stages or residual blocks) followed
by a *neck* that turns the last unit's activations into the penultimate-layer
embedding, and one linear ``fc`` from the embedding to the logits. Writing
every model this way gives two things for free:

* ``forward(x, return_embedding=True)`` returns ``(logits, embedding)`` in one
  pass, which the training-data policies use (importance from embeddings);
* ``units()`` lets the inference runtime (GATI) run the network one unit at a
  time and stop early, with ``finish(h)`` doing the neck and the classifier.
"""

from __future__ import annotations

import torch
from torch import nn


class LayeredNet(nn.Module):
    """Base class: subclasses define ``units()``, ``self.neck`` and ``self.fc``."""

    neck: nn.Module
    fc: nn.Linear

    def units(self) -> list[tuple[str, nn.Module]]:
        """The feature units in execution order, as ``(name, module)`` pairs.

        Returned as a plain list (not a registered ModuleList) so that the
        same modules are not registered twice in the state dict.
        """
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for _, unit in self.units():
            x = unit(x)
        return x

    def finish(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from the output of the last unit."""
        return self.fc(self.neck(h))

    def forward(self, x: torch.Tensor, return_embedding: bool = False):
        embedding = self.neck(self.features(x))
        logits = self.fc(embedding)
        if return_embedding:
            return logits, embedding
        return logits

    @property
    def embedding_dim(self) -> int:
        return self.fc.in_features
