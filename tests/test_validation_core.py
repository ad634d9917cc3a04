"""Input validation at the core's public entry points, table-driven.

Each case names what was given, the error expected and a phrase of the fix in its message; every
error must come from :mod:`ccc_lib.checks` (an ``InputError`` / ``NotFittedError`` raised by our own
code), never from inside torch, NumPy or PyOD — checked by looking at the frame that raised."""
import traceback

import numpy as np
import pytest
import torch

from ccc_lib import checks
from ccc_lib.checks import InputError, NotFittedError
from ccc_lib.data import TensorData
from ccc_lib.detectors import Detector, evaluate_detector
from ccc_lib.models import build_classifier
from ccc_lib.train import accuracy_of, get_classifier, predict_logits, predict_proba, train_classifier


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "cache"))


def _model(shape=(1, 28, 28), classes=10):
    torch.manual_seed(0)
    return build_classifier(in_channels=shape[0], image_size=shape[1], num_classes=classes,
                            widths=(4, 8, 8), fc=16).eval()


def _data(n=16, shape=(1, 28, 28), classes=10, name="toy"):
    g = torch.Generator().manual_seed(0)
    return TensorData(torch.rand(n, *shape, generator=g), torch.arange(n) % classes,
                      [str(i) for i in range(classes)], name, "train")


def _nan_images(n=4, shape=(1, 28, 28)):
    x = torch.rand(n, *shape)
    x[2, 0, 5, 5] = float("nan")
    return x


def _raised_by_us(excinfo) -> bool:
    """The innermost frame that raised lies in ccc_lib (not torch/numpy/pyod/sklearn)."""
    frames = traceback.extract_tb(excinfo.tb)
    return "ccc_lib" in frames[-1].filename.replace("\\", "/")


def _expect(fn, error, fix):
    with pytest.raises(error) as ei:
        fn()
    msg = str(ei.value)
    assert fix.lower() in msg.lower(), f"the message does not name the fix {fix!r}: {msg}"
    assert _raised_by_us(ei), f"raised outside ccc_lib: {traceback.format_tb(ei.tb)[-1]}"


# ---------------------------------------------------------------- a toy detector per input kind
class ImageDetector(Detector):
    """Distance of the logits' max from 1 (fits a threshold): an image detector on a model."""
    name = "toy image detector"

    def __init__(self, model):
        self.model = model
        self.ref = None

    def fit(self, data):
        self.ref = float(predict_logits(self.model, checks.check_images(data)).amax(1).mean())
        self.threshold = self.ref
        return self

    def _score(self, xb):
        with torch.no_grad():
            return (self.model(xb).amax(1) - self.ref).abs()


class FeatureDetector(Detector):
    """Distance to the training mean (feature rows); declares ``fitted_attr`` (strict check)."""
    name = "toy feature detector"
    fitted_attr = "mean"

    def __init__(self):
        self.mean = None

    def fit(self, data):
        self.mean = torch.as_tensor(data, dtype=torch.float32).mean(0)
        return self

    def score(self, x, batch_size=512):
        return (torch.as_tensor(x, dtype=torch.float32) - self.mean).norm(dim=1).numpy()


class LooseDetector(Detector):
    """No ``fitted_attr``: an unfitted use is caught where it touches the missing state."""
    name = "toy loose detector"

    def __init__(self):
        self.stats = None

    def fit(self, data):
        self.stats = torch.as_tensor(data).float().mean()
        return self

    def _score(self, xb):
        return xb.flatten(1).mean(1) - self.stats.errors


def _fitted_image_detector():
    return ImageDetector(_model()).fit(torch.rand(8, 1, 28, 28))


# ---------------------------------------------------------------- the table
CASES = [
    # (entry point, call, error, a phrase of the fix)
    ("predict_logits", "3×32×32 into a 1×28×28 model",
     lambda: predict_logits(_model(), torch.rand(2, 3, 32, 32)), InputError, "convert_images"),
    ("predict_logits", "one image without batch axis",
     lambda: predict_logits(_model(), torch.rand(1, 28, 28)), InputError, "unsqueeze(0)"),
    ("predict_logits", "NaN pixel", lambda: predict_logits(_model(), _nan_images()), InputError, "non-finite"),
    ("predict_logits", "0-255 pixel values", lambda: predict_logits(_model(), torch.rand(2, 1, 28, 28) * 255),
     InputError, "divide by 255"),
    ("predict_logits", "uint8 images", lambda: predict_logits(_model(), torch.zeros(2, 1, 28, 28, dtype=torch.uint8)),
     InputError, "/ 255"),
    ("predict_logits", "channels-last", lambda: predict_logits(_model((3, 32, 32)), torch.rand(2, 32, 32, 3)),
     InputError, "permute"),
    ("predict_logits", "flat vectors", lambda: predict_logits(_model(), torch.rand(2, 784)), InputError, "view"),
    ("predict_logits", "empty batch", lambda: predict_logits(_model(), torch.rand(0, 1, 28, 28)), InputError,
     "at least one"),
    ("predict_logits", "a list, not a tensor", lambda: predict_logits(_model(), [[0.0]]), InputError,
     "torch.as_tensor"),
    ("predict_logits", "not a model", lambda: predict_logits("mnist", torch.rand(2, 1, 28, 28)), InputError,
     "nn.Module"),
    ("predict_logits", "batch_size 0", lambda: predict_logits(_model(), torch.rand(2, 1, 28, 28), batch_size=0),
     InputError, "batch_size"),
    ("predict_proba", "NaN pixel", lambda: predict_proba(_model(), _nan_images()), InputError, "impute"),
    ("accuracy_of", "a tensor, not TensorData", lambda: accuracy_of(_model(), torch.rand(2, 1, 28, 28)), InputError,
     "TensorData"),
    ("accuracy_of", "labels beyond the model's classes",
     lambda: accuracy_of(_model(classes=3), _data(classes=10)), InputError, "classes"),
    ("train_classifier", "wrong image shape for the model",
     lambda: train_classifier(_model(), _data(shape=(3, 32, 32)), epochs=1), InputError, "convert"),
    ("train_classifier", "NaN in the training images",
     lambda: train_classifier(_model(), TensorData(_nan_images(), torch.zeros(4, dtype=torch.long), ["0"], "nan", "train"),
                              epochs=1), InputError, "non-finite"),
    ("train_classifier", "more classes than the model has",
     lambda: train_classifier(_model(classes=3), _data(classes=10), epochs=1), InputError, "classes"),
    ("train_classifier", "unlabelled rows (-1)",
     lambda: train_classifier(_model(), TensorData(torch.rand(4, 1, 28, 28), torch.full((4,), -1), ["0"], "u", "train"),
                              epochs=1), InputError, "labelled"),
    ("train_classifier", "epochs 0", lambda: train_classifier(_model(), _data(), epochs=0), InputError, "epochs"),
    ("train_classifier", "negative lr", lambda: train_classifier(_model(), _data(), lr=-1.0), InputError, "lr"),
    ("train_classifier", "a tuple, not TensorData",
     lambda: train_classifier(_model(), (torch.rand(4, 1, 28, 28), torch.zeros(4))), InputError, "TensorData"),
    ("get_classifier", "train_data without a tag",
     lambda: get_classifier("toy", "smoke", train_data=_data(), test_data=_data()), InputError, "tag="),
    ("get_classifier", "test images of another shape",
     lambda: get_classifier("toy", "smoke", train_data=_data(), test_data=_data(shape=(3, 32, 32)), tag="t"),
     InputError, "to_shape"),
    ("get_classifier", "negative seed",
     lambda: get_classifier("toy", "smoke", train_data=_data(), test_data=_data(), tag="t", seed=-1), InputError,
     "seed"),
    ("get_classifier", "epochs 0",
     lambda: get_classifier("toy", "smoke", train_data=_data(), test_data=_data(), tag="t", epochs=0), InputError,
     "epochs"),
    ("Detector.score", "before fit (fitted_attr declared)", lambda: FeatureDetector().score(torch.rand(3, 2)),
     NotFittedError, "call .fit"),
    ("Detector.score", "before fit (caught at the missing state, not an AttributeError)",
     lambda: LooseDetector().score(torch.rand(3, 2)), NotFittedError, "call .fit"),
    ("Detector.is_outlier", "before fit", lambda: FeatureDetector().is_outlier(torch.rand(3, 2)), NotFittedError,
     "call .fit"),
    ("Detector.score", "3×32×32 images into a detector on a 1×28×28 classifier",
     lambda: _fitted_image_detector().score(torch.rand(2, 3, 32, 32)), InputError, "convert_images"),
    ("Detector.score", "one NaN pixel", lambda: _fitted_image_detector().score(_nan_images()), InputError,
     "non-finite"),
    ("Detector.score", "empty batch", lambda: _fitted_image_detector().score(torch.rand(0, 1, 28, 28)), InputError,
     "at least one"),
    ("Detector.is_outlier", "one NaN pixel", lambda: _fitted_image_detector().is_outlier(_nan_images()), InputError,
     "non-finite"),
    ("Detector.fit", "NaN in the training images", lambda: ImageDetector(_model()).fit(_nan_images()), InputError,
     "non-finite"),
    ("Detector.fit", "training features with a NaN",
     lambda: FeatureDetector().fit(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]])), InputError, "non-finite"),
    ("Detector.score", "feature rows of another width than in fit",
     lambda: FeatureDetector().fit(torch.rand(5, 3)).score(torch.rand(2, 4)), InputError, "same feature extractor"),
    ("Detector.score", "inf in the features",
     lambda: FeatureDetector().fit(torch.rand(5, 3)).score(torch.tensor([[0.0, float("inf"), 1.0]])), InputError,
     "non-finite"),
    ("evaluate_detector", "empty OOD set",
     lambda: evaluate_detector(_fitted_image_detector(), torch.rand(3, 1, 28, 28), torch.rand(0, 1, 28, 28)),
     InputError, "at least one"),
    ("evaluate_detector", "NaN in the OOD images",
     lambda: evaluate_detector(_fitted_image_detector(), torch.rand(3, 1, 28, 28), _nan_images()), InputError,
     "non-finite"),
    ("evaluate_detector", "unfitted detector",
     lambda: evaluate_detector(FeatureDetector(), torch.rand(3, 2), torch.rand(3, 2)), NotFittedError, "call .fit"),
    ("check_labels", "one-hot labels", lambda: checks.check_labels(torch.eye(3)), InputError, "argmax"),
    ("check_fraction", "alpha = 1.5", lambda: checks.check_fraction(1.5, "alpha"), InputError, "(0, 1)"),
    ("seed_everything", "a float seed", lambda: __import__("ccc_lib.utils").utils.seed_everything(0.5), InputError,
     "non-negative integer"),
]


@pytest.mark.parametrize("entry,given,call,error,fix", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_is_named_with_its_fix(entry, given, call, error, fix):
    _expect(call, error, fix)


def test_good_inputs_still_work():
    """The checks reject only what is wrong: the same entry points accept valid inputs, arrays and TensorData."""
    m = _model()
    x = torch.rand(5, 1, 28, 28)
    assert predict_logits(m, x).shape == (5, 10)
    assert predict_proba(m, x.numpy()).shape == (5, 10)                       # NumPy arrays are fine
    det = _fitted_image_detector()
    assert det.score(_data(n=5)).shape == (5,)                                 # TensorData is fine
    assert det.is_outlier(x).dtype == bool
    assert 0.0 <= evaluate_detector(det, x, torch.rand(4, 1, 28, 28))["auroc"] <= 1.0
    fd = FeatureDetector().fit(torch.rand(5, 3))
    assert fd.score(torch.rand(2, 3)).shape == (2,)
    loose = LooseDetector()
    assert not loose.is_fitted


def test_a_detector_made_ready_without_fit_is_not_refused():
    """A detector that shares another's fitted state (no ``fit`` call, no ``fitted_attr``) still scores."""
    class Shared(Detector):
        name = "shared"

        def __init__(self, base=None):
            self.base = base

        def fit(self, data):
            self.base = 0.5
            return self

        def _score(self, xb):
            return xb.flatten(1).mean(1) - self.base

    assert Shared(base=0.1).score(torch.rand(3, 1, 4, 4)).shape == (3,)


def test_nan_scores_from_finite_inputs_warn():
    class Unstable(Detector):
        name = "unstable"

        def _score(self, xb):
            s = xb.flatten(1).mean(1)
            s[0] = float("nan")
            return s

    with pytest.warns(RuntimeWarning, match="NaN score"):
        Unstable().score(torch.rand(3, 1, 4, 4))
