"""The ten datasets of the SAL paper's Table 1: what each is, the files torchvision needs for it, and
how each is decoded into flat gray pixels (salrepro.data loads, checks, caches and maps them).

Layout, top to bottom:
  1. the names and the errors a dataset raises
  2. pixels: bit-exact PIL luma, vectorised and chunked
  3. one decoder per dataset, each a thin call into torchvision / scikit-learn
  4. `_SPECS`: the table that ties a name to its files, MD5s and decoder

Adding a dataset: its decoder and one `_Spec` here (its files, split, Table 1 spelling, training-set size and
downloader), its row in src/salrepro/paper/table1_datasets.csv.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torchvision.datasets as tvd

# ----------------------------------------------------------------------------
# 1. names and errors


class DatasetError(RuntimeError):
    """A dataset cannot be loaded; the message says why and what to do."""


class DatasetMissingError(DatasetError, FileNotFoundError):
    """Raw files are absent: names the dataset, folder, files and how to get them."""


class DatasetCorruptError(DatasetError):
    """A raw file fails its MD5 or cannot be parsed: names the file."""



# ----------------------------------------------------------------------------
# 2. pixels


def luma(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint8 gray, bit-identical to PIL's convert("L").

    PIL computes L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, i.e. the ITU-R
    601-2 weights 0.299/0.587/0.114 in 16-bit fixed point, rounded half up.
    """
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _gray_flat(images, pixels_per_chunk: int = 1 << 22) -> np.ndarray:
    """(N, H, W, 3) uint8 array or h5py dataset -> (N, H*W) uint8, a chunk of images at a time."""
    n, h, w = images.shape[:3]
    out = np.empty((n, h * w), dtype=np.uint8)
    step = max(1, pixels_per_chunk // (h * w))
    for i in range(0, n, step):
        out[i:i + step] = luma(np.asarray(images[i:i + step])).reshape(-1, h * w)
    return out


def _flat(images: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 gray -> (N, H*W) uint8, row-major."""
    images = np.asarray(images)
    return np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.uint8)


def _stratified(x: np.ndarray, y: np.ndarray, split: str):
    """The fixed stratified 80/20 split of Digits and Semeion (independent of any run seed)."""
    from sklearn.model_selection import train_test_split

    tr, va = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    idx = tr if split == "train" else va
    return x[idx], y[idx]


# ----------------------------------------------------------------------------
# 3. decoders: (ctx, split) -> (uint8 (N, D) pixels, int64 (N,) labels, extra meta)
#
# The files were found and MD5-checked by salrepro.data (its file checks) before any decoder runs, so
# the torchvision classes below only have their MD5 fields blanked (None makes
# torchvision's check_integrity test existence only); parsing is torchvision's.


class _CIFAR10(tvd.CIFAR10):
    train_list = [[f, None] for f, _ in tvd.CIFAR10.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _SVHN(tvd.SVHN):
    split_list = {k: [url, f, None] for k, (url, f, _) in tvd.SVHN.split_list.items()}


class _STL10(tvd.STL10):
    train_list = [[f, None] for f, _ in tvd.STL10.train_list[:2]]  # unlabeled_X.bin (2.6 GB) is not needed
    test_list = [[f, None] for f, _ in tvd.STL10.test_list]


class _SEMEION(tvd.SEMEION):
    md5_checksum = None


class _FER2013(tvd.FER2013):
    _RESOURCES = {k: (f, None) for k, (f, _) in tvd.FER2013._RESOURCES.items()}


class _Ctx:
    """What a decoder may use: the root, the files found per split, a scratch folder, a memo."""

    def __init__(self, spec, root: Path, files: dict, scratch_parent: Path | None, options: dict):
        self.spec, self.root, self.options = spec, root, options
        self.files = {split: [p for p, _ in fs] for split, fs in files.items()}  # split -> [Path]
        self._scratch_parent, self._tmp, self._memo = scratch_parent, None, {}

    def scratch(self) -> Path:
        if self._tmp is None:
            if self._scratch_parent is not None:
                self._scratch_parent.mkdir(parents=True, exist_ok=True)
            self._tmp = tempfile.TemporaryDirectory(prefix="_raw-", dir=self._scratch_parent)
        return Path(self._tmp.name)

    def once(self, key: str, fn: Callable):
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _mnist_like(cls):
    def decode(ctx: _Ctx, split: str):
        ds = cls(_unpacked_root(ctx, cls.__name__), train=split == "train", download=False)
        return _flat(ds.data.numpy()), ds.targets.numpy(), {}
    return decode


def _unpacked_root(ctx: _Ctx, folder: str) -> Path:
    """torchvision's MNIST reads only the gunzipped files; unpack .gz into scratch, never into the data root."""
    files = sorted({f for fs in ctx.files.values() for f in fs})
    if not any(f.suffix == ".gz" for f in files):
        return ctx.root

    def unpack() -> Path:
        raw = ctx.scratch() / folder / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for f in files:
            dest = raw / f.name.removesuffix(".gz")
            if f.suffix == ".gz":
                with gzip.open(f, "rb") as src, open(dest, "wb") as dst:  # gzip checks its CRC32 at the end
                    shutil.copyfileobj(src, dst, 1 << 20)
            else:
                shutil.copyfile(f, dest)
        return ctx.scratch()

    return ctx.once("unpacked", unpack)


def _decode_cifar10(ctx: _Ctx, split: str):
    ds = _CIFAR10(ctx.root, train=split == "train")
    return _gray_flat(ds.data), np.asarray(ds.targets), {}  # ds.data is (N, 32, 32, 3) HWC


def _decode_svhn(ctx: _Ctx, split: str):
    ds = _SVHN(ctx.root, split="train" if split == "train" else "test")
    return _gray_flat(ds.data.transpose(0, 2, 3, 1)), ds.labels, {}  # CHW -> HWC, as its __getitem__ does


def _decode_stl10(ctx: _Ctx, split: str):
    ds = _STL10(ctx.root, split="train" if split == "train" else "test")
    return _gray_flat(ds.data.transpose(0, 2, 3, 1)), ds.labels, {}


def _decode_pcam(ctx: _Ctx, split: str):
    # torchvision's PCAM.__getitem__ reopens both HDF5 files for every image, which is
    # hours for 327k images; read the same datasets ("x", "y") of the same files in chunks.
    h5py = _import("h5py", "PCam")
    files = tvd.PCAM._FILES["train" if split == "train" else "val"]
    base = ctx.root / "pcam"
    with h5py.File(base / files["images"][0], "r") as fx, h5py.File(base / files["targets"][0], "r") as fy:
        x = _gray_flat(fx["x"])
        y = np.asarray(fy["y"]).reshape(-1)  # (N, 1, 1, 1) -> (N,)
    extra = {}
    if split == "val":  # the test split is not used, but Table 1 counts it
        test_y = base / tvd.PCAM._FILES["test"]["targets"][0]
        extra = {"unused_split": "test", "n_unused": _h5_len(h5py, test_y) if test_y.is_file() else None}
    return x, y, extra


def _h5_len(h5py, path: Path) -> int:
    with h5py.File(path, "r") as f:
        return int(f["y"].shape[0])


def _decode_fer2013(ctx: _Ctx, split: str):
    # torchvision's split="test" is PublicTest + PrivateTest in file order; keep PublicTest,
    # using the Usage column of the same CSV to tell them apart.
    usage = ctx.once("usage", lambda: _fer_usage(ctx.files[split][0]))
    if split == "train":
        ds = _FER2013(ctx.root, split="train")
        if len(ds) != usage.count("Training"):
            raise ValueError(f"Usage column has {usage.count('Training')} Training rows, torchvision parsed {len(ds)}")
        return (*_pil_gray(ds, range(len(ds))), {})
    usage = [u for u in usage if u in ("PublicTest", "PrivateTest")]
    ds = _FER2013(ctx.root, split="test")
    if len(usage) != len(ds):
        raise ValueError(f"Usage column has {len(usage)} test rows, torchvision parsed {len(ds)}")
    keep = np.flatnonzero(np.asarray(usage) == "PublicTest")
    return (*_pil_gray(ds, keep), {"unused_split": "PrivateTest", "n_unused": len(usage) - len(keep)})


def _fer_usage(path: Path) -> list[str]:
    """The Usage column; also rejects incomplete rows, which torchvision would silently drop."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        key = "Usage" if "Usage" in (reader.fieldnames or []) else " Usage"  # icml_face_data.csv has " Usage"
        usage = []
        for row in reader:
            if None in row.values() or None in row:
                raise ValueError(f"row {reader.line_num} is incomplete (truncated file?)")
            usage.append(row[key])
        return usage


def _pil_gray(ds, idx) -> tuple[np.ndarray, np.ndarray]:
    """Items idx through the dataset's own __getitem__: PIL image -> "L" -> flat uint8, and labels."""
    items = [ds[int(i)] for i in idx]
    return _flat(np.stack([np.asarray(img.convert("L")) for img, _ in items])), np.asarray([t for _, t in items])


def _decode_usps(ctx: _Ctx, split: str):
    # torchvision reads <root>/usps.bz2 or <root>/usps.t.bz2: the folder of the file found for this split
    # (the data root, or usps-rebuilt/ for the rebuilt training split; the MD5 was checked by _verify)
    ds = tvd.USPS(ctx.files[split][0].parent, train=split == "train", download=False)  # .data is what __getitem__ wraps as PIL "L"
    return _flat(ds.data), np.asarray(ds.targets), {}


def _decode_semeion(ctx: _Ctx, split: str):
    ds = ctx.once("all", lambda: _SEMEION(ctx.root, download=False))
    return (*_stratified(_flat(ds.data), np.asarray(ds.labels), split), {})


def _decode_digits(ctx: _Ctx, split: str):
    from sklearn.datasets import load_digits

    bunch = ctx.once("all", load_digits)
    x = bunch.data.astype(np.uint8)  # integers 0..16, already row-major 8x8
    return (*_stratified(x, bunch.target, split), {})


# ----------------------------------------------------------------------------
# 4. the table: name -> files, MD5s, decoder
#
# files[split] lists what torchvision needs on disk to read that split, relative
# to the data root; each entry is a tuple of alternatives (relpath, md5 or None),
# the first one present wins. torchvision's MNIST, CIFAR10 and STL10 classes
# insist on every file of both splits, so those list all of them for each split.


@dataclass(frozen=True)
class _Spec:
    name: str
    display: str  # the paper's spelling (Table 1)
    classes: int
    hw: tuple
    rgb: bool
    split: str  # how train / val are formed
    source: str  # the library entry point
    files: dict
    decode: Callable
    libs: tuple = ("torchvision",)  # their versions go into the cache key
    url: str = ""  # where download=True fetches from
    train_size: int = 0  # samples in the protocol's training split (checked against the loader in tests/test_data.py)
    fetch: Callable | None = None  # fetch(root): torchvision's downloader into the data root; None: no download
    optional: tuple = ()  # read when present (only to count Table 1's total)
    note: str = ""  # said in the missing-files message (e.g. where the rebuilt USPS file comes from)
    pixel_max: float = 255.0  # the decoded pixels' largest value (Digits: 16), mapped to 1 before input_norm

    @property
    def download(self) -> bool:
        """Whether download=True can fetch its files (Digits needs none; FER2013 is a manual download)."""
        return self.fetch is not None


# Published MD5s of the gunzipped MNIST/Fashion-MNIST files (torchvision lists only the .gz ones).
_UNPACKED_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}


def _mnist_files(cls) -> dict:
    d = cls.__name__
    req = tuple(((f"{d}/raw/{gz[:-3]}", _UNPACKED_MD5[d][gz[:-3]]), (f"{d}/raw/{gz}", md5))
                for gz, md5 in cls.resources)  # prefer the gunzipped file, as torchvision does
    return {"train": req, "val": req}


def _both(req: tuple) -> dict:
    return {"train": req, "val": req}


def _one(files) -> tuple:
    return tuple(((f, md5),) for f, md5 in files)


_FER_FILES = tuple((f"fer2013/{tvd.FER2013._RESOURCES[k][0]}", tvd.FER2013._RESOURCES[k][1]) for k in ("fer", "icml"))
_PCAM = {s: _one((f"pcam/{f[0]}", None) for f in tvd.PCAM._FILES[s].values()) for s in ("train", "val")}
_GRAY, _OFFICIAL = False, "official train/test"

_SPECS = {s.name: s for s in (
    _Spec("cifar10", "CIFAR-10", 10, (32, 32), True, _OFFICIAL, "torchvision.datasets.CIFAR10",
          _both(_one((f"{tvd.CIFAR10.base_folder}/{f}", m) for f, m in
                     tvd.CIFAR10.train_list + tvd.CIFAR10.test_list
                     + [[tvd.CIFAR10.meta["filename"], tvd.CIFAR10.meta["md5"]]])),
          _decode_cifar10, url=tvd.CIFAR10.url, train_size=50000,
          fetch=lambda root: tvd.CIFAR10(root, train=True, download=True)),
    _Spec("pcam", "PCam", 2, (96, 96), True, "official train/valid",
          "torchvision.datasets.PCAM (files), h5py (chunked read)", _PCAM, _decode_pcam, libs=("torchvision", "h5py"),
          url="Google Drive ids in torchvision.datasets.PCAM (needs gdown)",
          optional=(f"pcam/{tvd.PCAM._FILES['test']['targets'][0]}",), train_size=262144,
          fetch=lambda root: [tvd.PCAM(root, split=s, download=True) for s in ("train", "val")]),
    _Spec("stl10", "STL-10", 10, (96, 96), True, "official train/test (unlabeled not used)",
          "torchvision.datasets.STL10",
          _both(_one((f"{tvd.STL10.base_folder}/{f}", m) for f, m in
                     tvd.STL10.train_list[:2] + tvd.STL10.test_list)),
          _decode_stl10, url=tvd.STL10.url, train_size=5000, fetch=lambda root: tvd.STL10(root, split="test", download=True)),
    _Spec("svhn", "SVHN", 10, (32, 32), True, "official train/test (extra not used)", "torchvision.datasets.SVHN",
          {s: _one([tuple(tvd.SVHN.split_list[k][1:])]) for s, k in (("train", "train"), ("val", "test"))},
          _decode_svhn, libs=("torchvision", "scipy"), url="http://ufldl.stanford.edu/housenumbers/", train_size=73257,
          fetch=lambda root: [tvd.SVHN(root, split=s, download=True) for s in ("train", "test")]),
    _Spec("mnist", "MNIST", 10, (28, 28), _GRAY, _OFFICIAL, "torchvision.datasets.MNIST",
          _mnist_files(tvd.MNIST), _mnist_like(tvd.MNIST), url=tvd.MNIST.mirrors[0], train_size=60000,
          fetch=lambda root: tvd.MNIST(root, train=False, download=True)),
    _Spec("fashion_mnist", "Fashion-MNIST", 10, (28, 28), _GRAY, _OFFICIAL, "torchvision.datasets.FashionMNIST",
          _mnist_files(tvd.FashionMNIST), _mnist_like(tvd.FashionMNIST), url=tvd.FashionMNIST.mirrors[0],
          train_size=60000, fetch=lambda root: tvd.FashionMNIST(root, train=False, download=True)),
    _Spec("digits", "Digits", 10, (8, 8), _GRAY, "stratified 80/20, seed 0", "sklearn.datasets.load_digits",
          {"train": (), "val": ()}, _decode_digits, libs=("sklearn",), train_size=1437, pixel_max=16.0),
    _Spec("usps", "USPS", 10, (16, 16), _GRAY, _OFFICIAL, "torchvision.datasets.USPS",
          {s: _one([tuple(tvd.USPS.split_list[k][1:])]) for s, k in (("train", "train"), ("val", "test"))},
          _decode_usps, url="https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps", train_size=7291,
          fetch=lambda root: [tvd.USPS(root, train=t, download=True) for t in (True, False)]),
    _Spec("semeion", "Semeion", 10, (16, 16), _GRAY, "stratified 80/20, seed 0", "torchvision.datasets.SEMEION",
          _both(_one([(tvd.SEMEION.filename, tvd.SEMEION.md5_checksum)])), _decode_semeion,
          libs=("torchvision", "sklearn"), url=tvd.SEMEION.url, train_size=1274,
          fetch=lambda root: tvd.SEMEION(root, download=True)),
    _Spec("fer2013", "FER2013", 7, (48, 48), _GRAY, "official Training/PublicTest (PrivateTest not used)",
          "torchvision.datasets.FER2013", _both((_FER_FILES,)), _decode_fer2013, train_size=28709,
          url="https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge"),
)}
DATASETS = tuple(_SPECS)  # the names, in the paper's Table 1 order
DISPLAY_NAMES = {name: spec.display for name, spec in _SPECS.items()}  # the paper's spelling
NUM_CLASSES = {name: spec.classes for name, spec in _SPECS.items()}
IN_FEATURES = {name: spec.hw[0] * spec.hw[1] for name, spec in _SPECS.items()}  # flattened gray pixels
# Training-split sizes of the protocol's splits (checked against the loaders in tests/test_data.py),
# so that parameters can be checked before any data is loaded.
TRAIN_SIZES = {name: spec.train_size for name, spec in _SPECS.items()}

_FER_HOWTO = (
    "FER2013 cannot be downloaded automatically (torchvision has no downloader; Kaggle needs a login and "
    "acceptance of the challenge rules). Download it by hand from\n"
    "    https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge/data\n"
    "  (or: kaggle competitions download -c \\\n"
    "       challenges-in-representation-learning-facial-expression-recognition-challenge),\n"
    "  unpack fer2013.tar.gz and put fer2013.csv (columns emotion,pixels,Usage) at\n"
    "    {root}/fer2013/fer2013.csv\n"
    "  (icml_face_data.csv from the same page also works, at {root}/fer2013/icml_face_data.csv).\n"
    "  train.csv + test.csv alone are not enough: test.csv has no labels, so there is no PublicTest split."
)


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return _SPECS[name]


def _import(module: str, who: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DatasetError(f"{who} needs the Python package {module!r}: pip install {module}") from e
