"""ccc_lib: the helper package of the book *Is a confident prediction an in-distribution one?*

The core (profiles, data, models, training with the checkpoint cache, the detector interface,
metrics, plots, reports, the runner) serves one module per chapter: ``counterfeits``,
``neuralfp``, ``iocn`` and ``drift``.

The public names below are imported on first use (PEP 562), so that ``python -m ccc_lib`` — which
starts once per chapter when chapters run side by side — does not import torch, SciPy and pandas
before it needs them; ``from ccc_lib import Claims`` works as before."""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> the module of ccc_lib that defines it
_PUBLIC = {
    "NotCached": "cache", "load_or_train": "cache",
    "InputError": "checks", "NotFittedError": "checks", "check_features": "checks", "check_fitted": "checks",
    "check_images": "checks", "check_labels": "checks",
    "Claims": "claims", "ClaimsFailed": "claims",
    "DatasetUnavailable": "data", "TensorData": "data", "load_dataset": "data",
    "Detector": "detectors", "evaluate_detector": "detectors",
    "expected_calibration_error": "metrics", "ood_metrics": "metrics", "reliability_bins": "metrics",
    "CNNConfig": "models", "PaperCNN": "models", "build_classifier": "models",
    "PROFILES": "profiles", "Profile": "profiles", "chapter_settings": "profiles", "get_profile": "profiles",
    "glue": "report", "paper_vs_ours": "report", "save_metrics": "report",
    "accuracy_of": "train", "profile_data": "train", "get_classifier": "train", "predict_logits": "train",
    "predict_proba": "train", "train_classifier": "train",
    "get_device": "utils", "progress": "utils", "set_seed": "utils",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'ccc_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value            # the next lookup is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
