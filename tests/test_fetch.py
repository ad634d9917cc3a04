"""Prefetch for offline GPU nodes: the list of what `full` needs, offline, without hanging."""
import time

import pytest

from ccc_lib import cli, fetch, runner


@pytest.fixture
def empty_places(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("ccc_lib.data.DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    return tmp_path


def test_full_needs_every_dataset_and_the_resnet_weights(empty_places):
    names = [n.name for n in fetch.needs_for("full")]
    assert names == ["mnist", "fashion_mnist", "svhn", "cifar10", "emnist", "resnet18_imagenet"]
    assert [n.name for n in fetch.missing_for("full")] == names
    assert fetch.needs_for("default") == [] and fetch.needs_for("full_dry") == []


def test_present_files_are_not_missing(empty_places):
    from tests.test_data import fake_mnist_dir
    fake_mnist_dir(empty_places / "data" / "MNIST" / "raw")
    assert "mnist" not in [n.name for n in fetch.missing_for("full")]


def test_fetch_check_lists_sizes_and_the_command(empty_places, capsys):
    t0 = time.perf_counter()
    rc = cli.main(["fetch", "--profile", "full", "--check"])
    err = capsys.readouterr().err
    assert rc == 1 and time.perf_counter() - t0 < 30
    for name in ("mnist", "fashion_mnist", "svhn", "cifar10", "emnist", "resnet18_imagenet"):
        assert name in err
    assert "MB" in err and "python -m ccc_lib fetch --profile full" in err


def test_failed_downloads_are_reported_not_raised(empty_places, monkeypatch, capsys):
    def offline(*a, **k):
        raise OSError("network is unreachable")
    for need_name in ("MNIST", "FashionMNIST", "EMNIST", "SVHN", "CIFAR10"):
        monkeypatch.setattr(f"torchvision.datasets.{need_name}.download", offline)
    monkeypatch.setattr("torchvision.models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict", offline, raising=False)
    rc = cli.main(["fetch", "--profile", "full", "--timeout", "1"])
    out = capsys.readouterr()
    assert rc == 1 and out.out.count("FAILED") == 6 and "network is unreachable" in out.out
    assert "python -m ccc_lib fetch --profile full" in out.err


def test_run_full_stops_up_front_when_files_are_missing(empty_places, capsys):
    t0 = time.perf_counter()
    rc = cli.main(["run", "--profile", "full", "--root", str(runner.REPO), "--out", str(empty_places / "out")])
    assert rc == 3 and time.perf_counter() - t0 < 30
    err = capsys.readouterr().err
    assert "emnist" in err and "resnet18_imagenet" in err and not (empty_places / "out").exists()
