"""ccc_lib.parallel.run_jobs: order, determinism, errors naming the job, the cache under concurrent
jobs (built once, resumed after a failure), and the same call on a Dask cluster (loopback only)."""
import os
import time

import pytest
import torch

from ccc_lib.checks import InputError
from ccc_lib.parallel import JobError, job_seed, resolve_backend, resolve_n_jobs, run_jobs


# ---------------------------------------------------------------- jobs (top level: workers import them by name)

def square_after(x, delay=0.0):
    time.sleep(delay)
    return x * x


def train_tiny(width, steps=20):
    """A small MLP on data drawn from the job's own random stream: every random number comes from the
    stream run_jobs gives the job."""
    net = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"x={x} is bad")
    return x


def cached_job(tag, log, fail=False, delay=0.3):
    """One cached artefact per tag; every build appends the tag to ``log`` (to count builds)."""
    from ccc_lib.cache import load_or_compute

    def compute():
        with open(log, "a") as fh:
            fh.write(tag + "\n")
        time.sleep(delay)
        return {"x": torch.randn(4)}

    if fail:
        raise RuntimeError(f"job {tag} was told to fail")
    out = load_or_compute("partest", {"tag": tag}, compute)
    return {"x": out["x"], "from_cache": out["from_cache"], "cache": os.environ["CCC_CACHE"]}


# ---------------------------------------------------------------- tests

def test_results_in_input_order():
    jobs = [{"x": i, "delay": 0.05 * (5 - i)} for i in range(6)]       # the first ones finish last
    assert run_jobs(square_after, jobs, n_jobs=2) == [i * i for i in range(6)]
    assert run_jobs(square_after, jobs, backend="sequential") == [i * i for i in range(6)]
    assert run_jobs(square_after, []) == []


def test_parallel_equals_sequential_and_does_not_depend_on_position():
    jobs = [{"width": w} for w in (4, 6, 8, 4)]
    par = run_jobs(train_tiny, jobs, n_jobs=2)
    seq = run_jobs(train_tiny, jobs, backend="sequential")
    rev = run_jobs(train_tiny, jobs[::-1], n_jobs=2)[::-1]
    for a, b, c in zip(par, seq, rev):
        for k in a:
            assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]), k
    # a job's stream comes from its arguments: equal jobs give equal results, different jobs differ
    assert all(torch.equal(par[0][k], par[3][k]) for k in par[0])
    assert job_seed({"width": 4}) != job_seed({"width": 6})


def test_caller_random_stream_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_jobs(train_tiny, [{"width": 4}], backend="sequential")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("backend", ["loky", "sequential"])
def test_error_names_the_job(backend):
    with pytest.raises(JobError) as info:
        run_jobs(fail_on, [{"x": i, "bad": 2} for i in range(4)], n_jobs=2, backend=backend)
    msg = str(info.value)
    assert "job 2" in msg and "x=2" in msg and "bad=2" in msg and "ValueError: x=2 is bad" in msg
    assert info.value.index == 2
    if backend == "loky":                                    # every job ran; all failures are counted
        with pytest.raises(JobError, match=r"job 1 .*jobs 3 failed too"):
            run_jobs(fail_on, [{"x": i % 2, "bad": 1} for i in range(4)], n_jobs=2, backend=backend)


def test_bad_settings_are_clear_errors(monkeypatch):
    with pytest.raises(InputError, match="top level"):
        run_jobs(lambda x: x, [{"x": 1}, {"x": 2}])
    with pytest.raises(InputError, match="dict of keyword"):
        run_jobs(square_after, [1, 2])
    monkeypatch.setenv("CCC_JOBS", "many")
    with pytest.raises(InputError, match="CCC_JOBS"):
        resolve_n_jobs()
    monkeypatch.setenv("CCC_JOBS", "3")
    assert resolve_n_jobs() == 3 and resolve_n_jobs(1) == 1
    with pytest.raises(InputError, match="1 or more"):
        resolve_n_jobs(0)
    monkeypatch.setenv("CCC_JOBLIB_BACKEND", "spark")
    with pytest.raises(InputError, match="loky, dask, sequential"):
        resolve_backend()
    monkeypatch.setenv("CCC_JOBLIB_BACKEND", "sequential")
    assert resolve_backend() == "sequential"


def test_cache_builds_each_artefact_once_and_a_rerun_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "cache"))
    log = str(tmp_path / "builds.log")
    jobs = [{"tag": "a", "log": log}, {"tag": "a", "log": log}, {"tag": "b", "log": log}]
    first = run_jobs(cached_job, jobs, n_jobs=2)
    assert sorted(open(log).read().split()) == ["a", "b"]              # the two "a" jobs built it once
    assert sorted(r["from_cache"] for r in first[:2]) == [False, True]
    assert torch.equal(first[0]["x"], first[1]["x"])
    assert all(r["cache"] == str(tmp_path / "cache") for r in first)   # the caller's CCC_CACHE, in every worker
    second = run_jobs(cached_job, jobs, n_jobs=2)
    assert sorted(open(log).read().split()) == ["a", "b"]              # nothing rebuilt
    assert all(r["from_cache"] for r in second)
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(first, second))


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "cache"))
    log = str(tmp_path / "builds.log")
    jobs = [{"tag": t, "log": log, "delay": 0.05} for t in "abcd"]
    with pytest.raises(JobError, match="job 3"):             # in workers: the other jobs run to the end
        run_jobs(cached_job, jobs[:3] + [{**jobs[3], "fail": True}], n_jobs=2)
    assert sorted(open(log).read().split()) == ["a", "b", "c"]
    out = run_jobs(cached_job, jobs, n_jobs=2)
    assert sorted(open(log).read().split()) == ["a", "b", "c", "d"]    # only the missing one computed
    assert [r["from_cache"] for r in out] == [True, True, True, False]


def test_same_call_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                                            "(pip install distributed): the Dask backend is untested")
    import joblib
    jobs = [{"width": w} for w in (4, 6, 8)]
    seq = run_jobs(train_tiny, jobs, backend="sequential")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        by_arg = run_jobs(train_tiny, jobs, backend="dask")
        with joblib.parallel_config(backend="dask"):
            by_config = run_jobs(train_tiny, jobs)                      # the unchanged call of the docs
        with pytest.raises(JobError, match="job 1"):
            run_jobs(fail_on, [{"x": 0, "bad": 1}, {"x": 1, "bad": 1}], backend="dask")
        ran_on = client.run(os.getpid)
    assert os.getpid() not in ran_on.values()
    for a, b, c in zip(seq, by_arg, by_config):
        for k in a:
            assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]), k


def test_dask_without_client_says_how_to_start_one():
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with pytest.raises(RuntimeError, match="no Dask client"):
        run_jobs(square_after, [{"x": 1}, {"x": 2}], backend="dask")


def pid_of(x):
    return {"x": x, "pid": os.getpid()}


def test_a_finished_call_starts_no_pool_the_second_time(tmp_path, monkeypatch):
    """A warm rebuild repeats calls whose jobs are all cache hits; the pool's start (each worker imports
    torch and ccc_lib) is the cost then. An identical finished call is on record: ``in_process`` runs the
    jobs here (this run's results), ``skip`` returns the recorded ones, ``run`` starts the pool again; other
    arguments, a failed call or ``CCC_RESULT_CACHE=0`` are not taken for a finished call."""
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    jobs = [{"x": i} for i in range(3)]
    first = run_jobs(pid_of, jobs, n_jobs=2)
    assert any(r["pid"] != os.getpid() for r in first)                 # a pool ran it
    again = run_jobs(pid_of, jobs, n_jobs=2)
    assert [r["x"] for r in again] == [0, 1, 2] and all(r["pid"] == os.getpid() for r in again)
    assert run_jobs(pid_of, jobs, n_jobs=2, when_done="skip") == first  # the record, nothing run
    assert any(r["pid"] != os.getpid() for r in run_jobs(pid_of, jobs, n_jobs=2, when_done="run"))
    other = [{"x": i} for i in range(1, 4)]
    assert any(r["pid"] != os.getpid() for r in run_jobs(pid_of, other, n_jobs=2, when_done="skip"))
    with pytest.raises(JobError):
        run_jobs(fail_on, [{"x": i, "bad": 1} for i in range(3)], n_jobs=2)
    with pytest.raises(JobError):                                      # a failed call is not on record
        run_jobs(fail_on, [{"x": i, "bad": 1} for i in range(3)], n_jobs=2, when_done="skip")
    monkeypatch.setenv("CCC_RESULT_CACHE", "0")
    assert any(r["pid"] != os.getpid() for r in run_jobs(pid_of, jobs, n_jobs=2, when_done="skip"))
    with pytest.raises(InputError, match="when_done"):
        run_jobs(pid_of, jobs, when_done="sometimes")
