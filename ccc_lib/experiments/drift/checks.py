"""Chapter 4's checks beside the gray-data decision: the standard input-drift tests (MMD, KS) and
every production model's per-class recall and precision on the untouched test set."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import drift as D
from ...cache import cached
from ...checks import InputError
from ...data import TensorData
from ...metrics import ks_test, mmd_test
from ...models import PaperCNN
from .models import Production

__all__ = ["InputTest", "input_drift_test", "ClassAccuracy", "class_accuracy", "accuracy_changes"]

# --------------------------------------------------------------------------- the standard input-drift tests

@dataclass
class InputTest:
    mmd2: float
    mmd_p: float
    ks_p: float
    mmd_drift: bool
    ks_drift: bool


@torch.inference_mode()
def _features(model: PaperCNN, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    dev = next(model.parameters()).device
    return torch.cat([model.features(x[i:i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)]).numpy()


@cached("drift-input-test")
def input_drift_test(base_model: PaperCNN, reference: TensorData, production: TensorData, *, n: int = 300,
                     n_permutations: int = 200, alpha: float = 0.05, seed: int = 0) -> InputTest:
    """Does the production *input* distribution differ from the reference one? An MMD permutation
    test and Bonferroni-corrected KS tests on the base model's penultimate features of ``n`` images
    from each (labels are not used)."""
    D.check_model(base_model, "base_model")
    r, p = reference.subset(n, seed), production.subset(n, seed + 1)
    fa, fb = _features(base_model, r.x), _features(base_model, p.x)
    mmd = mmd_test(fa, fb, n_permutations, seed)
    ks = ks_test(fa, fb)
    return InputTest(mmd["mmd2"], mmd["p_value"], ks["p_value"], mmd["p_value"] < alpha, ks["p_value"] < alpha)


# --------------------------------------------------------------------------- beyond the drifted classes

@dataclass
class ClassAccuracy:
    """One production model's per-class behaviour on the untouched test set, beside the no-drift
    controls: did the model's idea of a class change — also of a class whose data were not touched?"""
    dataset: str
    production: str
    kind: str
    seed: int
    recall: list                 # per class c: share of the test images of c predicted c
    precision: list              # per class c: share of the test images predicted c that are c (NaN: none)
    recall_fell: tuple = ()      # classes whose recall fell below the controls' (Holm over 2K tests)
    precision_fell: tuple = ()   # ... whose precision fell

    @property
    def changed(self) -> tuple:
        """Classes whose recall or precision on the test set fell beyond the controls' spread."""
        return tuple(sorted(set(self.recall_fell) | set(self.precision_fell)))


def class_accuracy(model: PaperCNN, test: TensorData) -> tuple[np.ndarray, np.ndarray]:
    """Per-class recall and precision of ``model`` on ``test``."""
    from ...train import predict_logits
    D.check_model(model)
    pred = predict_logits(model, test.x, cache=True).argmax(1).numpy()
    y, k = test.y.numpy(), model.num_classes
    recall = np.array([(pred[y == c] == c).mean() if (y == c).any() else np.nan for c in range(k)])
    precision = np.array([(y[pred == c] == c).mean() if (pred == c).any() else np.nan for c in range(k)])
    return recall, precision


def accuracy_changes(prods: list[Production], test: TensorData, S: dict) -> list[ClassAccuracy]:
    """Per production model, the classes whose test recall or precision fell: each class's value
    against the no-drift controls' values for that class (the row's own model left out), by the
    per-class test of step 7 (:func:`~ccc_lib.drift.class_p_values`, same margin and α), Holm over
    the 2K tests of a model (recall and precision of K classes). A control with fewer than 2 other
    controls is not tested (nothing fell)."""
    if sum(p.kind == "none" for p in prods) < 2:
        raise InputError("accuracy_changes needs ≥ 2 no-drift controls among the production models")
    acc = {p.name: class_accuracy(p.model, test) for p in prods}
    out = []
    for p in prods:
        ctrl = [q.name for q in prods if q.kind == "none" and q.name != p.name]
        rec, prec = acc[p.name]
        k = len(rec)
        if len(ctrl) < 2:
            out.append(ClassAccuracy(test.name, p.name, p.kind, p.seed, rec.tolist(), prec.tolist()))
            continue
        raw = np.concatenate([D.class_p_values(v, [acc[c][i] for c in ctrl], margin=S["margin"], alpha=S["alpha"])[0]
                              for i, v in enumerate((rec, prec))])
        fell = np.nan_to_num(D.holm(raw, S["correction"]), nan=1.0) < S["alpha"]
        out.append(ClassAccuracy(test.name, p.name, p.kind, p.seed,
                                 rec.tolist(), prec.tolist(), tuple(int(c) for c in np.flatnonzero(fell[:k])),
                                 tuple(int(c) for c in np.flatnonzero(fell[k:]))))
    return out
