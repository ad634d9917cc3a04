"""Train K small independent models of one architecture as one stacked model.

The book trains many small models one after another (ten per-class INNs per method and feature set,
eight selection candidates, thirty drift models); each step of each is a few dozen tiny kernels, so on a
GPU the time goes to kernel launches and Python, not arithmetic. :class:`Stack` holds the K models'
parameters stacked along a new leading dimension (``torch.func.stack_module_state``) and evaluates all
K at once with ``torch.func.vmap`` over ``torch.func.functional_call``: one launch per operation for
all K models instead of K.

Why the result is the same as K separate trainings
--------------------------------------------------
* **the loss**: the stacked loss is the *sum* of the K models' losses, so the gradient of model k's
  slice is exactly the gradient of model k's own loss (the other terms do not depend on it); a mean
  would scale every gradient by 1/K, which Adam almost — not exactly (ε) — ignores;
* **Adam** (and AdamW, SGD with momentum, weight decay) is elementwise: each entry's update depends only
  on that entry's gradient, its own two moments and the step count, which all K models share (they
  step together). So one Adam over the stacked tensors *is* K Adams. The learning-rate schedule is a
  function of the step count: also shared. (Not elementwise, and handled here: gradient-norm clipping,
  :meth:`Stack.clip_grad_norm_` computes one norm per model; anything that couples entries — LBFGS,
  Adafactor's factored moments, a global loss scaler — would not be equivalent.)
* **randomness**: every model keeps its own data order and noise (the caller draws them per model from
  the model's own generator and stacks the batches), so the K batches are the ones the separate
  trainings would see.

``tests/test_batched.py`` trains a small MLP and chapter 3's INN (``ccc_lib.iocn``'s constructor and
Algorithm 1 / the flow's likelihood, via :func:`train_inns_batched`) both ways and compares the weights.
What cannot be batched this way: models of different shapes (pad or group them), data-dependent Python
control flow inside ``forward`` (``if x.max() > ...``), ``.item()`` in ``forward`` and in-place writes to
parameters or buffers during ``forward`` (e.g. BatchNorm's running statistics in training mode: use
``torch.func.replace_all_batch_norm_modules_`` or eval-mode BN).
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = ["Stack", "train_inns_batched", "fit_stacked"]


class _Apply(nn.Module):
    """Calls ``fn(module, *args)`` as its forward, so that :func:`functional_call` can run any function of
    a module (a loss, an inverse) with swapped-in parameters, not only ``forward``."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, fn, *args):
        return fn(self.m, *args)


class Stack:
    """K models of one architecture, stacked: ``params[name]`` has shape ``(K, *shape)``.

    ``Stack(models).map(fn, *args)`` evaluates ``fn(model_k, *args_k)`` for every k at once (``args``
    carry the model dimension first; ``in_dims`` says otherwise) and returns the outputs stacked along
    a leading K. Train with any elementwise optimiser over :meth:`parameters` and a loss summed over
    the K models; :meth:`clip_grad_norm_` clips each model by its own gradient norm; :meth:`unstack`
    writes the weights back into K modules."""

    def __init__(self, models: Sequence[nn.Module]):
        models = list(models)
        if not models:
            raise ValueError("Stack needs at least one model")
        shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in models]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("Stack: the models differ in architecture (parameter names or shapes); only models of one "
                             "architecture can be stacked")
        params, buffers = stack_module_state(models)
        self.k = len(models)
        frozen = {n for n, p in models[0].named_parameters() if not p.requires_grad}   # e.g. FrEIA's w_perm
        self.params = {n: nn.Parameter(p.detach().clone(), requires_grad=n not in frozen) for n, p in params.items()}
        self.buffers = {n: b.detach().clone() for n, b in buffers.items()}
        self._base = _Apply(copy.deepcopy(models[0]).to("meta"))
        self._models = models

    def parameters(self) -> list[nn.Parameter]:
        """The stacked parameters that are trained (frozen ones, ``requires_grad=False``, left out)."""
        return [p for p in self.params.values() if p.requires_grad]

    def map(self, fn: Callable, *args, in_dims=0, randomness: str = "error"):
        """``fn(model_k, *args_k)`` for all k at once; outputs stacked along a leading K."""
        state = {**{f"m.{n}": p for n, p in self.params.items()}, **{f"m.{n}": b for n, b in self.buffers.items()}}

        def one(state_k, *a):
            return functional_call(self._base, state_k, (fn, *a))

        dims = (0,) + ((in_dims,) * len(args) if not isinstance(in_dims, tuple) else tuple(in_dims))
        return vmap(one, in_dims=dims, randomness=randomness)(state, *args)

    @torch.no_grad()
    def grad_norms(self) -> torch.Tensor:
        """Each model's total gradient 2-norm (what ``clip_grad_norm_`` of that model alone computes)."""
        per = [torch.linalg.vector_norm(p.grad.reshape(self.k, -1), dim=1) for p in self.params.values()
               if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(per), dim=0)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` per model: scale model k's gradients by
        ``min(1, max_norm / (norm_k + 1e-6))``; returns the K norms before clipping."""
        norms = self.grad_norms()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for p in self.params.values():
            if p.grad is not None:
                p.grad.mul_(coef.reshape(-1, *([1] * (p.grad.dim() - 1))).to(p.grad.dtype))
        return norms

    @torch.no_grad()
    def unstack(self, models: Sequence[nn.Module] | None = None) -> list[nn.Module]:
        """Copy the stacked weights and buffers into ``models`` (default: the models stacked) and return them."""
        models = list(models) if models is not None else self._models
        for k, m in enumerate(models):
            m.load_state_dict({**{n: p[k] for n, p in self.params.items()},
                               **{n: b[k] for n, b in self.buffers.items()}}, strict=True)
        return models


# --------------------------------------------------------------------------- chapter 3's INNs, K at once

def train_inns_batched(models: Sequence[nn.Module], xs: Sequence[torch.Tensor], tc,
                       eval_fns: Sequence[Callable] | None = None) -> list[dict]:
    """:func:`ccc_lib.iocn.train_inn` for K INNs of one architecture at once (one per class, say): the
    same Algorithm 1 (``tc.objective="iocn"``) or likelihood (``"flow"``) with the library's own
    losses (:func:`~ccc_lib.iocn.iocn_loss`, :func:`~ccc_lib.iocn.flow_loss`), Adam, warm-up + cosine
    schedule, per-model gradient clipping and blow-up checks; model k draws its batches, cube samples and
    noise from its own generator seeded with ``tc.seed``, as ``train_inn`` does, so it sees the batches
    it would see alone. ``xs[k]`` are model k's training rows (standardised by its buffers); every
    model must get the same batch size (``min(tc.batch_size, len(xs[k]))``). Returns one metadata dict
    per model (loss history, seconds per step shared out over the K models). With ``tc.eval_at``,
    ``eval_fns[k](model_k) -> dict`` is called after each of those steps (the stacked weights written back
    into model k first; eval mode, no grad) and recorded with the step and model k's share of the training
    wall-clock so far, as ``train_inn`` records its ``eval_fn``. The models are trained in place."""
    from . import iocn
    from .checks import InputError, check_features
    from .utils import cpu_threads, get_device, set_seed
    if tc.objective not in ("iocn", "flow"):
        raise InputError(f"objective must be 'iocn' or 'flow', not {tc.objective!r}")
    models, dev = list(models), get_device()
    eval_at = set(int(s) for s in tc.eval_at)
    if eval_fns is not None and len(eval_fns) != len(models):
        raise InputError(f"{len(models)} models but {len(eval_fns)} eval_fns")
    if len(models) != len(xs):
        raise InputError(f"{len(models)} models but {len(xs)} training sets")
    xs = [check_features(x, f"training data {k}", dim=m.cfg.dim) for k, (m, x) in enumerate(zip(models, xs))]
    bszs = {min(tc.batch_size, len(x)) for x in xs}
    if len(bszs) != 1:
        raise InputError(f"train_inns_batched: the batch sizes differ ({sorted(bszs)}): give every model at least "
                         f"tc.batch_size={tc.batch_size} rows, or train the small ones one by one")
    bsz = bszs.pop()
    with cpu_threads(tc.cpu_threads):
        set_seed(tc.seed)
        for m in models:
            m.to(dev).train()
        xn = [((x.to(dev) - m.shift) / m.scale) for m, x in zip(models, xs)]
        d = xn[0].shape[1]
        stack = Stack(models)
        opt = torch.optim.Adam(stack.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, iocn.lr_lambda(tc))
        gens = [torch.Generator(device="cpu").manual_seed(tc.seed) for _ in models]
        perms = [torch.randperm(len(x), generator=g) for x, g in zip(xn, gens)]
        pos = [0] * len(models)
        hist = [{"loss": [], "pull": [], "push": []} for _ in models]
        evals = [[] for _ in models]
        t_train = 0.0

        def iocn_fn(m, xb, zt):
            loss, pull, push, z, x_tilde = iocn.iocn_loss(m, xb, zt, tc.pull, tc.stop_gradient)
            return loss, pull, push, z.abs().amax(), x_tilde.detach().abs().amax()

        def flow_fn(m, xb):
            loss, z = iocn.flow_loss(m, xb)
            return loss, z.abs().amax()

        for step in range(1, tc.steps + 1):
            t0 = time.perf_counter()
            xb, zt = [], []
            for k, g in enumerate(gens):                      # model k's draws, in train_inn's order
                if pos[k] + bsz > len(xn[k]):
                    perms[k], pos[k] = torch.randperm(len(xn[k]), generator=g), 0
                b = xn[k][perms[k][pos[k]:pos[k] + bsz].to(dev)]
                pos[k] += bsz
                if tc.noise > 0:
                    b = b + tc.noise * torch.randn(b.shape, generator=g).to(dev)
                xb.append(b)
                if tc.objective == "iocn":
                    zt.append(torch.rand(bsz, d, generator=g).to(dev) * 2 - 1)
            xb = torch.stack(xb)
            if tc.objective == "iocn":
                loss, pull, push, zmax, xt_max = stack.map(iocn_fn, xb, torch.stack(zt))
                _check(~(xt_max < tc.blowup), step, "the pre-images INN⁻¹(z) of cube samples reached |x̃| =", xt_max, tc)
            else:
                loss, zmax = stack.map(flow_fn, xb)
                pull, push = loss, torch.zeros_like(loss)
            _check(~torch.isfinite(loss), step, "the loss became", loss, tc)
            _check(~(zmax < tc.blowup), step, "latent codes reached |z| =", zmax, tc)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()                            # the sum: each slice gets its own model's gradient
            gnorm = stack.clip_grad_norm_(tc.clip)
            _check(~torch.isfinite(gnorm), step, "the gradient norm is", gnorm, tc)
            opt.step()
            sched.step()
            t_train += time.perf_counter() - t0
            for k in range(len(models)):
                hist[k]["loss"].append(float(loss[k].detach()))
                hist[k]["pull"].append(float(pull[k].detach()))
                hist[k]["push"].append(float(push[k].detach()))
            if eval_fns is not None and step in eval_at:
                for k, m in enumerate(stack.unstack()):
                    m.eval()
                    with torch.no_grad():
                        ev = eval_fns[k](m)
                    m.train()
                    evals[k].append({"step": step, "train_seconds": t_train / len(models), **ev})
        stack.unstack()
    for m in models:
        m.eval()
    return [{"history": h, "train_seconds": t_train / len(models), "seconds_per_step": t_train / len(models) / max(tc.steps, 1),
             "steps": tc.steps, "evals": ev, "objective": tc.objective, "n_train": len(x), "device": str(dev),
             "batched": len(models)} for h, x, ev in zip(hist, xn, evals)]


def fit_stacked(dets: Sequence, datas: Sequence, eval_fns: Sequence[Callable] | None = None) -> list:
    """Fit K INN detectors (:class:`ccc_lib.iocn.IOCN` or :class:`~ccc_lib.iocn.FlowDetector`, one
    architecture, one training config) as one stacked model: what ``det.fit(x, eval_fn)`` does for each,
    through the same checkpoints (a detector whose checkpoint is cached is loaded, not retrained; the others
    are trained together by :func:`train_inns_batched` and each is stored under the key its own ``fit``
    would use, so a later ``fit`` loads it). Returns the detectors, fitted."""
    from .cache import NotCached, config_hash, load_or_train
    from .checks import InputError
    dets = list(dets)
    if len(dets) != len(datas) or (eval_fns is not None and len(eval_fns) != len(dets)):
        raise InputError(f"fit_stacked: {len(dets)} detectors, {len(datas)} training sets"
                         + ("" if eval_fns is None else f", {len(eval_fns)} eval_fns"))
    preps, todo = [d.prepare(x) for d, x in zip(dets, datas)], []
    for i, (d, (x, model, key)) in enumerate(zip(dets, preps)):
        if key is not None:
            try:
                d.finish(model, load_or_train(model, d.cache_kind, key, None, cache_only=True))
                continue
            except NotCached:
                pass
        todo.append(i)
    if not todo:
        return dets
    if len({(dets[i].objective, config_hash(dets[i].train_cfg.to_dict())) for i in todo}) != 1:
        raise InputError("fit_stacked: the detectors differ in objective or training config; stack only detectors "
                         "trained alike (group them by method and settings)")
    metas = train_inns_batched([preps[i][1] for i in todo], [preps[i][0] for i in todo], dets[todo[0]].train_cfg,
                               eval_fns=None if eval_fns is None else [eval_fns[i] for i in todo])
    for i, meta in zip(todo, metas):
        x, model, key = preps[i]
        meta = (load_or_train(model, dets[i].cache_kind, key, lambda m, meta=meta: meta) if key is not None
                else {**meta, "from_cache": False})
        dets[i].finish(model, meta)
    return dets


def _check(bad: torch.Tensor, step: int, what: str, values: torch.Tensor, tc) -> None:
    """Raise :class:`ccc_lib.iocn.INNTrainingError` naming the first model whose check failed."""
    if bool(bad.any()):
        from . import iocn
        k = int(torch.nonzero(bad).flatten()[0])
        raise iocn.INNTrainingError(f"{tc.objective.upper()} step {step}, model {k} of {len(bad)} (batched): {what} "
                                    f"{float(values[k].detach()):.3g} (limit {tc.blowup:g}). {iocn.training_advice(tc)}.")
