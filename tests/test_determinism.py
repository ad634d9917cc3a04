"""Same seed, same numbers: a classifier trained twice (or retrained after a corrupt checkpoint) has
bit-identical weights, the cache does not shift the random stream, and chapter 0 run twice on
``smoke`` from two cold caches — and once more from a warm one — writes the same metrics (minus times
and paths). CPU only: what differs on CUDA is listed in ``ccc_lib.utils``'s docstring."""
import random

import numpy as np
import pytest
import torch

from ccc_lib import cache as C
from ccc_lib.train import get_classifier
from ccc_lib.utils import configure_determinism, deterministic_enabled, rng_isolated, seed_everything
from _chapter_runs import normalise_metrics, read_metrics, run_chapter


def _states_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _disturb_rng():
    """Advance every global generator, as code running before a call would."""
    random.random(), np.random.rand(7), torch.rand(13)


def test_smoke_classifier_trains_identically(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "a"))
    seed_everything(0)
    m1, i1 = get_classifier("mnist5k", "smoke", seed=3, epochs=2)
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "b"))
    _disturb_rng()                                      # another history before the call: same weights
    m2, i2 = get_classifier("mnist5k", "smoke", seed=3, epochs=2)
    assert i1["from_cache"] is False and i2["from_cache"] is False
    assert _states_equal(m1, m2)
    assert i1["epoch_losses"] == i2["epoch_losses"] and i1["test_accuracy"] == i2["test_accuracy"]
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "c"))
    m3, _ = get_classifier("mnist5k", "smoke", seed=4, epochs=2)   # the check can fail: another seed differs
    assert not _states_equal(m1, m3)


def test_retrain_after_corrupt_checkpoint_gives_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    m1, info = get_classifier("mnist5k", "smoke", seed=0, epochs=2)
    with open(info["path"], "r+b") as fh:               # damage it: a half-written or corrupted file
        fh.truncate(100)
    _disturb_rng()
    with pytest.warns(RuntimeWarning, match="unusable"):
        m2, info2 = get_classifier("mnist5k", "smoke", seed=0, epochs=2)
    assert info2["from_cache"] is False and _states_equal(m1, m2)


@pytest.mark.parametrize("warm", [False, True])
def test_cache_does_not_shift_the_random_stream(tmp_path, warm):
    """What runs after ``load_or_train`` draws the same numbers whether the checkpoint was trained
    (consuming random numbers) or loaded — so a warm, cold or half-filled cache gives one result."""
    def train(m):
        torch.nn.init.normal_(m.weight)
        random.random(), np.random.rand(3)
        return {}

    cfg = {"rng": "transparent"}
    if warm:
        C.load_or_train(torch.nn.Linear(2, 2), "rng", cfg, train, root=tmp_path)
    seed_everything(1)
    meta = C.load_or_train(torch.nn.Linear(2, 2), "rng", cfg, train, root=tmp_path)
    after = (torch.rand(3), np.random.rand(3), random.random())
    seed_everything(1)
    torch.nn.Linear(2, 2)                                  # the caller builds its module in both cases
    expected = (torch.rand(3), np.random.rand(3), random.random())
    assert meta["from_cache"] is warm
    assert torch.equal(after[0], expected[0]) and np.array_equal(after[1], expected[1]) and after[2] == expected[2]


def test_rng_isolated_restores_every_generator():
    seed_everything(5)
    with rng_isolated():
        torch.rand(100), np.random.rand(100), random.random()
    a = (torch.rand(2), np.random.rand(2), random.random())
    seed_everything(5)
    b = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_deterministic_settings(monkeypatch):
    monkeypatch.delenv("CCC_DETERMINISTIC", raising=False)
    seed_everything(0)
    assert deterministic_enabled() and torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    monkeypatch.setenv("CCC_DETERMINISTIC", "0")          # the fast mode for long GPU runs
    try:
        assert configure_determinism() is False
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        configure_determinism(True)


@pytest.mark.slow
def test_chapter0_twice_gives_the_same_metrics(chapter0_reference, tmp_path):
    """Chapter 0 on ``smoke`` from a second cold cache, and again on the first (warm) cache."""
    ref, ref_cache, _ = chapter0_reference
    r = run_chapter("0", tmp_path / "cold", tmp_path / "cache")
    assert r.returncode == 0, r.stdout[-2000:]
    cold = read_metrics(tmp_path / "cold")
    r = run_chapter("0", tmp_path / "warm", ref_cache)
    assert r.returncode == 0, r.stdout[-2000:]
    warm = read_metrics(tmp_path / "warm")
    assert normalise_metrics(ref)["metrics"], "the chapter recorded no metrics"
    assert normalise_metrics(cold) == normalise_metrics(ref)
    assert normalise_metrics(warm) == normalise_metrics(ref)


def test_determinism_is_set_without_importing_inductor():
    """torch.use_deterministic_algorithms imports torch._inductor (about 2 s per kernel and worker); the
    book sets the flag itself, and the flag is the same."""
    import subprocess
    import sys
    code = ("import sys, torch; from ccc_lib.utils import configure_determinism; configure_determinism(True); "
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), "
            "'torch._inductor' in sys.modules); configure_determinism(False); print(torch.are_deterministic_algorithms_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "False", "False"], out.stdout + out.stderr
