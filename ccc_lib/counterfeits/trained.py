"""Chapter 1's trained generators: the settings per profile, the generator for a classifier from the
checkpoint cache (or trained now), our variant's chosen ε and τ, and the confident counterfeits the
other chapters' detectors score."""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn

from ..cache import NotCached, fingerprint, load_or_train
from ..checks import InputError, check_choice, check_fraction
from ..profiles import Profile, chapter_settings, get_profile
from ..utils import set_seed
from .generator import MODES, GeneratorConfig, VectorMatrixGenerator, validate_weights
from .training import PLATEAU, check_plateau, device_of, sample, train_generator

__all__ = ["VARIANTS", "SETTINGS", "SELECTION", "settings", "selection_settings", "selection_config", "ours_choice",
           "generator_settings", "sample_dropout", "get_generator", "confident_counterfeits", "AWAIT_ENV"]

#: set by ``python -m ccc_lib run`` when chapter 1 runs beside the chapter reading its generators: a file that
#: appears when chapter 1's run has ended; until then a generator not yet cached is waited for, not an error
AWAIT_ENV = "CCC_AWAIT_CHAPTER1"


#: the two generators: the paper's loss, and ours (+ ε·Div on features)
VARIANTS = ("paper", "ours")


_COMMON = dict(plateau=PLATEAU, nz=100, dropout=0.1, sample_dropout=True, ours_sample_dropout=True, alpha=4.0,
               beta=4.0, gamma=0.5, delta=0.5, epsilon=1.0, div_target=0.5)


#: per-profile settings. Loss weights α, β, γ, δ (paper, values not reported: ours), ε and τ of our
#: Div term, sampling with dropout on for both generators (the paper's "dropout during the generation
#: process"; the chapter shows dropout off beside it), training steps (equal for every generator compared), the ablation's steps, the slider
#: fine-tunes (steps, points per knob, samples per class), sample sizes, and ``n_seeds``: generator
#: seeds of the headline paper-vs-ours comparison (seed 0 is the one the figures show).
SETTINGS = {
    "smoke": dict(_COMMON, plateau=dict(PLATEAU, every=25, min_steps=50), channels=(8, 16, 32), steps=100,
                  batch_size=40, lr=4e-3, n_seeds=1,
                  ablation_steps=40, ablation_datasets=1, n_per_class=20, n_reference=1000,
                  slider_steps=4, slider_points=2, slider_n=4, bench_n=100),
    "default": dict(_COMMON, channels=(16, 32, 64), steps=500, batch_size=60, lr=5e-4, n_seeds=3,
                    ablation_steps=200, ablation_datasets=1, n_per_class=100, n_reference=10000,
                    slider_steps=30, slider_points=2, slider_n=20, bench_n=1000),
    "full": dict(_COMMON, channels=(64, 128, 256), steps=4000, batch_size=200, lr=5e-4, n_seeds=3,
                 ablation_steps=2000, ablation_datasets=2, n_per_class=500, n_reference=None,
                 slider_steps=200, slider_points=5, slider_n=50, bench_n=5000),
    # full's code paths on generated files: everything tiny
    "full_dry": dict(plateau=dict(PLATEAU, every=2, min_steps=2), channels=(4, 8, 8), steps=4, batch_size=20,
                     ablation_steps=2, n_per_class=4, n_seeds=2, n_reference=200, slider_steps=1, slider_points=2,
                     slider_n=2, bench_n=10),
}


#: how our variant's ε and τ (``epsilon``, ``div_target``) are chosen, per profile, on generated samples
#: alone (training images set the scale; never the test set): the candidate grid, the training steps of
#: every candidate (equal for all), samples per class, and scale images (``n_validation``).
#: The rule (:func:`ccc_lib.experiments.counterfeits.select_ours`): the largest feature diversity among
#: candidates whose worst-class share at ≥ 0.99 is ≥ ``min_worst_share``; if none qualifies, the
#: highest worst-class share. The paper's generator has no parameter chosen this way (α..δ are fixed).
SELECTION = {
    "smoke": dict(epsilons=(0.5, 2.0), taus=(0.5,), steps=30, n_per_class=10, n_validation=500,
                  min_worst_share=0.99),
    # default: the middle four of full's eight candidates (#37: the selection as a study at reduced size)
    "default": dict(epsilons=(1.0, 2.0), taus=(0.5, 0.7), steps=200, n_per_class=50,
                    n_validation=2000, min_worst_share=0.99),
    "full": dict(epsilons=(0.5, 1.0, 2.0, 4.0), taus=(0.5, 0.7), steps=1000, n_per_class=100,
                 n_validation=5000, min_worst_share=0.99),
    "full_dry": dict(epsilons=(0.5, 2.0), taus=(0.5,), steps=2, n_per_class=3, n_validation=100),
}


def settings(profile: str | Profile | None = None, **overrides) -> dict:
    """The chapter's settings at ``profile`` with ``overrides`` applied (unknown keys raise)."""
    try:
        return chapter_settings(SETTINGS, _profile(profile), **overrides)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def selection_settings(profile: str | Profile | None = None, **overrides) -> dict:
    """The selection grid and budget of our variant's ε, τ at ``profile`` (:data:`SELECTION`)."""
    try:
        return chapter_settings(SELECTION, _profile(profile), **overrides)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def selection_config(classifier: nn.Module, dataset: str, profile: str | Profile | None = None,
                     seed: int = 0) -> dict:
    """The cache key of our variant's (ε, τ) selection for ``classifier`` on ``dataset``: the
    classifier's fingerprint, the grid and budget, and every other training setting."""
    s = settings(profile)
    return {"classifier": fingerprint(classifier), "dataset": dataset, "seed": seed,
            "selection": {k: list(v) if isinstance(v, tuple) else v for k, v in selection_settings(profile).items()},
            "train": {k: s[k] for k in _TRAIN_KEYS if k not in ("steps", "epsilon", "div_target")},
            "generator": {k: list(s[k]) if k == "channels" else s[k] for k in ("nz", "channels", "dropout")},
            "sample_dropout": bool(s["ours_sample_dropout"]), "plateau": s["plateau"], "version": 2}


def ours_choice(classifier: nn.Module, dataset: str, profile: str | Profile | None = None, seed: int = 0) -> dict:
    """Our variant's chosen ``{"epsilon": ..., "div_target": ...}`` for ``classifier`` on ``dataset``,
    from the selection chapter 1 ran (cached); raises
    :class:`ccc_lib.cache.NotCached` if it has not run at this profile."""
    from ..cache import load_or_compute
    out = load_or_compute("ch1-ours-selection", selection_config(classifier, dataset, profile, seed),
                          None, cache_only=True)
    return {"epsilon": float(out["meta"]["epsilon"]), "div_target": float(out["meta"]["div_target"])}


def _profile(profile) -> Profile:
    try:
        return get_profile(profile)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


_TRAIN_KEYS = ("steps", "batch_size", "lr", "alpha", "beta", "gamma", "delta", "epsilon", "div_target")


def generator_settings(profile: str | Profile | None = None, variant: str = "paper", **overrides) -> dict:
    """The settings a variant trains with: ``"paper"`` forces ε = 0 (the paper's loss)."""
    check_choice(variant, "variant", VARIANTS)
    s = settings(profile, **overrides)
    if variant == "paper":
        s["epsilon"] = 0.0
    return s


def sample_dropout(variant: str, s: dict) -> bool:
    """Whether ``variant`` samples with dropout active: the paper's setting ``sample_dropout`` (its
    "heavy dropout during generation"), ours ``ours_sample_dropout``."""
    check_choice(variant, "variant", VARIANTS)
    return bool(s["sample_dropout"] if variant == "paper" else s["ours_sample_dropout"])


def get_generator(classifier: nn.Module, dataset: str, profile: str | Profile | None = None, *,
                  variant: str = "paper", mode: str = "counterfeit", seed: int = 0, tag: str = "",
                  feature_layer: str | None = None, force: bool = False, cache_only: bool = False,
                  plateau: bool = False, also_at=(), **overrides):
    """The generator for ``classifier`` (trained on ``dataset`` at ``profile``), from the checkpoint
    cache or trained now. ``variant="paper"`` (the paper's loss, ε = 0) or ``"ours"`` (+ ε·Div);
    ``overrides`` replace entries of :data:`SETTINGS` (loss weights, dropout, steps, ...). With
    ``plateau=True`` it trains until the plateau test (:data:`PLATEAU`) passes, ``steps`` the cap (how
    chapter 1 trains every generator). ``also_at``: smaller caps whose generators are this run's
    weights at that step (identical to training them on their own: same seed, same stream), cached
    under their own keys as a by-product. Returns ``(generator, info)``: the generator in eval mode on
    the classifier's device; ``info`` holds the per-term loss ``history``, ``train_seconds``,
    ``stopped_at``, ``plateau_reached``, ``settings``, ``variant`` and ``from_cache``.

    The cache key holds the dataset, tag, seed, mode, variant, the settings (and the plateau rule when
    used) and a fingerprint of the classifier's weights, so a different classifier gets a different
    generator. With ``cache_only=True`` a generator that is not cached raises
    :class:`ccc_lib.cache.NotCached` instead of being trained (how chapters 2-4 reuse chapter 1's)."""
    prof = _profile(profile)
    check_choice(mode, "mode", MODES)
    if not isinstance(classifier, nn.Module):
        raise InputError(f"classifier: expected a torch nn.Module, got {type(classifier).__name__}")
    if not isinstance(dataset, str) or not dataset:
        raise InputError(f"dataset must be a non-empty name (the cache key), got {dataset!r}")
    s = generator_settings(prof, variant, **overrides)
    validate_weights(s["alpha"], s["beta"], s["gamma"], s["delta"], s["epsilon"])
    rule = check_plateau(s["plateau"]) if plateau else None
    shape = _input_shape(classifier)
    n_classes = _num_classes(classifier, shape)
    cfg = GeneratorConfig(num_classes=n_classes, out_channels=shape[0], image_size=shape[1],
                          nz=int(s["nz"]), channels=tuple(int(c) for c in s["channels"]),
                          dropout=float(s["dropout"]), mode=mode)
    train_kw = {k: s[k] for k in _TRAIN_KEYS}

    def key_at(cap: int) -> dict:
        key = {"generator": cfg.to_dict(), "train": {**train_kw, "steps": int(cap)}, "dataset": dataset, "tag": tag,
               "seed": seed, "classifier": fingerprint(classifier), "feature_layer": feature_layer, "version": 2}
        return key if rule is None else {**key, "plateau": rule}

    kind, snaps = f"generator-{dataset}-{mode}", {}

    def train(g):
        out = train_generator(g, classifier, seed=seed, feature_layer=feature_layer, plateau=rule,
                              snapshots=also_at, desc=f"{dataset} {variant} {mode} generator", **train_kw)
        snaps.update(out.pop("snapshots"))
        return out

    set_seed(seed)
    gen = VectorMatrixGenerator(cfg).to(device_of(classifier))
    meta = load_or_train(gen, kind, key_at(train_kw["steps"]), train, force=force, cache_only=cache_only)
    for cap in sorted({int(c) for c in also_at if 0 < int(c) < int(train_kw["steps"])}):
        _store_prefix(gen, meta, snaps.get(cap), cap, kind, key_at(cap))
    gen.eval()
    info = {**meta, "dataset": dataset, "mode": mode, "variant": variant, "seed": seed, "tag": tag,
            "settings": s, "config": cfg.to_dict()}
    info.setdefault("stopped_at", info.get("steps"))
    info.setdefault("plateau_reached", False)
    return gen, info


def _store_prefix(gen, meta: dict, snap, cap: int, kind: str, key: dict) -> None:
    """Cache the run's weights at step ``cap`` under the key of a run capped there (the same run up to
    there); a run that stopped on its plateau before ``cap`` is that run, whole. Nothing to do when
    the long run came from the cache (its prefixes were stored when it trained) or the entry exists."""
    if meta["from_cache"]:
        return
    stopped = int(meta.get("stopped_at", meta["steps"]))
    if snap is None and stopped > cap:
        return

    def fill(g):
        if stopped <= cap:
            g.load_state_dict(gen.state_dict())
            return {k: v for k, v in meta.items() if k not in ("from_cache", "path")} | {"steps": cap}
        state, n, seconds = snap
        g.load_state_dict(state)
        return {k: v for k, v in meta.items() if k not in ("from_cache", "path", "history")} | {
            "history": {k: v[:n] for k, v in meta["history"].items()}, "train_seconds": seconds, "steps": cap,
            "stopped_at": cap, "plateau_reached": False, "prefix_of": int(meta["steps"])}

    load_or_train(VectorMatrixGenerator(gen.config).to(next(gen.parameters()).device), kind, key, fill)


def _input_shape(model: nn.Module) -> tuple:
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise InputError("the classifier needs an `input_shape` attribute (C, H, W); set it, e.g. "
                         "model.input_shape = (1, 28, 28)")
    if len(tuple(shape)) != 3:
        raise InputError(f"classifier.input_shape must be (C, H, W), got {shape!r}")
    c, h, w = (int(v) for v in shape)
    if h != w:
        raise InputError(f"the generator draws square images; the classifier expects {c}×{h}×{w}")
    return c, h, w


def _num_classes(model: nn.Module, shape) -> int:
    n = getattr(model, "num_classes", None)
    if n is None:
        was = model.training
        model.eval()
        with torch.no_grad():
            n = model(torch.zeros(2, *shape, device=device_of(model))).shape[1]
        model.train(was)
    return int(n)


def confident_counterfeits(classifier: nn.Module, dataset: str, profile: str | Profile | None = None,
                           n_per_class: int = 100, seed: int = 0, threshold: float = 0.99,
                           variant: str = "paper") -> dict:
    """Chapter 1's counterfeits of ``classifier`` for the other chapters' detectors to score:
    ``n_per_class`` images per class from the *cached* generator of ``variant`` ("paper": the
    headline; "ours", at the ε and τ chapter 1 chose, :func:`ours_choice`),
    sampled as the chapter samples (dropout on when the settings say so);
    raises :class:`ccc_lib.cache.NotCached` if chapter 1 has not trained it at this profile. Keeps
    those the classifier labels as intended with confidence ≥ ``threshold``. Returns :func:`sample`'s
    dict restricted to the kept images, plus ``n_sampled``, ``variant`` and ``info``."""
    check_fraction(threshold, "threshold", open_interval=False)

    def cached():
        chosen = ours_choice(classifier, dataset, profile, seed) if variant == "ours" else {}
        return get_generator(classifier, dataset, profile, variant=variant, seed=seed, cache_only=True, plateau=True,
                             **chosen)
    gen, info = _await_chapter1(cached, f"chapter 1's {variant!r} generator for {dataset}")
    s = sample(gen, classifier, n_per_class, seed=seed, dropout=sample_dropout(variant, info["settings"]))
    keep = (s["confidence"] >= threshold) & (s["pred"] == s["y"])
    out = {k: v[keep] for k, v in s.items()}
    return {**out, "n_sampled": int(len(keep)), "variant": variant, "info": info}


def _await_chapter1(fn, what: str, poll: float = 5.0):
    """``fn()``; where it raises :class:`NotCached` while chapter 1 runs beside this chapter (the file named by
    :data:`AWAIT_ENV` does not exist yet), wait for chapter 1 to cache it and try again. Once chapter 1's run
    has ended (or where nothing runs beside), NotCached goes to the caller, whose message names the fix."""
    marker, said = os.environ.get(AWAIT_ENV), False
    while True:
        try:
            return fn()
        except NotCached:
            if not marker or Path(marker).exists():
                raise
            if not said:
                print(f"waiting for {what}: chapter 1 runs beside this chapter and has not cached it yet", flush=True)
                said = True
            time.sleep(poll)
