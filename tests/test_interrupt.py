"""Interrupted and concurrent runs lose nothing.

* two processes asking for the same checkpoint (or tensor artefact) at once: one builds it, the other
  waits and loads it — built once, both get the same weights;
* a build lock left by a killed process does not block (the OS releases ``flock`` on death), and a
  lock held too long ends in a clear :class:`CacheLockTimeout`;
* the runner killed (SIGKILL, with its kernel) in the middle of chapter 0, after its first checkpoint
  was written: the rerun resumes from that checkpoint (not retrained) and ends with the same metrics
  as an uninterrupted run."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch

from ccc_lib import cache as C
from _chapter_runs import REPO, normalise_metrics, read_metrics, run_chapter

WORKER = textwrap.dedent("""
    import json, os, sys, time, torch
    from ccc_lib import cache as C
    root, log, mode = sys.argv[1], sys.argv[2], sys.argv[3]

    def build(m=None):
        with open(log, "a") as fh:                       # one line per build: the test counts them
            fh.write(f"{os.getpid()}\\n")
        time.sleep(1.5)                                  # long enough for the other process to arrive
        g = torch.Generator().manual_seed(os.getpid())   # different per process: a double build shows
        if m is None:
            return {"x": torch.rand(4, generator=g)}
        with torch.no_grad():
            m.weight.copy_(torch.rand(m.weight.shape, generator=g))
        return {"pid": os.getpid()}

    if mode == "train":
        m = torch.nn.Linear(3, 2)
        meta = C.load_or_train(m, "race", {"k": 1}, build, root=root)
        out = m.weight.flatten().tolist()
    else:
        res = C.load_or_compute("race-t", {"k": 1}, build, root=root)
        meta, out = res, res["x"].tolist()
    print(json.dumps({"from_cache": meta["from_cache"], "values": out}))
""")


def _spawn(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", WORKER, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("mode", ["train", "compute"])
def test_two_processes_build_once_and_agree(tmp_path, mode):
    import json
    log = tmp_path / "builds.log"
    procs = [_spawn(tmp_path / "cache", log, mode) for _ in range(2)]
    outs = []
    for p in procs:
        so, se = p.communicate(timeout=120)
        assert p.returncode == 0, se
        outs.append(json.loads(so.strip().splitlines()[-1]))
    builds = log.read_text().split()
    assert len(builds) == 1, f"built {len(builds)} times: {builds}"
    assert sorted(o["from_cache"] for o in outs) == [False, True]     # one built, the other loaded
    assert outs[0]["values"] == outs[1]["values"]
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_lock_of_a_killed_process_does_not_block(tmp_path):
    path = tmp_path / "ck.pt"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from ccc_lib.cache import build_lock
        with build_lock({str(path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(C.CacheLockTimeout, match="CCC_LOCK_TIMEOUT"):
        with C.build_lock(path, timeout=0.5):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    t0 = time.monotonic()
    with C.build_lock(path, timeout=5):
        pass
    assert time.monotonic() - t0 < 2


def test_waiting_process_says_so(tmp_path, capsys):
    calls = []
    cfg = {"k": "wait"}
    with C.build_lock(C.checkpoint_path("w", cfg, tmp_path)):
        import threading

        def other():
            calls.append(C.load_or_train(torch.nn.Linear(1, 1), "w", cfg, lambda m: {}, root=tmp_path))

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.6)
        assert t.is_alive(), "the second caller did not wait for the lock"
    t.join(timeout=30)
    assert calls and calls[0]["from_cache"] is False
    assert "being built by" in capsys.readouterr().out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the runner and every process it started (the papermill kernel runs in its own session)."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    for p in [psutil.Process(proc.pid), *kids]:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(kids, timeout=30)


@pytest.mark.slow
def test_runner_killed_mid_chapter_resumes(chapter0_reference, tmp_path):
    ref, _, _ = chapter0_reference
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = run_chapter("0", out, cache, wait=False)
    first, deadline = None, time.monotonic() + 600
    while first is None and time.monotonic() < deadline:
        done = sorted((cache / "checkpoints").glob("classifier-*.pt")) if (cache / "checkpoints").exists() else []
        if done:
            first = done[0]
        elif proc.poll() is not None:
            pytest.fail(f"the chapter ended (rc {proc.returncode}) before any checkpoint was written")
        time.sleep(0.05)
    assert first is not None, "no checkpoint within 10 minutes"
    _kill_tree(proc)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics" / "00_classifiers.json").exists() or \
        normalise_metrics(read_metrics(out)) != normalise_metrics(ref), "the run finished before it was killed"
    # a rebuilt checkpoint is a new file renamed into place (a new inode); a hit only stamps its time of use
    stamp = (first.stat().st_ino, first.read_bytes())
    r = run_chapter("0", out, cache)
    assert r.returncode == 0, r.stdout[-2000:]
    assert (first.stat().st_ino, first.read_bytes()) == stamp, "the checkpoint written before the kill was trained again"
    assert normalise_metrics(read_metrics(out)) == normalise_metrics(ref)
    assert not list((cache / "checkpoints").glob(".*.tmp"))
