"""ImageNet stems beside CIFAR stems, and SE-LResNet18E-IR with its nearest-centroid classifier."""

import pytest
import torch

from spidercache.errors import UserError
from spidercache.models import CentroidClassifier, build_model


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_imagenet_stem_quarters_the_resolution(name):
    cifar = build_model(name, 3, 5).eval()
    imagenet = build_model(name, 3, 5, stem="imagenet").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert cifar.stem(x).shape[-1] == 64
        assert imagenet.stem(x).shape[-1] == 16  # 7x7 stride 2, then max-pool stride 2
        assert imagenet(x).shape == (1, 5)
    # same parameter names apart from the stem: checkpoints keep the usual keys
    assert set(cifar.state_dict()) == set(imagenet.state_dict())


def test_stem_is_refused_where_it_does_not_apply():
    with pytest.raises(UserError, match="unknown stem"):
        build_model("resnet18", stem="huge")
    with pytest.raises(UserError, match="one fixed stem"):
        build_model("vgg11", stem="imagenet")


def test_face_network_layout_at_112_px():
    model = build_model("SE-LResNet18E-IR", 3, 7).eval()
    names = [n for n, _ in model.units()]
    assert names[0] == "stem" and len(names) == 1 + 8  # [2, 2, 2, 2] IR blocks
    h = torch.randn(1, 3, 112, 112)
    sides = []
    with torch.no_grad():
        for _, unit in model.units():
            h = unit(h)
            sides.append(h.shape[-1])
        logits, emb = model(torch.randn(2, 3, 112, 112), return_embedding=True)
    assert sides == [112, 56, 56, 28, 28, 14, 14, 7, 7] and h.shape[1] == 512
    assert emb.shape == (2, 512) and logits.shape == (2, 7)
    assert any("gate" in k for k in model.state_dict())  # squeeze-and-excitation in every block


def test_centroid_classifier_picks_the_nearest_centroid():
    fc = CentroidClassifier(3, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    x = torch.tensor([[5.0, 1.0, 0.0], [0.1, 0.2, 9.0], [0.0, 3.0, 1.0]])
    assert fc(x).argmax(1).tolist() == [0, 1, 1]
    assert set(fc.state_dict()) == {"weight", "bias"}  # a drop-in for nn.Linear in checkpoints
