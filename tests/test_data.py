"""Tests of salrepro.data.

Three kinds:
- real files: byte-exact MNIST, Fashion-MNIST, Semeion and the USPS test split
  under $SALREPRO_DATA (a folder laid out as docs/data.md says); skipped, with the
  reason shown, when the variable is unset or the files are absent. Digits
  comes from scikit-learn and always runs.
- synthetic files: a few images written here in each exact on-disk format
  (CIFAR-10 pickles, SVHN .mat, STL-10 .bin, PCam .h5, FER2013 .csv, USPS
  LIBSVM .bz2) and loaded through the same code path with verify=False (their
  MD5s cannot match torchvision's, and a test checks that verify=True says so).
- errors and the cache.
Every test writes its cache under a temp dir, never into the repository.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import salrepro.data as D
from salrepro.pipeline import paper

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
SEMEION_COUNTS = [161, 162, 159, 159, 161, 159, 161, 158, 155, 158]


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    """A session-wide cache dir, so real datasets decode once per run and nothing lands in the repo."""
    mp = pytest.MonkeyPatch()
    mp.setenv(D.ENV_CACHE, str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def shared_root(*needed: str) -> Path:
    root = os.environ.get(D.ENV_DATA)
    if not root:
        pytest.skip(f"{D.ENV_DATA} not set: real-data test (set {D.ENV_DATA} to a folder with the datasets, docs/data.md)")
    for rel in needed:
        if not (Path(root) / rel).is_file():
            pytest.skip(f"{D.ENV_DATA}={root} lacks {rel}")
    return Path(root)


# ----------------------------------------------------------------------------
# synthetic files, one writer per on-disk format

RNG = np.random.default_rng(0)
KNOWN_RGB = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (10, 200, 30), (0, 0, 0)]
KNOWN_L = [76, 150, 29, 255, 124, 0]  # what PIL's convert("L") gives for KNOWN_RGB


def rgb_images(n: int, size: int) -> np.ndarray:
    """(n, size, size, 3) uint8 HWC; image 0 starts with the KNOWN_RGB pixels on its first row."""
    imgs = RNG.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    imgs[0, 0, :len(KNOWN_RGB)] = KNOWN_RGB
    return imgs


def pil_gray(imgs: np.ndarray) -> torch.Tensor:
    """Reference: PIL, one image at a time, flattened and scaled."""
    flat = np.stack([np.asarray(Image.fromarray(im).convert("L")).reshape(-1) for im in imgs])
    return torch.from_numpy(flat).float() / 255


def write_cifar10(root: Path, n_per_batch=2, n_test=3):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    out = {}
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        imgs, labels = rgb_images(n, 32), RNG.integers(0, 10, n).tolist()
        data = imgs.transpose(0, 3, 1, 2).reshape(n, 3072)  # the batches store R plane, G plane, B plane
        with open(base / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data,
                         "filenames": [f"{i}.png" for i in range(n)]}, f, protocol=2)
        out[name] = (imgs, labels)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": n_per_batch}, f)
    train = [out[f"data_batch_{i}"] for i in range(1, 6)]
    return (np.concatenate([t[0] for t in train]), sum((t[1] for t in train), []), *out["test_batch"])


def write_svhn(root: Path):
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    res = {}
    for fname, n in (("train_32x32.mat", 4), ("test_32x32.mat", 3)):
        imgs, digits = rgb_images(n, 32), np.array([0, 3, 9, 0][:n])
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)  # SVHN stores digit 0 as label 10
        scipy.io.savemat(root / fname, {"X": imgs.transpose(1, 2, 3, 0), "y": y})  # X is (32, 32, 3, N)
        res[fname] = (imgs, digits)
    return res


def write_stl10(root: Path):
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    res = {}
    for split, n in (("train", 3), ("test", 2)):
        imgs, labels = rgb_images(n, 96), RNG.integers(0, 10, n)
        # column-major per channel: the file holds (N, C, W, H)
        imgs.transpose(0, 3, 2, 1).astype(np.uint8).tofile(base / f"{split}_X.bin")
        (labels + 1).astype(np.uint8).tofile(base / f"{split}_y.bin")  # 1-based on disk
        res[split] = (imgs, labels)
    return res


def write_pcam(root: Path, with_test=True):
    import h5py

    base = root / "pcam"
    base.mkdir(parents=True)
    res = {}
    for split, n in (("train", 3), ("valid", 2)) + ((("test", 4),) if with_test else ()):
        imgs, labels = rgb_images(n, 96), RNG.integers(0, 2, n)
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f.create_dataset("x", data=imgs)
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f.create_dataset("y", data=labels.astype(np.uint8).reshape(n, 1, 1, 1))
        res[split] = (imgs, labels)
    return res


FER_USAGE = ["Training", "PublicTest", "PrivateTest", "Training", "PrivateTest", "PublicTest", "Training"]


def write_fer2013(root: Path, icml=False):
    base = root / "fer2013"
    base.mkdir(parents=True)
    imgs = RNG.integers(0, 256, (len(FER_USAGE), 48, 48), dtype=np.uint8)
    labels = RNG.integers(0, 7, len(FER_USAGE))
    if icml:  # icml_face_data.csv: same data, header "emotion, Usage, pixels"
        path, header = base / "icml_face_data.csv", ["emotion", " Usage", " pixels"]
    else:
        path, header = base / "fer2013.csv", ["emotion", "pixels", "Usage"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for img, lab, use in zip(imgs, labels, FER_USAGE):
            w.writerow({header[0]: int(lab), header[1 if not icml else 2]: " ".join(map(str, img.reshape(-1))),
                        header[2 if not icml else 1]: use})
    return imgs, labels


def write_usps(root: Path, which=("usps.bz2", "usps.t.bz2")):
    root.mkdir(parents=True, exist_ok=True)
    res = {}
    for fname, n in (("usps.bz2", 5), ("usps.t.bz2", 3)):
        if fname not in which:
            continue
        vals = RNG.uniform(-1, 1, (n, 256)).astype(np.float32)
        vals[0, :3] = [-1.0, 1.0, 0.0]
        labels = RNG.integers(1, 11, n)  # LIBSVM labels are 1..10
        lines = [f"{lab} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row)) for lab, row in zip(labels, vals)]
        with bz2.open(root / fname, "wt") as f:
            f.write("\n".join(lines) + "\n")
        parsed = np.asarray([[f"{v:.6f}" for v in row] for row in vals], dtype=np.float32)
        res[fname] = (((parsed + 1) / 2 * 255).astype(np.uint8), labels - 1)  # torchvision's mapping to 0..255
    return res


# ----------------------------------------------------------------------------
# gray conversion


def test_luma_is_bit_exact_pil_L_on_every_rgb_color():
    v = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)
    assert np.array_equal(D.luma(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


def test_luma_known_values_and_chunking():
    assert D.luma(np.array(KNOWN_RGB, dtype=np.uint8)).tolist() == KNOWN_L
    imgs = rgb_images(7, 6)
    flat = D._gray_flat(imgs, pixels_per_chunk=80)  # 2 images per chunk
    assert torch.equal(torch.from_numpy(flat).float() / 255, pil_gray(imgs))


# ----------------------------------------------------------------------------
# synthetic formats through the real code path


def load(name, root, **kw):
    """Decoding tests read the pixels before the input map: input_norm="unit" ([0, 1])."""
    return D.load_dataset(name, root=root, verify=False, cache=False, **{"input_norm": "unit", **kw})


def check_common(d: D.Dataset, n_train, n_val, side, classes):
    assert (d.x_train.dtype, d.y_train.dtype, d.x_val.dtype, d.y_val.dtype) == (torch.float32, torch.int64) * 2
    assert d.x_train.shape == (n_train, side * side) and d.x_val.shape == (n_val, side * side)
    assert d.in_features == side * side and d.num_classes == classes
    assert d.meta["n_train"] == n_train and d.meta["n_val"] == n_val and d.meta["total"] == n_train + n_val
    assert d.meta["resolution"] == f"{side}x{side}"
    for x in (d.x_train, d.x_val):
        lo = {"unit": 0.0, "pm1": -1.0}[d.meta["input_norm"]]
        assert lo <= x.min() and x.max() <= 1.0


def test_cifar10_format(tmp_path):
    xtr, ytr, xte, yte = write_cifar10(tmp_path)
    d = load("cifar10", tmp_path)
    check_common(d, 10, 3, 32, 10)
    assert torch.equal(d.x_train, pil_gray(xtr)) and torch.equal(d.x_val, pil_gray(xte))
    assert d.y_train.tolist() == ytr and d.y_val.tolist() == yte
    assert (d.x_train[0, :len(KNOWN_L)] * 255).round().tolist() == KNOWN_L  # luma of known RGB pixels
    assert torch.equal(d.x_train[0, :len(KNOWN_L)], torch.tensor(KNOWN_L, dtype=torch.float32) / 255)
    assert d.meta["channels"] == "RGB->Gray" and d.meta["split"] == "official train/test"


def test_svhn_format(tmp_path):
    res = write_svhn(tmp_path)
    d = load("svhn", tmp_path)
    check_common(d, 4, 3, 32, 10)
    assert torch.equal(d.x_train, pil_gray(res["train_32x32.mat"][0]))
    assert torch.equal(d.x_val, pil_gray(res["test_32x32.mat"][0]))
    assert d.y_train.tolist() == [0, 3, 9, 0]  # label 10 on disk is digit 0
    assert torch.equal(d.x_train[0, :len(KNOWN_L)], torch.tensor(KNOWN_L, dtype=torch.float32) / 255)


def test_stl10_format(tmp_path):
    res = write_stl10(tmp_path)
    d = load("stl10", tmp_path)  # no unlabeled_X.bin needed
    check_common(d, 3, 2, 96, 10)
    assert torch.equal(d.x_train, pil_gray(res["train"][0])) and torch.equal(d.x_val, pil_gray(res["test"][0]))
    assert d.y_train.tolist() == res["train"][1].tolist() and d.y_val.tolist() == res["test"][1].tolist()
    assert torch.equal(d.x_train[0, :len(KNOWN_L)], torch.tensor(KNOWN_L, dtype=torch.float32) / 255)


def test_pcam_format(tmp_path):
    res = write_pcam(tmp_path)
    d = load("pcam", tmp_path)
    check_common(d, 3, 2, 96, 2)
    assert torch.equal(d.x_train, pil_gray(res["train"][0])) and torch.equal(d.x_val, pil_gray(res["valid"][0]))
    assert d.y_train.tolist() == res["train"][1].tolist() and d.y_val.tolist() == res["valid"][1].tolist()
    assert d.meta["split"] == "official train/valid"
    assert (d.meta["unused_split"], d.meta["n_unused"]) == ("test", 4)  # counted for Table 1, not loaded


def test_pcam_without_test_split_files(tmp_path):
    write_pcam(tmp_path, with_test=False)
    d = load("pcam", tmp_path)
    assert d.meta["n_unused"] is None


@pytest.mark.parametrize("icml", [False, True], ids=["fer2013.csv", "icml_face_data.csv"])
def test_fer2013_format_training_and_publictest(tmp_path, icml):
    imgs, labels = write_fer2013(tmp_path, icml=icml)
    d = load("fer2013", tmp_path)
    use = np.array(FER_USAGE)
    tr, pub = np.flatnonzero(use == "Training"), np.flatnonzero(use == "PublicTest")
    check_common(d, len(tr), len(pub), 48, 7)
    assert torch.equal(d.x_train, torch.from_numpy(imgs[tr].reshape(len(tr), -1)).float() / 255)
    assert torch.equal(d.x_val, torch.from_numpy(imgs[pub].reshape(len(pub), -1)).float() / 255)
    assert d.y_train.tolist() == labels[tr].tolist() and d.y_val.tolist() == labels[pub].tolist()
    assert (d.meta["unused_split"], d.meta["n_unused"]) == ("PrivateTest", 2)
    assert d.meta["channels"] == "Gray"


def test_usps_format(tmp_path):
    res = write_usps(tmp_path)
    d = load("usps", tmp_path)
    check_common(d, 5, 3, 16, 10)
    exp_x, exp_y = res["usps.bz2"]
    assert torch.equal(d.x_train, torch.from_numpy(exp_x).float() / 255)
    assert d.y_train.tolist() == exp_y.tolist()
    # -1 -> 0, 1 -> 255, 0 -> 127 (torchvision truncates)
    assert torch.equal(d.x_train[0, :3], torch.tensor([0.0, 255, 127]) / 255)


def test_load_split_needs_only_that_split(tmp_path):
    res = write_usps(tmp_path, which=("usps.t.bz2",))
    x, y = D.load_split("usps", "val", root=tmp_path, verify=False, input_norm="unit")
    assert torch.equal(x, torch.from_numpy(res["usps.t.bz2"][0]).float() / 255)
    x_pm1, _ = D.load_split("usps", "val", root=tmp_path, verify=False)  # the default map: [-1, 1]
    assert torch.equal(x_pm1, x * 2 - 1)
    assert y.dtype == torch.int64 and y.tolist() == res["usps.t.bz2"][1].tolist()
    with pytest.raises(D.DatasetMissingError, match="usps.bz2"):
        D.load_split("usps", "train", root=tmp_path, verify=False)
    with pytest.raises(ValueError):
        D.load_split("usps", "test", root=tmp_path)


def test_verify_true_rejects_files_with_wrong_md5(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(D.DatasetCorruptError) as e:
        D.load_dataset("cifar10", root=tmp_path, cache=False)
    msg = str(e.value)
    assert "cifar10" in msg and str(tmp_path / "cifar-10-batches-py" / "batches.meta") in msg
    assert "MD5" in msg and D.tvd.CIFAR10.meta["md5"] in msg and "download=True" in msg


# ----------------------------------------------------------------------------
# real files


def test_mnist_real():
    root = shared_root("MNIST/raw/train-images-idx3-ubyte.gz")
    d = D.load_dataset("mnist", root=root)
    check_common(d, 60000, 10000, 28, 10)
    assert torch.bincount(d.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert d.meta["class_counts_train"] == MNIST_TRAIN_COUNTS
    assert d.x_train.min() == -1.0 and d.x_train.max() == 1.0 and d.x_val.max() == 1.0  # pm1, the default map
    assert d.meta["display_name"] == "MNIST" and d.meta["channels"] == "Gray" and d.meta["input_norm"] == "pm1"
    assert not any(p.name.startswith("_raw-") for p in Path(d.meta["cache_file"]).parent.iterdir())  # scratch gone


def test_fashion_mnist_real():
    root = shared_root("FashionMNIST/raw/train-images-idx3-ubyte.gz")
    d = D.load_dataset("fashion_mnist", root=root)
    check_common(d, 60000, 10000, 28, 10)
    assert torch.bincount(d.y_train).tolist() == [6000] * 10
    assert torch.bincount(d.y_val).tolist() == [1000] * 10
    assert d.x_train.min() == -1.0 and d.x_train.max() == 1.0
    assert d.meta["display_name"] == "Fashion-MNIST"


def test_mnist_download_true_on_present_gz_only_unpacks(tmp_path):
    src = shared_root("MNIST/raw/train-images-idx3-ubyte.gz") / "MNIST" / "raw"
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(src, raw)
    d = D.load_dataset("mnist", root=tmp_path, download=True, cache=False)  # torchvision finds valid .gz: no network
    assert d.x_train.shape == (60000, 784)
    assert (raw / "train-images-idx3-ubyte").is_file()  # torchvision unpacked next to the .gz
    assert d.meta["files"][0] == "MNIST/raw/t10k-images-idx3-ubyte"  # and the unpacked files (MD5-checked) are used
    ref = D.load_dataset("mnist", root=src.parent.parent)
    assert torch.equal(d.x_val, ref.x_val) and torch.equal(d.y_train, ref.y_train)


def test_semeion_real_stratified_split():
    root = shared_root("semeion.data")
    d = D.load_dataset("semeion", root=root)
    check_common(d, 1274, 319, 16, 10)
    tr, va = torch.bincount(d.y_train, minlength=10), torch.bincount(d.y_val, minlength=10)
    assert (tr + va).tolist() == SEMEION_COUNTS
    assert all(abs(v - 0.2 * c) < 1 for v, c in zip(va.tolist(), SEMEION_COUNTS))  # stratified
    assert set(d.x_train.unique().tolist()) == {-1.0, 1.0}  # binary pixels under pm1
    again = D.load_dataset("semeion", root=root, cache=False)  # fixed split, independent of anything else
    assert torch.equal(again.y_val, d.y_val) and torch.equal(again.x_val, d.x_val)
    assert d.meta["split"] == "stratified 80/20, seed 0"


def test_usps_real_test_split_only():
    root = shared_root("usps.t.bz2")
    x, y = D.load_split("usps", "val", root=root)
    assert x.shape == (2007, 256) and x.dtype == torch.float32 and y.shape == (2007,)
    assert x.min() == -1.0 and x.max() <= 1.0  # pm1, the default map
    assert sorted(y.unique().tolist()) == list(range(10))
    if not (root / "usps.bz2").exists():
        with pytest.raises(D.DatasetMissingError) as e:
            D.load_dataset("usps", root=root)
        assert "[MISSING] usps.bz2" in str(e.value) and "[found  ] usps.t.bz2" in str(e.value)
        assert str(D.available(root)["usps"]).startswith("partial: val split present")


def test_digits_from_sklearn_unit_and_raw(monkeypatch, tmp_path):
    monkeypatch.setenv(D.ENV_DATA, str(tmp_path / "nothing-here"))  # Digits needs no files at all
    d = D.load_dataset("digits", input_norm="unit")
    check_common(d, 1437, 360, 8, 10)
    assert d.x_train.max() == 1.0 and d.x_train.min() == 0.0
    assert torch.bincount(torch.cat([d.y_train, d.y_val])).sum() == 1797
    raw = D.load_dataset("digits", digits_scale="raw", input_norm="unit")
    assert raw.x_train.max() == 16.0 and torch.equal(raw.x_train / 16, d.x_train)
    assert torch.equal(raw.y_val, d.y_val)
    assert D.available()["digits"] is True
    with pytest.raises(ValueError, match="digits_scale"):
        D.load_dataset("digits", digits_scale="zscore")


def test_table1_real():
    root = shared_root("MNIST/raw/train-images-idx3-ubyte.gz", "FashionMNIST/raw/train-images-idx3-ubyte.gz",
                       "semeion.data", "usps.t.bz2")
    t = paper.table1(root)
    assert t["name"].tolist() == list(D.DATASETS)
    assert t["dataset"].tolist() == paper.paper_table1()["dataset"].tolist()
    by = t.set_index("name")
    for name in ("mnist", "fashion_mnist", "digits", "semeion"):
        assert by.loc[name, "status"] == "loaded" and by.loc[name, "matches"] is True, name
    assert by.loc["mnist", "total_samples"] == 70000 and by.loc["semeion", "total_samples"] == 1593
    if not (root / "usps.bz2").exists():
        assert by.loc["usps", "status"].startswith("partial: usps.bz2 (train split) absent")
        assert by.loc["usps", "total_samples"] == 2007 and by.loc["usps", "matches"] is None
    if not (root / "cifar-10-batches-py").exists():
        assert by.loc["cifar10", "status"].startswith("missing: ") and by.loc["cifar10", "matches"] is None


# ----------------------------------------------------------------------------
# names, paths, the returned object


def test_names_and_unknown_name():
    assert D.DATASETS == ("cifar10", "pcam", "stl10", "svhn", "mnist", "fashion_mnist", "digits", "usps",
                          "semeion", "fer2013")
    with pytest.raises(ValueError) as e:
        D.load_dataset("cifar100")
    assert all(n in str(e.value) for n in D.DATASETS)


def test_data_root_resolution(monkeypatch, tmp_path):
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "pyproject.toml").write_text('[project]\nname = "salrepro"\n')
    monkeypatch.chdir(proj / "sub")
    monkeypatch.delenv(D.ENV_DATA, raising=False)
    monkeypatch.delenv(D.ENV_CACHE, raising=False)
    assert D.data_root() == proj / "data" / "raw"
    assert D.cache_path("mnist") == proj / "data" / "cache" / "mnist.pt"
    monkeypatch.setenv(D.ENV_DATA, str(tmp_path / "env"))
    assert D.data_root() == tmp_path / "env"
    assert D.data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setenv(D.ENV_CACHE, str(tmp_path / "c"))
    assert D.cache_path("digits") == tmp_path / "c" / "digits.pt"
    assert D.cache_path("digits", tmp_path / "d") == tmp_path / "d" / "digits.pt"


def test_dataset_object(tmp_path):
    d = D.load_dataset("digits", cache_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "x"
    for k in ("name", "display_name", "classes", "resolution", "channels", "n_train", "n_val", "total", "split"):
        assert k in d.meta, k
    assert "1437" in repr(d) and len(repr(d)) < 200


# ----------------------------------------------------------------------------
# missing and corrupt files


@pytest.mark.parametrize("name", [n for n in D.DATASETS if n != "digits"])
def test_missing_files_error(tmp_path, name, monkeypatch):
    monkeypatch.setenv(D.ENV_DATA, str(tmp_path))
    with pytest.raises(D.DatasetMissingError) as e:
        D.load_dataset(name)
    err, msg = e.value, str(e.value)
    assert isinstance(err, FileNotFoundError) and isinstance(err, D.DatasetError)
    assert f"'{name}'" in msg and str(tmp_path) in msg and "$SALREPRO_DATA" in msg
    for reqs in D._SPECS[name].files.values():
        for req in reqs:
            assert req[0][0] in msg  # every expected file, in torchvision's layout
    if name == "fer2013":
        assert "kaggle" in msg.lower() and str(tmp_path / "fer2013" / "fer2013.csv") in msg
        assert "download=True" not in msg
    else:
        assert f"load_dataset('{name}', download=True)" in msg
    assert D.available(tmp_path)[name] is not True and not D.available(tmp_path)[name]


def test_corrupt_real_file_md5(tmp_path):
    src = shared_root("semeion.data") / "semeion.data"
    data = bytearray(src.read_bytes())
    data[100] ^= 1
    (tmp_path / "semeion.data").write_bytes(bytes(data))
    with pytest.raises(D.DatasetCorruptError) as e:
        D.load_dataset("semeion", root=tmp_path, cache_dir=tmp_path / "cache")
    assert str(tmp_path / "semeion.data") in str(e.value) and "MD5" in str(e.value)
    assert not (tmp_path / "cache" / "semeion.pt").exists()


def test_corrupt_mnist_gz(tmp_path):
    src = shared_root("MNIST/raw/train-images-idx3-ubyte.gz") / "MNIST" / "raw"
    shutil.copytree(src, tmp_path / "MNIST" / "raw")
    gz = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-10])
    with pytest.raises(D.DatasetCorruptError, match="t10k-labels-idx1-ubyte.gz"):
        D.load_dataset("mnist", root=tmp_path, cache=False)


@pytest.mark.parametrize("name,writer,victim", [
    ("stl10", write_stl10, "stl10_binary/train_X.bin"),
    ("pcam", write_pcam, "pcam/camelyonpatch_level_2_split_valid_x.h5"),
    ("usps", write_usps, "usps.t.bz2"),
    ("cifar10", write_cifar10, "cifar-10-batches-py/data_batch_3"),
    ("svhn", write_svhn, "test_32x32.mat"),
    ("fer2013", write_fer2013, "fer2013/fer2013.csv"),
])
def test_parse_failure_is_corrupt_error(tmp_path, name, writer, victim):
    writer(tmp_path)
    f = tmp_path / victim
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2 + 7])  # a truncated download
    with pytest.raises(D.DatasetCorruptError) as e:
        D.load_dataset(name, root=tmp_path, verify=False, cache_dir=tmp_path / "cache")
    assert str(f) in str(e.value) and "could not parse" in str(e.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


# ----------------------------------------------------------------------------
# the cache


def test_cache_hit_then_invalidated_by_touch(tmp_path, monkeypatch):
    write_usps(tmp_path / "raw")
    kw = dict(root=tmp_path / "raw", cache_dir=tmp_path / "cache", verify=False)
    first = D.load_dataset("usps", **kw)
    assert first.meta["cache"] == "built" and sorted(os.listdir(tmp_path / "cache")) == ["usps.pt"]

    def boom(ctx, split):
        raise AssertionError("decoded although the cache is valid")

    real_spec = D._SPECS["usps"]
    monkeypatch.setitem(D._SPECS, "usps", dataclasses.replace(real_spec, decode=boom))
    second = D.load_dataset("usps", **kw)  # must not decode
    assert second.meta["cache"] == "hit"
    for a in ("x_train", "y_train", "x_val", "y_val"):
        assert torch.equal(getattr(first, a), getattr(second, a))
    assert second.x_train.dtype == torch.float32

    raw = tmp_path / "raw" / "usps.t.bz2"
    st = raw.stat()
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touch
    with pytest.raises(D.DatasetCorruptError, match="decoded although"):
        D.load_dataset("usps", **kw)  # stale: it decodes again
    monkeypatch.setitem(D._SPECS, "usps", real_spec)
    assert D.load_dataset("usps", **kw).meta["cache"] == "built"
    assert D.load_dataset("usps", **kw).meta["cache"] == "hit"


def test_cache_rebuilt_when_preprocessing_or_options_change(tmp_path, monkeypatch):
    kw = dict(cache_dir=tmp_path)
    assert D.load_dataset("digits", **kw).meta["cache"] == "built"
    assert D.load_dataset("digits", **kw).meta["cache"] == "hit"
    raw = D.load_dataset("digits", digits_scale="raw", input_norm="unit", **kw)
    assert raw.meta["cache"] == "built" and raw.x_train.max() == 16.0  # the option is in the key
    unit = D.load_dataset("digits", input_norm="unit", **kw)
    assert unit.meta["cache"] == "built" and unit.x_train.max() == 1.0
    monkeypatch.setattr(D, "PREP_VERSION", "test-bump")
    assert D.load_dataset("digits", **kw).meta["cache"] == "built"


def test_unverified_cache_is_not_served_to_verified_load(tmp_path):
    write_usps(tmp_path / "raw")
    kw = dict(root=tmp_path / "raw", cache_dir=tmp_path / "cache")
    D.load_dataset("usps", verify=False, **kw)
    with pytest.raises(D.DatasetCorruptError, match="MD5"):
        D.load_dataset("usps", **kw)


def test_replaced_raw_file_never_passes_for_complete(tmp_path):
    write_usps(tmp_path / "raw")
    kw = dict(root=tmp_path / "raw", cache_dir=tmp_path / "cache", verify=False)
    D.load_dataset("usps", **kw)
    f = tmp_path / "raw" / "usps.bz2"
    f.write_bytes(f.read_bytes()[:100])  # e.g. an interrupted re-download
    with pytest.raises(D.DatasetCorruptError):
        D.load_dataset("usps", **kw)


def test_unreadable_cache_is_rebuilt_and_disabled_cache_writes_nothing(tmp_path):
    path = D.cache_path("digits", tmp_path)
    path.write_bytes(b"not a torch file")
    d = D.load_dataset("digits", cache_dir=tmp_path)
    assert d.meta["cache"] == "built" and D.load_dataset("digits", cache_dir=tmp_path).meta["cache"] == "hit"
    off = D.load_dataset("digits", cache=False, cache_dir=tmp_path / "off")
    assert off.meta["cache"] == "off" and not (tmp_path / "off").exists()


def test_prepare_returns_the_cache_file(tmp_path):
    path = D.prepare("digits", cache_dir=tmp_path)
    assert path == tmp_path / "digits.pt" and path.is_file()
    blob = torch.load(path, weights_only=True)
    assert blob["x_train"].dtype == torch.uint8 and blob["meta"]["scale"] == 16.0


def test_fer2013_download_true_still_explains_manual_download(tmp_path):
    with pytest.raises(D.DatasetMissingError) as e:
        D.load_dataset("fer2013", root=tmp_path, download=True)
    assert "kaggle competitions download" in str(e.value) and "icml_face_data.csv" in str(e.value)


def test_table1_on_synthetic_files(tmp_path):
    write_cifar10(tmp_path)  # MD5s cannot match: reported as an error, not loaded
    write_pcam(tmp_path)  # PCam's .h5 files carry no MD5: loads, and its test split counts toward the total
    t = paper.table1(tmp_path, cache_dir=tmp_path / "cache").set_index("name")
    assert t.loc["cifar10", "status"].startswith("error: ") and t.loc["cifar10", "matches"] is None
    assert t.loc["pcam", "status"] == "loaded" and t.loc["pcam", "total_samples"] == 3 + 2 + 4
    assert t.loc["pcam", "matches"] is False and t.loc["pcam", "paper_total_samples"] == 327680
    assert "test 4" in t.loc["pcam", "note"]
    assert t.loc["svhn", "status"] == "missing: train_32x32.mat (train split) and 1 more file(s)"
    assert t.loc["digits", "matches"] is True
    assert D.available(tmp_path)["pcam"] is True


def test_train_sizes_table_matches_the_loaders():
    """salrepro.data.TRAIN_SIZES (used to check params before loading) agrees with the data."""
    assert D.load_dataset("digits", cache=False).x_train.shape[0] == D.TRAIN_SIZES["digits"]
    root = os.environ.get("SALREPRO_DATA")
    if not root:
        pytest.skip("SALREPRO_DATA not set: only Digits checked")
    for name in ("semeion", "mnist", "fashion_mnist"):
        assert D.load_dataset(name, root=root).x_train.shape[0] == D.TRAIN_SIZES[name]


# ----------------------------------------------------------------------------
# the input map (input_norm) and the rebuilt USPS training split


def test_input_maps_on_a_small_tensor():
    x_train = torch.tensor([[0.0, 0.5, 0.25], [1.0, 0.5, 0.75]])
    x_val = torch.tensor([[0.5, 1.0, 0.0]])
    tr, va = D.input_map(x_train.clone(), x_val.clone(), "pm1")
    assert torch.equal(tr, torch.tensor([[-1.0, 0.0, -0.5], [1.0, 0.0, 0.5]])) and torch.equal(va, torch.tensor([[0.0, 1.0, -1.0]]))
    tr, va = D.input_map(x_train.clone(), x_val.clone(), "unit")
    assert torch.equal(tr, x_train) and torch.equal(va, x_val)
    # standard: per feature, training mean and std (ddof 0); feature 1 is constant on the training split -> 0 in both
    tr, va = D.input_map(x_train.clone(), x_val.clone(), "standard")
    assert torch.allclose(tr, torch.tensor([[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0]]))
    assert torch.allclose(va, torch.tensor([[0.0, 0.0, -2.0]]))  # (0 - 0.5) / 0.25 with the training statistics
    # global: one mean (0.5) and std over every training value
    std = torch.tensor([0.0, 0.5, 0.25, 1.0, 0.5, 0.75], dtype=torch.float64).std(correction=0).item()
    tr, va = D.input_map(x_train.clone(), x_val.clone(), "global")
    assert torch.allclose(tr, (x_train - 0.5) / std) and torch.allclose(va, (x_val - 0.5) / std)
    with pytest.raises(ValueError, match="input_norm must be one of"):
        D.input_map(x_train, x_val, "zscore")


def test_standard_and_global_use_training_statistics_only():
    x_train, x_val = torch.rand(50, 4), torch.rand(20, 4)
    for norm in ("standard", "global"):
        tr, va = D.input_map(x_train.clone(), x_val.clone(), norm)
        tr2, va2 = D.input_map(x_train.clone(), x_val.clone() * 7 + 3, norm)  # other validation data
        assert torch.equal(tr, tr2)  # the training split's output does not see the validation split
        tr3, va3 = D.input_map(x_train.clone() * 2, x_val.clone(), norm)  # other training data
        assert not torch.allclose(va, va3)  # ...while the validation split is mapped by training statistics
    tr, _ = D.input_map(x_train.clone(), x_val.clone(), "standard")
    assert torch.allclose(tr.mean(0), torch.zeros(4), atol=1e-6) and torch.allclose(tr.std(0, correction=0), torch.ones(4), atol=1e-5)


def test_digits_under_every_map_from_one_cache_file(tmp_path):
    kw = dict(cache_dir=tmp_path)
    unit = D.load_dataset("digits", input_norm="unit", **kw)
    cache = Path(unit.meta["cache_file"])
    before = cache.read_bytes()
    pm1 = D.load_dataset("digits", **kw)  # the default map
    assert pm1.meta["input_norm"] == "pm1" and pm1.meta["cache"] == "hit"  # the cache holds the pixels before the map
    assert torch.equal(pm1.x_train, unit.x_train * 2 - 1) and torch.equal(pm1.x_val, unit.x_val * 2 - 1)
    std = D.load_dataset("digits", input_norm="standard", **kw)
    assert std.meta["cache"] == "hit" and std.meta["data_options"] == {"input_norm": "standard", "digits_scale": "unit", "split": "official"}
    constant = unit.x_train.std(0) == 0  # Digits has pixels that are always 0 on the training split
    assert constant.any() and (std.x_train[:, constant] == 0).all() and (std.x_val[:, constant] == 0).all()
    assert torch.allclose(std.x_train[:, ~constant].mean(0), torch.zeros(int((~constant).sum())), atol=1e-5)
    glob = D.load_dataset("digits", input_norm="global", **kw)
    assert abs(glob.x_train.mean().item()) < 1e-5 and abs(glob.x_train.std(correction=0).item() - 1) < 1e-4
    assert cache.read_bytes() == before  # no map rewrote the (DVC-tracked) cache file
    assert "input map pm1" in pm1.meta["preprocessing"]


def test_bad_data_options_are_refused_with_the_key_and_allowed_values():
    with pytest.raises(ValueError, match=r"input_norm.*\('pm1', 'unit', 'standard', 'global'\).*'zscore'"):
        D.load_dataset("digits", input_norm="zscore")
    with pytest.raises(ValueError, match="usps_train.*applies to usps only"):
        D.data_options("digits", {"usps_train": "rebuilt"})
    with pytest.raises(ValueError, match="unknown"):
        D.data_options("mnist", {"input_norms": "pm1"})
    assert D.data_options("mnist") == {"input_norm": "pm1", "split": "official"}
    assert D.data_options("usps", {"usps_train": "rebuilt"}) == {"input_norm": "pm1", "usps_train": "rebuilt", "split": "official"}
    assert D.data_options("digits", {"input_norm": "unit"}) == {"input_norm": "unit", "digits_scale": "unit", "split": "official"}


def test_usps_rebuilt_training_split_is_read_only_by_name(tmp_path):
    root = shared_root("usps.t.bz2", D.USPS_REBUILT[0])
    with pytest.raises(D.DatasetMissingError) as e:  # the default reads the original usps.bz2, absent here
        D.load_dataset("usps", root=root, cache_dir=tmp_path)
    assert "[MISSING] usps.bz2" in str(e.value)
    d = D.load_dataset("usps", root=root, cache_dir=tmp_path, usps_train="rebuilt")
    check_common(d, 7291, 2007, 16, 10)
    assert d.meta["display"] == "USPS (training split rebuilt)" and "rebuilt" in d.meta["split"]
    assert d.meta["files"] == ["usps-rebuilt/usps.bz2", "usps.t.bz2"]
    assert torch.bincount(d.y_train).sum() == 7291 and sorted(d.y_train.unique().tolist()) == list(range(10))
    # the rebuilt file under torchvision's own name is refused, and the message says how to use it
    fake = tmp_path / "root"
    fake.mkdir()
    shutil.copy(root / "usps.t.bz2", fake / "usps.t.bz2")
    shutil.copy(root / D.USPS_REBUILT[0], fake / "usps.bz2")
    with pytest.raises(D.DatasetCorruptError, match="rebuilt training split.*usps_train: rebuilt"):
        D.load_dataset("usps", root=fake, cache_dir=tmp_path / "c2")
    # asked for by name but absent: the message says where it is read from and what it is
    with pytest.raises(D.DatasetMissingError, match="usps-rebuilt/usps.bz2.*cannot be downloaded"):
        D.load_dataset("usps", root=tmp_path / "empty", cache_dir=tmp_path / "c3", usps_train="rebuilt")


def test_usps_rebuilt_with_a_wrong_file_is_refused(tmp_path):
    write_usps(tmp_path)
    (tmp_path / "usps-rebuilt").mkdir()
    shutil.copy(tmp_path / "usps.bz2", tmp_path / D.USPS_REBUILT[0])
    with pytest.raises(D.DatasetCorruptError, match=D.USPS_REBUILT[1]):
        D.load_dataset("usps", root=tmp_path, cache=False, usps_train="rebuilt")
    d = load("usps", tmp_path, usps_train="rebuilt")  # verify=False: the same decoding path as the original file
    assert torch.equal(d.x_train, load("usps", tmp_path).x_train)


def test_the_tuning_split_is_carved_out_of_the_training_split_alone(tmp_path):
    """split="tuning": a stratified 15% of each class of the training split validates, the rest trains;
    the official validation split is not read (its rows appear nowhere), and the carve never moves
    with anything but its fixed seed."""
    official = D.load_dataset("digits", cache_dir=tmp_path)
    tuning = D.load_dataset("digits", cache_dir=tmp_path, split="tuning")
    n = official.y_train.numel()
    assert tuning.y_train.numel() + tuning.y_val.numel() == n
    fit, held = D.tuning_split(official.y_train)
    assert torch.equal(tuning.x_train, official.x_train[fit]) and torch.equal(tuning.x_val, official.x_train[held])
    assert torch.equal(tuning.y_val, official.y_train[held]) and not set(fit.tolist()) & set(held.tolist())
    for c in range(10):  # stratified: round(15%) of each class
        assert int((tuning.y_val == c).sum()) == round(0.15 * int((official.y_train == c).sum()))
    assert torch.equal(D.tuning_split(official.y_train)[1], held)  # fixed: the same carve every time
    assert not torch.equal(D.tuning_split(official.y_train, seed=1)[1], held)
    assert tuning.meta["data_options"]["split"] == "tuning" and tuning.meta["split"].startswith("tuning:")
    with pytest.raises(ValueError, match="split"):
        D.load_dataset("digits", cache_dir=tmp_path, split="test")


def test_cross_validation_folds_never_hold_the_reported_split_and_are_stratified():
    """Each fold of cv3 trains and validates on rows of the official training split only (the very rows,
    by index), the validation third stratified by class; the three held-out thirds partition it."""
    import torch

    from salrepro.data import cv_split, load_dataset

    full = load_dataset("digits")
    held_all = []
    for i in range(3):
        fold = load_dataset("digits", split=f"cv3-{i}")
        fit, held = cv_split(full.y_train, 3, i)
        assert torch.equal(fold.x_val, full.x_train[held]) and torch.equal(fold.y_val, full.y_train[held])
        assert torch.equal(fold.x_train, full.x_train[fit]) and torch.equal(fold.y_train, full.y_train[fit])
        counts, total = torch.bincount(fold.y_val, minlength=10), torch.bincount(full.y_train, minlength=10)
        assert ((counts - total / 3).abs() <= 1).all()  # stratified: each class's third, to one sample
        held_all.append(held)
    assert torch.equal(torch.sort(torch.cat(held_all)).values, torch.arange(full.x_train.shape[0]))
    with pytest.raises(ValueError, match="must be one of"):
        load_dataset("digits", split="cv2-0")  # k >= 3


# ---------------------------------------------------------------------------------------------------------------------
# what the missing-files messages say
# ---------------------------------------------------------------------------------------------------------------------
def test_missing_files_name_the_splits_that_read_them_once(tmp_path):
    status = D.available(tmp_path)
    cifar, pcam = str(status["cifar10"]), str(status["pcam"])
    assert cifar.count("(train+val)") == 1 and "cifar-10-batches-py/: data_batch_1, " in cifar and "batches.meta" in cifar
    assert "MNIST/raw/: train-images-idx3-ubyte (or train-images-idx3-ubyte.gz), " in str(status["mnist"])
    assert pcam.count("(train)") == 1 and pcam.count("(val)") == 1
    with pytest.raises(D.DatasetMissingError) as e:
        D.load_dataset("cifar10", root=tmp_path)
    text = str(e.value)
    assert text.count("train+val") == 1 and text.count("[MISSING]") == 7 and "(train+val)" not in text


@pytest.mark.parametrize("asked, present, fix", [
    ("original", D.USPS_REBUILT[0], "the data option usps_train: rebuilt reads it"),
    ("rebuilt", "usps.bz2", "the data option usps_train: original reads it"),
])
def test_a_missing_usps_training_file_names_the_other_one_when_it_is_there(tmp_path, asked, present, fix):
    (tmp_path / present).parent.mkdir(parents=True, exist_ok=True)
    for name in ("usps.t.bz2", present):
        (tmp_path / name).write_bytes(b"")  # presence is what the messages look at
    status = str(D.available(tmp_path, {"usps": {"usps_train": asked}})["usps"])
    assert status.startswith("partial: val split present") and fix in status
    with pytest.raises(D.DatasetMissingError) as e:
        D.load_dataset("usps", root=tmp_path, usps_train=asked)
    assert fix in str(e.value)
    (tmp_path / present).unlink()  # nothing to offer: no hint
    assert "usps_train:" not in str(D.available(tmp_path, {"usps": {"usps_train": asked}})["usps"])


def test_digits_is_not_said_to_be_decoded_from_files(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="salrepro.data"):
        D.prepare("digits", root=tmp_path / "nothing-here", cache_dir=tmp_path)
    said = [r.getMessage() for r in caplog.records if "decoding" in r.getMessage()]
    assert said == ["decoding digits from sklearn.datasets.load_digits (no files needed)"]
