"""Helpers of the determinism and interruption tests: run a chapter in a subprocess with its own
cache, and compare metrics JSON files minus what legitimately differs between runs."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: keys of a metrics JSON that legitimately differ between two runs (clock, places, cache state)
VOLATILE_KEY = re.compile(r"(second|time|path|from.cache|hardware|status|output)", re.I)


def normalise_metrics(obj):
    """A metrics JSON without what may differ between identical runs (times, paths, cache hits)."""
    if isinstance(obj, dict):
        return {k: normalise_metrics(v) for k, v in obj.items() if not VOLATILE_KEY.search(str(k))}
    if isinstance(obj, list):
        return [normalise_metrics(v) for v in obj]
    return obj


def chapter_env(cache) -> dict:
    env = {**os.environ, "CCC_CACHE": str(cache), "CCC_PROGRESS": "off", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(REPO)}
    env.pop("CCC_METRICS_DIR", None)
    return env


def run_chapter(chapter: str, out, cache, profile: str = "smoke", wait: bool = True):
    """``python -m ccc_lib run CHAPTER --profile PROFILE --out OUT`` with ``CCC_CACHE=cache``: the
    CompletedProcess, or with ``wait=False`` the Popen (in its own session, output discarded)."""
    cmd = [sys.executable, "-m", "ccc_lib", "run", chapter, "--profile", profile, "--out", str(out)]
    if wait:
        return subprocess.run(cmd, env=chapter_env(cache), capture_output=True, text=True, timeout=900, cwd=REPO)
    return subprocess.Popen(cmd, env=chapter_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd=REPO)


def read_metrics(out, stem: str = "00_classifiers") -> dict:
    return json.loads((Path(out) / "metrics" / f"{stem}.json").read_text())
