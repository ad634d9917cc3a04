"""Cache bundles (ccc_lib.bundle, `python -m ccc_lib cache export/import`): a round trip from a local file
and from a loopback HTTP server; a tampered, unsafe (path traversal, absolute path, symlink, device),
truncated or mismatching bundle is rejected with nothing written."""
import argparse
import io
import json
import os
import re
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from ccc_lib.bundle import BundleError, export_bundle, import_bundle, run_start
from ccc_lib.cache import load_or_compute
from ccc_lib.cli.cache import cmd_cache


def _fill(monkeypatch, root: Path) -> float:
    """Two artefacts used now and one left by an older run (its use stamp an hour ago)."""
    monkeypatch.setenv("CCC_CACHE", str(root))
    load_or_compute("old", {"a": 0}, lambda: {"x": torch.zeros(3)})
    old = next((root / "checkpoints").glob("old-*.pt"))
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    t0 = time.time() - 1
    load_or_compute("weights", {"a": 1}, lambda: {"x": torch.arange(5.0)})
    load_or_compute("scores", {"a": 2}, lambda: {"s": torch.linspace(0, 1, 7)})
    return t0


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    src = tmp_path / "src-cache"
    t0 = _fill(monkeypatch, src)
    path = tmp_path / "out" / "b.tar.gz"
    manifest = export_bundle("smoke", path, since=t0)
    return path, manifest


def _nothing_written(root: Path) -> None:
    assert not any((root / "checkpoints").glob("*.pt")) if (root / "checkpoints").exists() else True
    assert not [p for p in root.glob(".import-*")], "a temporary import folder was left behind"


def _retar(src: Path, dst: Path, edit) -> None:
    """Copy bundle ``src`` to ``dst``, letting ``edit(name, data) -> [(TarInfo, bytes|None), ...]`` change members."""
    with tarfile.open(src, "r:gz") as a, tarfile.open(dst, "w:gz") as b:
        for m in a.getmembers():
            data = a.extractfile(m).read()
            for info, payload in edit(m.name, data):
                b.addfile(info, io.BytesIO(payload) if payload is not None else None)


def _file(name: str, data: bytes) -> tuple:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def test_round_trip_from_a_file(bundle, tmp_path, monkeypatch):
    path, manifest = bundle
    assert manifest["profile"] == "smoke" and len(manifest["files"]) == 2          # the old entry is not shipped
    assert {f["kind"] for f in manifest["files"].values()} == {"weights", "scores"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert manifest["code_version"]["sources_sha256"] and manifest["settings"]["iocn"]
    dst = tmp_path / "reader-cache"
    monkeypatch.setenv("CCC_CACHE", str(dst))
    r = import_bundle(path)
    assert r["installed"] == 2 and r["kept"] == 0 and r["code_version_matches"]
    out = load_or_compute("weights", {"a": 1}, lambda: pytest.fail("recomputed"), cache_only=True)
    assert out["from_cache"] and torch.equal(out["x"], torch.arange(5.0))
    assert import_bundle(path)["kept"] == 2                                         # idempotent
    _nothing_written_tmp = [p for p in dst.glob(".import-*")]
    assert not _nothing_written_tmp


def test_round_trip_over_loopback_http(bundle, tmp_path, monkeypatch):
    path, _ = bundle
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(path.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dst = tmp_path / "http-cache"
        r = import_bundle(f"http://127.0.0.1:{server.server_address[1]}/{path.name}", root=dst)
        assert r["installed"] == 2
        with pytest.raises(BundleError, match="download failed"):
            import_bundle(f"http://127.0.0.1:{server.server_address[1]}/missing.tar.gz", root=tmp_path / "c2")
        _nothing_written(tmp_path / "c2")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert import_bundle(path.as_uri(), root=tmp_path / "file-url")["installed"] == 2


def _tamper(name, data):
    if name.endswith(".pt") and "weights" in name:
        data = data[:-8] + bytes(8)
    return [_file(name, data)]


def _traversal(name, data):
    return [_file(name, data)] + ([_file("checkpoints/../../evil-0123456789abcdef.pt", b"x")] if name == "manifest.json" else [])


def _absolute(name, data):
    return [_file(name, data)] + ([_file("/tmp/evil-0123456789abcdef.pt", b"x")] if name == "manifest.json" else [])


def _symlink(name, data):
    out = [_file(name, data)]
    if name == "manifest.json":
        ti = tarfile.TarInfo("checkpoints/link-0123456789abcdef.pt")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.append((ti, None))
    return out


def _device(name, data):
    out = [_file(name, data)]
    if name == "manifest.json":
        ti = tarfile.TarInfo("checkpoints/dev-0123456789abcdef.pt")
        ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
        out.append((ti, None))
    return out


def _settings(name, data):
    if name == "manifest.json":
        m = json.loads(data)
        m["settings"]["iocn"] = "0" * 16
        data = json.dumps(m).encode()
    return [_file(name, data)]


def _unlisted(name, data):
    return [_file(name, data)] + ([_file("checkpoints/extra-0123456789abcdef.pt", b"x")] if name == "manifest.json" else [])


@pytest.mark.parametrize("edit, message", [
    (_tamper, "SHA-256"), (_traversal, "outside the cache"), (_absolute, "outside the cache"),
    (_symlink, "is a link"), (_device, "not a regular file"), (_settings, "settings of iocn"),
    (_unlisted, "do not match its manifest"),
])
def test_bad_bundles_are_rejected_with_nothing_written(bundle, tmp_path, edit, message):
    path, _ = bundle
    bad = tmp_path / "bad.tar.gz"
    _retar(path, bad, edit)
    dst = tmp_path / "victim-cache"
    with pytest.raises(BundleError, match=message):
        import_bundle(bad, root=dst)
    _nothing_written(dst)
    assert not (tmp_path / "evil-0123456789abcdef.pt").exists() and not Path("/tmp/evil-0123456789abcdef.pt").exists()


def test_settings_mismatch_installs_with_force(bundle, tmp_path):
    path, _ = bundle
    bad = tmp_path / "other-settings.tar.gz"
    _retar(path, bad, _settings)
    assert import_bundle(bad, root=tmp_path / "forced", force=True)["installed"] == 2


def test_truncated_or_foreign_files_are_rejected(bundle, tmp_path):
    path, _ = bundle
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BundleError, match="truncated or corrupt"):
        import_bundle(cut, root=tmp_path / "c1")
    _nothing_written(tmp_path / "c1")
    with pytest.raises(BundleError, match="no such file"):
        import_bundle(tmp_path / "nope.tar.gz", root=tmp_path / "c2")
    with pytest.raises(BundleError, match="only a file path or an http"):
        import_bundle("ftp://example.org/b.tar.gz", root=tmp_path / "c3")


def test_export_rule_from_the_executed_run_and_the_cli(tmp_path, monkeypatch, capsys):
    src = tmp_path / "cache"
    _fill(monkeypatch, src)
    executed = tmp_path / "executed"
    (executed / "metrics").mkdir(parents=True)
    (executed / "metrics" / "00_classifiers.json").write_text(json.dumps({"profile": "smoke", "run_seconds": 30}))
    (executed / "metrics" / "01_counterfeits.json").write_text(json.dumps({"profile": "default", "run_seconds": 9}))
    start = run_start("smoke", executed)
    assert time.time() - 40 < start < time.time() - 30
    with pytest.raises(Exception, match="no chapter ran at profile 'full'"):
        run_start("full", executed)
    out = tmp_path / "b.tar.gz"
    ns = argparse.Namespace(action="export", profile="smoke", file=str(out), since=None, executed=str(executed))
    assert cmd_cache(ns) == 0
    assert "2 artefacts of profile smoke" in capsys.readouterr().out
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "reader"))
    assert cmd_cache(argparse.Namespace(action="import", source=str(out), profile=None, force=False)) == 0
    assert "installed 2 artefacts" in capsys.readouterr().out
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball")
    assert cmd_cache(argparse.Namespace(action="import", source=str(bad), profile=None, force=False)) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_the_command_line(tmp_path, monkeypatch, capsys):
    from ccc_lib.cli import main
    _fill(monkeypatch, tmp_path / "cache")
    out = tmp_path / "cli.tar.gz"
    assert main(["cache", "export", "--profile", "smoke", "--since", "10m", str(out)]) == 0
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "reader"))
    assert main(["cache", "import", "--profile", "default", str(out)]) == 2          # another profile: refused
    assert "holds profile 'smoke', not 'default'" in capsys.readouterr().err
    assert main(["cache", "import", out.as_uri()]) == 0
    assert "installed 2 artefacts" in capsys.readouterr().out


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_every_chapter_settings_fingerprint_is_computed(profile):
    """The bundle's check of this checkout's settings reads each chapter's settings by module name: a chapter
    whose settings moved (e.g. into a package) would give 'unavailable' on both sides and pass unchecked."""
    from ccc_lib.bundle import settings_fingerprints
    fp = settings_fingerprints(profile)
    assert set(fp) >= {"profile", "counterfeits", "neuralfp", "iocn", "drift"}
    assert not [k for k, v in fp.items() if not re.fullmatch(r"[0-9a-f]{16}", v)], fp
