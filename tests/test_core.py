"""Profiles, the papers' CNN, training, the checkpoint cache, metrics and the detector interface."""
import json
import os
import warnings

import numpy as np
import pytest
import torch

import ccc_lib
from ccc_lib import cache as C
from ccc_lib.detectors import Detector, evaluate_detector
from ccc_lib.metrics import (expected_calibration_error, fpr_at_tpr, nearest_neighbour_distance, ood_metrics,
                             pairwise_mean_distance)
from ccc_lib.models import PaperCNN, build_classifier
from ccc_lib.profiles import chapter_settings, get_profile


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------ profiles
def test_profile_resolution(monkeypatch):
    monkeypatch.delenv("CCC_PROFILE", raising=False)
    assert get_profile().name == "default"
    monkeypatch.setenv("CCC_PROFILE", "full")
    assert get_profile().name == "full"
    assert get_profile("smoke").name == "smoke"            # the argument wins
    with pytest.raises(ValueError, match="smoke, default, full"):
        get_profile("huge")


def test_chapter_settings():
    S = {"smoke": {"steps": 10, "lr": 1e-3}, "default": {"steps": 100, "lr": 1e-3}, "full": {"steps": 1, "lr": 1}}
    assert chapter_settings(S, "smoke", steps=None)["steps"] == 10
    assert chapter_settings(S, "default", steps=5)["steps"] == 5
    with pytest.raises(ValueError, match="unknown setting"):
        chapter_settings(S, "smoke", stepz=3)


# ------------------------------------------------------------------ model
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_cnn_shapes_and_taps(shape):
    m = build_classifier(in_channels=shape[0], image_size=shape[1]).eval()
    x = torch.rand(4, *shape)
    assert m(x).shape == (4, 10)
    assert m.features(x).shape == (4, 256)
    logits, taps = m.forward_with(x, ["conv1", "pool3", "act_fc"])
    assert torch.allclose(logits, m(x))
    assert taps["conv1"].shape == (4, 32, shape[1], shape[2])
    assert taps["pool3"].shape[1] == 128
    with pytest.raises(KeyError, match="valid"):
        m.forward_with(x, ["nope"])


# ------------------------------------------------------------------ cache
def _tiny(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def test_cache_trains_once_then_loads(tmp_path):
    calls = []

    def train(m):
        calls.append(1)
        with torch.no_grad():
            m.weight.fill_(0.5)
        return {"loss": [1.0, 0.5]}

    cfg = {"what": "tiny", "seed": 0}
    meta = C.load_or_train(_tiny(), "tiny", cfg, train)
    assert meta["from_cache"] is False and meta["loss"] == [1.0, 0.5]
    m2 = _tiny(1)
    meta2 = C.load_or_train(m2, "tiny", cfg, train)
    assert meta2["from_cache"] is True and len(calls) == 1
    assert torch.all(m2.weight == 0.5)
    C.load_or_train(_tiny(), "tiny", {**cfg, "seed": 1}, train)       # another key → trains
    assert len(calls) == 2


def test_cache_detects_corrupt_file_and_rebuilds():
    cfg = {"what": "tiny-corrupt"}
    train = lambda m: {"ok": 1}
    meta = C.load_or_train(_tiny(), "tiny", cfg, train)
    path = meta["path"]
    with open(path, "r+b") as fh:           # truncate: a half-written or damaged file
        fh.truncate(40)
    with pytest.warns(RuntimeWarning, match="unusable"):
        meta = C.load_or_train(_tiny(), "tiny", cfg, train)
    assert meta["from_cache"] is False
    assert C.load_or_train(_tiny(), "tiny", cfg, train)["from_cache"] is True


def test_cache_rejects_wrong_architecture():
    cfg = {"what": "arch"}
    C.load_or_train(_tiny(), "arch", cfg, lambda m: {})
    with pytest.warns(RuntimeWarning, match="unusable"):
        meta = C.load_or_train(torch.nn.Linear(4, 2), "arch", cfg, lambda m: {})
    assert meta["from_cache"] is False


def test_cache_file_loads_with_weights_only():
    meta = C.load_or_train(_tiny(), "wo", {"x": 1}, lambda m: {"a": 1})
    blob = torch.load(meta["path"], weights_only=True)
    assert set(blob) >= {"key", "state_dict", "meta"}


def test_fingerprint_edge_cases():
    assert C.fingerprint(torch.tensor(1.0)) != C.fingerprint(torch.tensor(2.0))          # 0-d tensors
    x = torch.rand(3, 4)
    assert C.fingerprint(x.t()) == C.fingerprint(x.t().contiguous())                      # layout-free
    assert C.fingerprint(torch.zeros(2)) != C.fingerprint(torch.zeros(2, dtype=torch.float64))
    assert C.fingerprint(torch.nn.Linear(2, 2).requires_grad_(False)) is not None
    m = torch.nn.Linear(2, 2)
    assert C.fingerprint(m) == C.fingerprint({k: v.clone() for k, v in m.state_dict().items()})

    class Opaque:
        pass

    with pytest.raises(TypeError, match="no stable text"):
        C.fingerprint({"a": Opaque()})
    with pytest.raises(TypeError, match="no stable text"):
        C.config_hash({"a": Opaque()})


def test_config_hash_uses_fingerprints_not_truncated_reprs():
    a, b = torch.zeros(5000), torch.zeros(5000)
    b[2500] = 1.0                                   # str(a) == str(b): torch truncates long reprs
    assert str(a) == str(b)
    assert C.config_hash({"x": a}) != C.config_hash({"x": b})
    assert C.config_hash({"x": a}) == C.config_hash({"x": a.clone()})
    from ccc_lib.models import CNNConfig
    assert C.config_hash({"m": CNNConfig()}) == C.config_hash({"m": CNNConfig()})       # dataclasses by value


@pytest.mark.parametrize("kind", ["../escape", "a/b", "", ".hidden", None])
def test_cache_kind_must_be_a_file_stem(kind):
    from ccc_lib.checks import InputError
    with pytest.raises(InputError, match="file-name stem"):
        C.checkpoint_path(kind, {})


def test_load_or_compute_roundtrip_and_corrupt(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(4.0), "meta": {"n": 4}}

    a = C.load_or_compute("feat", {"k": 1}, compute, root=tmp_path)
    b = C.load_or_compute("feat", {"k": 1}, compute, root=tmp_path)
    assert a["from_cache"] is False and b["from_cache"] is True and len(calls) == 1
    assert torch.equal(a["x"], b["x"]) and b["meta"] == {"n": 4}
    path = C.checkpoint_path("feat", {"k": 1}, tmp_path)
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="unusable"):
        c = C.load_or_compute("feat", {"k": 1}, compute, root=tmp_path)
    assert c["from_cache"] is False and len(calls) == 2
    with pytest.raises(C.NotCached):
        C.load_or_compute("feat", {"k": 2}, compute, root=tmp_path, cache_only=True)
    with pytest.raises(TypeError, match="return tensors"):
        C.load_or_compute("feat", {"k": 3}, lambda: {"x": [1, 2]}, root=tmp_path)


def test_cache_files_get_the_usual_permissions(tmp_path):
    meta = C.load_or_train(_tiny(), "perm", {"p": 1}, lambda m: {}, root=tmp_path)
    mode = os.stat(meta["path"]).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask, f"checkpoint mode {oct(mode)}, not the umask's {oct(0o666 & ~umask)} (mkstemp's 0600?)"


# ------------------------------------------------------------------ training
def test_train_and_get_classifier_on_digits():
    from ccc_lib.data import load_dataset
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    m, info = ccc_lib.get_classifier("digits", "smoke", train_data=tr, test_data=te, tag="unit", epochs=3)
    assert info["from_cache"] is False and info["test_accuracy"] > 0.6
    assert not any(p.requires_grad for p in m.parameters()) and not m.training
    m2, info2 = ccc_lib.get_classifier("digits", "smoke", train_data=tr, test_data=te, tag="unit", epochs=3)
    assert info2["from_cache"] is True and info2["test_accuracy"] == info["test_accuracy"]
    with pytest.raises(ValueError, match="tag"):
        ccc_lib.get_classifier("digits", "smoke", train_data=tr)
    with pytest.raises(ValueError, match="epochs"):
        ccc_lib.train_classifier(PaperCNN(), tr, epochs=0)


# ------------------------------------------------------------------ metrics
def test_ood_metrics_known_values():
    r = ood_metrics([0, 1, 2], [3, 4, 5])
    assert r["auroc"] == 1.0 and r["fpr95"] == 0.0
    r = ood_metrics([3, 4, 5], [0, 1, 2])
    assert r["auroc"] == 0.0 and r["fpr95"] == 1.0
    rng = np.random.default_rng(0)
    r = ood_metrics(rng.normal(size=4000), rng.normal(size=4000))
    assert abs(r["auroc"] - 0.5) < 0.03
    with pytest.raises(ValueError, match="NaN"):
        ood_metrics([0, np.nan], [1, 2])
    assert fpr_at_tpr(np.arange(100), np.arange(100)) == pytest.approx(0.96, abs=0.02)


def test_calibration_and_distances():
    labels = torch.tensor([0, 1, 0, 1])
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, labels) == pytest.approx(0.0)
    wrong = perfect.flip(1)
    assert expected_calibration_error(wrong, labels) == pytest.approx(1.0)
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert pairwise_mean_distance(x) == pytest.approx(5.0)
    assert nearest_neighbour_distance(torch.tensor([[0.0, 1.0]]), x)[0] == pytest.approx(1.0)


class MaxPixel(Detector):
    name = "max pixel"

    def _score(self, xb):
        return xb.flatten(1).amax(1)


def test_detector_interface():
    det = MaxPixel().fit(None)
    x_in, x_out = torch.zeros(10, 1, 4, 4), torch.ones(10, 1, 4, 4)
    assert det.score(x_in).shape == (10,)
    assert evaluate_detector(det, x_in, x_out)["auroc"] == 1.0
    with pytest.raises(NotImplementedError, match="decision rule"):
        det.is_outlier(x_in)
    det.threshold = 0.5
    assert det.is_outlier(x_out).all() and not det.is_outlier(x_in).any()


# ------------------------------------------------------------------ device choice (CUDA mocked)
@pytest.fixture
def fresh_device(monkeypatch):
    """get_device() recomputed under the test's environment and mocks, and restored afterwards."""
    from ccc_lib.utils import get_device
    monkeypatch.delenv("CCC_DEVICE", raising=False)
    get_device.cache_clear()
    yield get_device
    get_device.cache_clear()


def _fake_cuda(monkeypatch, available=True, count=1):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if available else 0)


def test_device_auto_prefers_cuda(fresh_device, monkeypatch):
    _fake_cuda(monkeypatch, True)
    assert fresh_device().type == "cuda"
    fresh_device.cache_clear()
    _fake_cuda(monkeypatch, False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert fresh_device().type == "cpu"


def test_device_override(fresh_device, monkeypatch):
    """CCC_DEVICE=cpu wins over an available GPU (without the override this machine would say cuda)."""
    _fake_cuda(monkeypatch, True)
    monkeypatch.setenv("CCC_DEVICE", "cpu")
    assert fresh_device().type == "cpu"
    fresh_device.cache_clear()
    monkeypatch.setenv("CCC_DEVICE", "cuda:0")
    assert fresh_device() == torch.device("cuda:0")


@pytest.mark.parametrize("value,available,count,match", [
    ("cuda", False, 0, "CUDA is not available"),
    ("cuda:3", True, 1, "only 1 CUDA device"),
    ("gpu", True, 1, "not a device"),
    ("xla", True, 1, "not supported"),
])
def test_device_override_errors_name_the_fix(fresh_device, monkeypatch, value, available, count, match):
    _fake_cuda(monkeypatch, available, count)
    monkeypatch.setenv("CCC_DEVICE", value)
    with pytest.raises(RuntimeError, match=match) as ei:
        fresh_device()
    assert "unset" in str(ei.value) or "use" in str(ei.value)


def test_loader_options_per_device(monkeypatch):
    from ccc_lib.utils import loader_options
    assert loader_options(torch.device("cpu")) == {"num_workers": 0, "pin_memory": False}
    monkeypatch.setenv("CCC_WORKERS", "3")
    cuda = loader_options(torch.device("cuda"))
    assert cuda == {"num_workers": 3, "pin_memory": True, "persistent_workers": True}
    monkeypatch.setenv("CCC_WORKERS", "0")
    assert loader_options(torch.device("cuda"))["persistent_workers"] is False


def test_seeded_loader_order_depends_only_on_its_seed():
    from torch.utils.data import TensorDataset
    from ccc_lib.utils import seeded_loader
    ds = TensorDataset(torch.arange(50))
    order = lambda seed: torch.cat([b[0] for b in seeded_loader(ds, 8, shuffle=True, seed=seed,
                                                                 device=torch.device("cpu"))])
    a = order(1)
    torch.rand(10)                                    # global RNG use in between changes nothing
    assert torch.equal(a, order(1)) and not torch.equal(a, order(2))
    assert sorted(a.tolist()) == list(range(50))


def test_predict_batch_size_follows_the_device(monkeypatch):
    from ccc_lib import train as T
    assert T.default_batch_size(torch.device("cpu")) == 512
    assert T.default_batch_size(torch.device("cuda")) == 4096
    monkeypatch.setenv("CCC_EVAL_BATCH", "64")
    assert T.default_batch_size(torch.device("cuda")) == 64


def test_cached_results_roundtrip_recompute_and_corrupt(tmp_path, monkeypatch):
    """``cache.cached``: the second call with the same numbers reads the stored result (same types:
    ccc_lib dataclasses, arrays, tuples, int-keyed dicts, tensors); other numbers recompute; a corrupt
    file is reported and recomputed; CCC_RESULT_CACHE=0 always computes."""
    import warnings
    from ccc_lib.experiments.counterfeits import RealStats
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    calls = []

    @C.cached("test-cached")
    def f(model, x, k: int = 2):
        calls.append(1)
        return {"stats": RealStats(1.0, 2.0, float(x.sum()), 4.0), 0: np.arange(k), "pair": (x * 2, "a"),
                "list": [1, None]}

    m, x = torch.nn.Linear(2, 2), torch.ones(3)
    a = f(m, x)
    b = f(m, x)
    assert len(calls) == 1
    assert isinstance(b["stats"], RealStats) and b["stats"] == a["stats"]
    assert isinstance(b[0], np.ndarray) and b[0].tolist() == [0, 1]
    assert isinstance(b["pair"], tuple) and torch.equal(b["pair"][0], x * 2) and b["list"] == [1, None]
    f(m, x, k=3)                                   # another setting
    f(m, x + 1)                                    # other numbers
    with torch.no_grad():
        m.weight.add_(1.0)                         # other weights
    f(m, x)
    assert len(calls) == 4
    for p in tmp_path.rglob("test-cached-*.pt"):
        p.write_bytes(b"not a checkpoint")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        f(m, x)
    assert len(calls) == 5 and any("unusable" in str(x.message) for x in w)
    monkeypatch.setenv("CCC_RESULT_CACHE", "0")
    f(m, x)
    assert len(calls) == 6


def test_cached_refuses_what_it_cannot_identify_or_store(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))

    @C.cached("test-cached")
    def g(obj):
        return object()

    with pytest.raises(TypeError, match="no stable text"):
        g(object())
    with pytest.raises(TypeError, match="cannot be stored"):
        g(1)


def test_predict_logits_cache_gives_the_same_numbers(tmp_path, monkeypatch):
    from ccc_lib.models import build_classifier
    from ccc_lib.train import predict_logits
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    torch.manual_seed(0)
    m = build_classifier(in_channels=1, image_size=28, num_classes=10, widths=(4, 8, 8), fc=16).eval()
    x = torch.rand(7, 1, 28, 28)
    want = predict_logits(m, x)
    assert torch.equal(predict_logits(m, x, cache=True), want)
    assert torch.equal(predict_logits(m, x, cache=True), want)       # read back
    assert len(list(tmp_path.rglob("logits-*.pt"))) == 1
    with torch.no_grad():
        next(m.parameters()).add_(1.0)
    assert not torch.equal(predict_logits(m, x, cache=True), want)  # new weights, new entry


def test_cache_hit_stamps_last_use_and_prune_removes_only_the_unused(tmp_path, monkeypatch):
    """``cache prune --unused-for``: a hit stamps the file's time of use, so pruning after a run keeps
    what the run read (however old the file) and removes the rest with its lock file; ``--dry-run``
    removes nothing; an artefact whose build lock is held is skipped."""
    import fcntl
    import time
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    root = tmp_path / "checkpoints"
    mk = lambda k: C.load_or_compute("prune-test", {"k": k}, lambda: {"x": torch.zeros(1000)}, root=root)
    for k in range(3):
        mk(k)
    paths = [C.checkpoint_path("prune-test", {"k": k}, root) for k in range(3)]
    old = time.time() - 3 * 86400
    for p in paths:
        os.utime(p, (old, old))
    assert mk(0)["from_cache"] is True                    # a hit: stamped now, three days later
    assert paths[0].stat().st_mtime > time.time() - 60
    assert [e.kind for e in C.cache_entries(root)] == ["prune-test"] * 3

    dry = C.prune(86400, root=root, dry_run=True)
    assert sorted(e.path for e in dry["removed"]) == sorted(paths[1:]) and all(p.exists() for p in paths)

    lock = paths[2].with_name(paths[2].name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)                        # another process is building entry 2
    try:
        r = C.prune(86400, root=root)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert [e.path for e in r["removed"]] == [paths[1]] and r["kept"] == 1 and r["busy"] == 1
    assert r["freed"] > 4000
    assert paths[0].exists() and not paths[1].exists() and paths[2].exists()
    assert not paths[1].with_name(paths[1].name + ".lock").exists()
    assert mk(1)["from_cache"] is False                   # pruned: built again when next asked for


def test_cache_cli_info_and_prune(tmp_path, monkeypatch, capsys):
    from ccc_lib.cli import main
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    C.load_or_compute("cli-test", {"k": 1}, lambda: {"x": torch.zeros(10)})
    (tmp_path / "drift-gray").mkdir()                     # the folder an older version's own cache used
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "1 artefacts" in out and "cli-test" in out and "checkpoints/" in out
    assert [ln for ln in out.splitlines() if "not used by this version" in ln] == \
        [ln for ln in out.splitlines() if ln.strip().startswith("drift-gray/")]
    assert main(["cache", "prune", "--unused-for", "1h", "--dry-run"]) == 0
    assert "would remove 0 artefacts" in capsys.readouterr().out
    os.utime(C.cache_entries()[0].path, (1e9, 1e9))       # last used in 2001
    assert main(["cache", "prune", "--unused-for", "1h", "--dry-run"]) == 0
    out = capsys.readouterr().out                         # what would go, by kind
    assert "would remove 1 artefacts" in out and "cli-test" in out and len(C.cache_entries()) == 1
    assert main(["cache", "prune", "--unused-for", "1h"]) == 0
    assert "removed 1 artefacts" in capsys.readouterr().out and not C.cache_entries()
    assert main(["cache", "info", "--top", "-1"]) == 2 and "0 or more" in capsys.readouterr().err
    assert main(["cache", "prune", "--unused-for", "two days"]) == 2
    assert "90s, 30m, 2h or 7d" in capsys.readouterr().err


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1.5d", 129600)])
def test_parse_duration(text, seconds):
    assert C.parse_duration(text) == seconds
