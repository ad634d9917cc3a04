"""The classifier architectures of ccc_lib.models: shapes, named feature layers, the factory."""
import pytest
import torch

from ccc_lib import InputError
from ccc_lib.counterfeits import FeatureTap
from ccc_lib.models import MODELS, PaperCNN, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("c,h,n", [(1, 28, 10), (3, 32, 10), (1, 28, 47)])
def test_every_architecture_any_shape(name, c, h, n):
    m = build_model(name, c, h, n).eval()
    x = torch.rand(3, c, h, h)
    logits, taps = m.forward_with(x, [m.feature_layer])
    assert logits.shape == (3, n) and m.input_shape == (c, h, h) and m.num_classes == n
    feats = taps[m.feature_layer]
    assert feats.ndim == 2 and feats.shape[0] == 3
    tl, tf = FeatureTap(m)(x)                       # chapter 1's hook finds the same features
    assert torch.allclose(tl, logits) and torch.allclose(tf, feats)
    assert torch.allclose(m.features(x), feats)


def test_paper_cnn_unchanged():
    m = build_model("paper_cnn")
    assert isinstance(m, PaperCNN) and m.feature_layer == "act_fc"
    assert m.layer_names[:5] == ["conv1", "bn1", "act1", "pool1", "drop1"]


@pytest.mark.parametrize("bad", ["resnet50", "", "MLP"])
def test_unknown_architecture(bad):
    with pytest.raises(InputError, match="unknown architecture"):
        build_model(bad)


def test_forward_with_unknown_layer():
    with pytest.raises(KeyError):
        build_model("mlp").forward_with(torch.rand(2, 1, 28, 28), ["nope"])
