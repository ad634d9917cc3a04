"""Shared test helpers."""
import pytest

from ccc_lib import build_classifier, set_seed


@pytest.fixture(scope="module")
def tiny_classifier():
    """A factory of small frozen papers'-CNNs in eval mode (seeded), for fast detector tests."""
    def make(num_classes: int):
        set_seed(0)
        model = build_classifier(num_classes=num_classes, widths=(4, 8, 8), fc=16).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model
    return make
