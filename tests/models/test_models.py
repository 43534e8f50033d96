"""Every network: shapes for 1/3 channels and 28/32 inputs, embeddings, unit-by-unit execution."""

import pytest
import torch

from spidercache.errors import UserError
from spidercache.models import NETWORKS, ResNet, build_model


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_shapes_and_embedding(name, channels, size):
    torch.manual_seed(0)
    model = build_model(name, in_channels=channels, num_classes=7).eval()
    x = torch.randn(1, channels, size, size)  # batch 1 keeps the big networks quick
    with torch.no_grad():
        logits, embedding = model(x, return_embedding=True)
        # Running the units one by one and then the classifier is the same computation.
        h = x
        for _, unit in model.units():
            h = unit(h)
        stepwise = model.finish(h)
    assert logits.shape == (1, 7)
    assert embedding.shape == (1, model.embedding_dim)
    assert torch.allclose(model.fc(embedding), logits)
    assert torch.allclose(logits, stepwise, atol=1e-5)


def test_resnet_exposes_stages_and_blocks():
    for name, blocks in (("resnet18", 8), ("resnet34", 16), ("resnet50", 16)):
        model = build_model(name, 1, 10)
        assert isinstance(model, ResNet)
        assert len(model.stages) == 4
        names = [n for n, _ in model.units()]
        assert names[0] == "stem" and len(names) == 1 + blocks
    # the units are not registered twice: state-dict keys stay the usual ones
    keys = build_model("resnet18", 3, 10).state_dict().keys()
    assert any(k.startswith("layer1.0.conv1") for k in keys)
    assert not any(k.startswith("units") for k in keys)


def test_unknown_network_and_bad_arguments():
    with pytest.raises(UserError, match="unknown network"):
        build_model("resnet101")
    with pytest.raises(UserError):
        build_model("resnet18", in_channels=4)
    assert build_model("ResNet-18", 1, 10) is not None  # spelling variants are accepted
