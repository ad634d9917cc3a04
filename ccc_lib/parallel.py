"""Independent jobs side by side: one small helper on joblib, the same code on a laptop and a cluster.

Much of the book's training is many *small, independent* models (one INN per class, one selection
candidate per (ε, τ), one drift model per seed), each too small to keep two cores busy. :func:`run_jobs`
runs a top-level function over a list of keyword-argument dicts, side by side, and returns the results
in the order of the jobs::

    from ccc_lib.parallel import run_jobs
    scores = run_jobs(train_one_class, [{"cls": c, "seed": 0, "profile": p} for c in range(10)])

How the jobs run
----------------
* ``n_jobs``: the argument, else ``CCC_JOBS``, else the number of CPU cores this process may use.
* ``backend``: the argument, else ``CCC_JOBLIB_BACKEND``, else ``"loky"`` (joblib's default: reusable worker
  *processes*). ``"sequential"`` runs the jobs one after another in this process, and is used by itself
  when ``n_jobs == 1`` or there is only one job. ``"dask"`` sends them to an existing
  ``dask.distributed`` cluster (see below).
* In a worker process each job runs with ``torch.set_num_threads(1)`` (``threads`` per job: small models
  are fastest on one thread and n_jobs × 1 threads never oversubscribe the cores), the deterministic
  settings of :func:`ccc_lib.utils.configure_determinism` as in the caller, and the caller's ``CCC_*``
  environment at the time of the call (a reused worker may have been started under another one). A job
  started from a worker runs its own ``run_jobs`` calls sequentially (``CCC_JOBS=1`` there).
* Every job — in any backend, sequential included — runs on its own random stream, seeded from the
  job's keyword arguments (:func:`job_seed`) and restored afterwards: a job's result depends only on its
  arguments, not on which worker ran it or what ran there before, so the parallel and the sequential
  runs give the same numbers (``tests/test_parallel.py``). Jobs that want their own seed take it as an
  argument and call :func:`ccc_lib.utils.seed_everything` themselves, as usual.
* An exception in a job is raised here as :class:`JobError` naming the job (its index and arguments)
  with the original error and its traceback. In a worker backend the other jobs still run to the end
  first (their artefacts land in the cache, and the warm workers are kept); the sequential backend stops
  at the failing job.

The cache makes jobs resumable
------------------------------
A job should put what it trains or computes through :mod:`ccc_lib.cache` (``load_or_train``,
``load_or_compute``, ``@cached``). The cache claims each artefact with a file lock, so two jobs (or two
machines on a shared file system) that ask for the same artefact build it once — the second waits and
reads it — and a run that is interrupted (Ctrl-C, a failed job, a killed node) resumes from every artefact
already written: rerun the same ``run_jobs`` call and only the missing ones are computed.

A finished call is remembered
-----------------------------
When every job of a call succeeds, the call is recorded in the cache (with the jobs' results) under the
function's name, the identity of the jobs' arguments (``ccc_lib.cache`` identities: numbers and text as
themselves, tensors and models by fingerprint), the deterministic setting and a hash of ccc_lib's
sources. A worker pool costs each worker its imports (torch, ccc_lib, the field's libraries: seconds
each) even when every job is a cache hit, so the same call again — a warm rebuild — starts no pool:

* ``when_done="in_process"`` (the default): the jobs run in this process, one after another; they read
  their artefacts from the cache (anything pruned since is computed here), and their results are this
  run's (e.g. "read from the cache", 0 s of training);
* ``when_done="skip"``: for a caller that uses the jobs only to fill the cache and reads (or computes)
  every artefact itself afterwards: the recorded results are returned and nothing runs;
* ``when_done="run"``: the jobs run as if no call were on record.

``CCC_RESULT_CACHE=0``, arguments without a stable identity, or any change to ccc_lib's code run the
jobs as if no call were on record.

The same code on a cluster (Dask)
---------------------------------
Nothing in the jobs changes; start a ``dask.distributed`` client and select joblib's Dask backend, by
argument, by environment or by joblib's own context manager::

    from dask.distributed import Client
    import joblib
    client = Client("tcp://scheduler:8786")        # or Client(LocalCluster(...)), or dask-jobqueue's SLURMCluster
    with joblib.parallel_config(backend="dask"):
        scores = run_jobs(train_one_class, jobs)    # unchanged call
    # equivalently: run_jobs(..., backend="dask"), or CCC_JOBLIB_BACKEND=dask in the environment

The workers need ``ccc_lib`` importable and the same ``CCC_CACHE`` (a shared file system, so the lock
claim and the artefacts are shared; the locks are ``flock`` — NFSv4 and Lustre support it). With the
Dask backend ``n_jobs`` defaults to every Dask worker. Use worker *processes* (Dask's default,
``threads_per_worker=1``): jobs on threads of one process share torch's global random generator, so
their streams are not isolated (a warning says so).
"""
from __future__ import annotations

import os
import traceback
import warnings
from typing import Callable, Sequence

__all__ = ["run_jobs", "JobError", "resolve_n_jobs", "resolve_backend", "job_seed", "BACKENDS"]

#: the backends :func:`run_jobs` accepts
BACKENDS = ("loky", "dask", "sequential")

_WORKER_FLAG = "CCC_PARALLEL_WORKER"


class JobError(RuntimeError):
    """A job of :func:`run_jobs` raised; the message names the job (index and arguments), the error
    and its traceback. ``index``, ``job`` (a short text of the arguments) and ``error`` (the original
    exception's type and message) are attributes."""

    def __init__(self, index: int, job: str, error: str, tb: str = ""):
        self.index, self.job, self.error, self.tb = index, job, error, tb
        super().__init__(f"job {index} ({job}) failed: {error}" + (f"\n--- the job's traceback ---\n{tb}" if tb else ""))

    def __reduce__(self):                 # survives pickling back from a worker process
        return (JobError, (self.index, self.job, self.error, self.tb))


def available_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:           # macOS, Windows
        return max(1, os.cpu_count() or 1)


def resolve_n_jobs(n_jobs: int | None = None) -> int:
    """``n_jobs``, else ``CCC_JOBS``, else the CPU cores this process may use; a bad value is an error
    naming the fix."""
    from .checks import InputError
    source = "n_jobs"
    if n_jobs is None:
        env = os.environ.get("CCC_JOBS", "").strip()
        if not env:
            return available_cores()
        source = "CCC_JOBS"
        try:
            n_jobs = int(env)
        except ValueError:
            raise InputError(f"CCC_JOBS={env!r} is not a whole number; set it to how many jobs run side by side "
                             f"(e.g. 2), or unset it to use every core") from None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise InputError(f"{source}={n_jobs!r}: give how many jobs run side by side, 1 or more (1 = one after another)")
    return n_jobs


def resolve_backend(backend: str | None = None) -> str | None:
    """``backend``, else ``CCC_JOBLIB_BACKEND``, else None (joblib's active backend: loky unless the caller
    is inside ``joblib.parallel_config(backend=...)``). An unknown name is an error listing :data:`BACKENDS`."""
    from .checks import InputError
    source = "backend"
    if backend is None:
        backend = os.environ.get("CCC_JOBLIB_BACKEND", "").strip() or None
        source = "CCC_JOBLIB_BACKEND"
    if backend is not None and backend not in BACKENDS:
        raise InputError(f"{source}={backend!r} is not a backend run_jobs knows; use one of {', '.join(BACKENDS)}")
    return backend


def job_seed(job: dict) -> int:
    """The seed of a job's own random stream: from a hash of its arguments (tensors and models by their
    :func:`ccc_lib.cache.fingerprint`), so it does not depend on the job's position or worker."""
    from .cache import config_hash
    return int(config_hash({"run_jobs": job}), 16) % (2**31 - 1)


def _describe(job: dict, limit: int = 300) -> str:
    """A short text of a job's arguments: tensors and arrays by shape and dtype, long values cut."""
    parts = []
    for k, v in job.items():
        shape = getattr(v, "shape", None)
        if shape is not None and hasattr(v, "dtype"):
            text = f"{type(v).__name__}(shape={tuple(shape)}, dtype={v.dtype})"
        else:
            text = repr(v)
            if len(text) > 80:
                text = text[:77] + "..."
        parts.append(f"{k}={text}")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _run_one(fn: Callable, index: int, job: dict, seed: int, ctx: dict | None):
    """Run one job (in a worker when ``ctx`` is given: its threads, determinism and environment first).
    In a worker a failure comes back as a :class:`_Failed` record, not an exception: joblib would stop
    the other jobs and kill the (warm, reusable) workers."""
    import torch
    from .utils import configure_determinism, rng_isolated
    if ctx is not None:
        for k in [k for k in os.environ if k.startswith("CCC_") and k not in ctx["env"]]:
            del os.environ[k]
        os.environ.update(ctx["env"])
        if ctx["threads"]:
            torch.set_num_threads(ctx["threads"])
        configure_determinism(ctx["deterministic"])
    try:
        with rng_isolated():
            _seed_all(seed)
            return fn(**job)
    except Exception as exc:
        if ctx is None:
            raise JobError(index, _describe(job), f"{type(exc).__name__}: {exc}") from exc
        return _Failed(JobError(index, _describe(job), f"{type(exc).__name__}: {exc}", traceback.format_exc()))


class _Failed:
    """A job's exception, carried back from a worker as a result."""

    def __init__(self, error: JobError):
        self.error = error


def _seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch for one job (without touching the deterministic settings)."""
    import random
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _check_fn(fn: Callable) -> None:
    from .checks import InputError
    if not callable(fn):
        raise InputError(f"run_jobs: fn must be a function, got {type(fn).__name__}")
    qual = getattr(fn, "__qualname__", "")
    if "<lambda>" in qual or "<locals>" in qual:
        raise InputError(f"run_jobs: {qual} is a lambda or a function defined inside another one; worker processes "
                         f"and cluster nodes import the function by name, so define it at the top level of a module "
                         f"(e.g. in ccc_lib/experiments/<chapter>.py) and pass its settings in the job dicts")


def _dask_client():
    try:
        from distributed import get_client
    except ImportError:
        raise RuntimeError("run_jobs(backend='dask') needs dask.distributed: pip install 'distributed>=2024.1'") from None
    try:
        return get_client()
    except ValueError:
        raise RuntimeError("run_jobs(backend='dask') found no Dask client: start one first, e.g. "
                           "`from dask.distributed import Client; client = Client('tcp://scheduler:8786')` "
                           "(or Client(LocalCluster()) on one machine)") from None


def _active_is_dask() -> bool:
    import joblib.parallel as jp
    backend, _ = jp.get_active_backend()
    return type(backend).__name__.startswith("Dask")


def _done_key(fn: Callable, jobs: list) -> dict | None:
    """What identifies a finished :func:`run_jobs` call (see "A finished call is remembered"), or None
    where the arguments have no stable identity or the result cache is off."""
    if os.environ.get("CCC_RESULT_CACHE", "1") == "0":
        return None
    from .cache import arg_identity
    from .utils import deterministic_enabled, sources_sha256
    try:
        ids = [arg_identity(job) for job in jobs]
    except TypeError:
        return None
    return {"fn": f"{fn.__module__}.{fn.__qualname__}", "jobs": ids, "deterministic": deterministic_enabled(),
            "code": sources_sha256()}


WHEN_DONE = ("in_process", "skip", "run")


def _remembered(key: dict | None, results: list | None = None):
    """Read (``results`` None; None when absent) or store a finished call's results."""
    if key is None:
        return None
    from .cache import NotCached, load_or_compute_value
    try:
        out, _ = load_or_compute_value("jobs-done", key, None if results is None else lambda: list(results),
                                       cache_only=results is None, what="finished jobs", redo="running them again")
    except NotCached:
        return None
    except (TypeError, OSError):   # a result the cache cannot store, a read-only cache: nothing remembered
        return None
    return out


def run_jobs(fn: Callable, jobs: Sequence[dict], n_jobs: int | None = None, backend: str | None = None, *,
             threads: int | None = 1, verbose: int = 0, when_done: str = "in_process") -> list:
    """Run ``fn(**job)`` for every dict in ``jobs``, side by side, and return the results in the order of
    ``jobs`` (see the module docstring for the backends, the environment, the random streams and the
    cluster set-up).

    ``fn`` must be a top-level function of an importable module (worker processes and cluster nodes
    import it by name) and its arguments and result picklable. ``n_jobs``: how many at a time (default
    ``CCC_JOBS``, else the CPU cores; with Dask every worker). ``backend``: ``"loky"``, ``"dask"`` or
    ``"sequential"`` (default ``CCC_JOBLIB_BACKEND``, else joblib's active backend, i.e. loky).
    ``threads``: torch threads per job in a worker process (default 1; None leaves torch's default).
    ``when_done``: what an identical call already on record does: ``"in_process"`` (run the jobs here,
    one after another: no pool to start), ``"skip"`` (return its recorded results) or ``"run"`` (see the
    module docstring). A failing job raises :class:`JobError` naming it."""
    from .checks import InputError
    _check_fn(fn)
    jobs = list(jobs)
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise InputError(f"run_jobs: job {i} is a {type(job).__name__}; give each job as a dict of keyword "
                             f"arguments, e.g. [{{'cls': 0}}, {{'cls': 1}}]")
    if when_done not in WHEN_DONE:
        raise InputError(f"run_jobs: when_done={when_done!r}; use one of {WHEN_DONE}")
    if not jobs:
        return []
    key = _done_key(fn, jobs) if when_done != "run" else None
    done = _remembered(key)
    if done is not None and len(done) == len(jobs):
        if when_done == "skip":
            return done
        backend = "sequential"
    results = _run_jobs(fn, jobs, n_jobs, backend, threads, verbose)
    if done is None:
        _remembered(key, results)
    return results


def _run_jobs(fn: Callable, jobs: list, n_jobs, backend, threads, verbose) -> list:
    backend = resolve_backend(backend)
    dask = backend == "dask" or (backend is None and _active_is_dask())
    if dask and n_jobs is None:
        n = -1                              # every Dask worker
    else:
        n = resolve_n_jobs(n_jobs)
    seeds = [job_seed(job) for job in jobs]
    if backend == "sequential" or n == 1 or len(jobs) == 1 or os.environ.get(_WORKER_FLAG) == "1" and not dask:
        return [_run_one(fn, i, job, s, None) for i, (job, s) in enumerate(zip(jobs, seeds))]

    import joblib
    from contextlib import nullcontext
    from .utils import deterministic_enabled
    env = {k: v for k, v in os.environ.items() if k.startswith("CCC_")}
    env.update({"CCC_JOBS": "1", _WORKER_FLAG: "1"})
    ctx = {"env": env, "threads": threads, "deterministic": deterministic_enabled()}
    if dask:
        client = _dask_client()
        pids = set(client.run(os.getpid).values())
        nthreads = client.nthreads()
        if os.getpid() in pids or any(t > 1 for t in nthreads.values()):
            warnings.warn("run_jobs: the Dask workers run jobs as threads of one process; their random streams and "
                          "torch settings are shared, so results may vary between runs. Use worker processes with "
                          "threads_per_worker=1 (LocalCluster(processes=True, threads_per_worker=1)).",
                          RuntimeWarning, stacklevel=2)
        if os.getpid() in pids:           # threads of this very process: leave its environment alone
            ctx = None
        config = joblib.parallel_config(backend="dask") if backend == "dask" else nullcontext()
    else:
        config = joblib.parallel_config(backend="loky", inner_max_num_threads=threads or None)
    with config:
        calls = (joblib.delayed(_run_one)(fn, i, job, s, ctx) for i, (job, s) in enumerate(zip(jobs, seeds)))
        results = list(joblib.Parallel(n_jobs=min(n, len(jobs)) if n > 0 else n, verbose=verbose)(calls))
    failed = [r.error for r in results if isinstance(r, _Failed)]
    if failed:
        first = failed[0]
        if len(failed) > 1:
            others = ", ".join(str(e.index) for e in failed[1:])
            first = JobError(first.index, first.job, f"{first.error} (jobs {others} failed too)", first.tb)
        raise first
    return results
