"""Data layer: the ten datasets of the SAL paper's Table 1, as flat gray tensors.

    data = load_dataset("mnist")            # -> Dataset (frozen dataclass)
    data.x_train, data.y_train              # float32 (N, D) in [-1, 1], int64 (N,)
    data.x_val, data.y_val, data.in_features, data.num_classes, data.meta

Every dataset is read by a well-kept library, never by a parser of our own:
torchvision's dataset classes for nine of them, scikit-learn's `load_digits`
for Digits. Two thin exceptions, both reading what torchvision reads: PCam's
HDF5 files are read in chunks with h5py (torchvision's PCAM reopens both files
per image), and FER2013's Usage column is read with the csv module to keep
PublicTest out of torchvision's split="test" (PublicTest + PrivateTest).

Preprocessing is the same everywhere: RGB images become gray by luma exactly as
PIL's mode "L" computes it, pixels are scaled to [0, 1] (Digits: 0..16 divided
by 16), images are flattened row-major at their native resolution, and then the
input map `input_norm` is applied (default `pm1`: x * 2 - 1, into [-1, 1], what
torchvision's Normalize((0.5,), (0.5,)) gives; `unit` keeps [0, 1]; `standard`
and `global` standardise with statistics of the training split only). The map
is the protocol's one calibrated choice: docs/data.md gives the BP numbers that
chose it. Splits are
the official ones (train/test, PCam train/valid, FER2013 Training/PublicTest);
Digits and Semeion get one fixed stratified 80/20 split.

Layout of the package: `datasets.py` holds the ten datasets (names, errors, pixels, one decoder
each, and `_SPECS`, the table that ties a name to its files, MD5s and decoder); this file loads them:
  1. the returned `Dataset`
  2. where files live: `data_root` (argument > $SALREPRO_DATA > <project>/data/raw)
     and `cache_root` (cache_dir argument > $SALREPRO_CACHE > <project>/data/cache)
  3. file checks: missing files and MD5 mismatches raise `DatasetMissingError` /
     `DatasetCorruptError` before torchvision is called; a parse failure inside
     torchvision / numpy / PIL / h5py is re-raised as `DatasetCorruptError`
  4. the cache: one file per dataset, `<cache_dir>/<name>.pt`, holding uint8
     pixels plus a key (preprocessing version, options, library versions and
     size + mtime_ns of every raw file read); a key mismatch rebuilds it. It holds
     the pixels before the input map: every `input_norm` is served by one cache
     file (the map is applied on load, and named in each run's identity). It is
     written atomically, so a failed decode never leaves one behind. Being one
     deterministic file per dataset, a DVC stage can own it as an `outs:`.
  5. public API: `load_dataset`, `load_split`, `prepare`, `available`, `describe`.

MD5s: the loader checks every raw file against torchvision's own published MD5
(read from the torchvision class attributes; for gunzipped MNIST files the
published MD5s of the originals; PCam's .h5 files have none) before decoding,
then reads the file through torchvision classes whose MD5 fields are blanked,
so each file is hashed once, by us, with a clear error. `verify=False` skips only that MD5
comparison (files must still exist and parse); it exists so tests can feed
tiny synthetic files in each exact on-disk format through the real code path.
A cache built with verify=False is never served to a verify=True call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets as tvd
from torchvision.datasets.utils import calculate_md5

from .datasets import (DATASETS, DISPLAY_NAMES, IN_FEATURES, NUM_CLASSES, TRAIN_SIZES, DatasetCorruptError,  # noqa: F401
                       DatasetError, DatasetMissingError, _Ctx, _FER_HOWTO, _Spec, _SPECS, _gray_flat, _import, _spec, luma)

log = logging.getLogger(__name__)

# Bump whenever a change to this package changes the tensors it produces: every
# cache file then becomes stale and is rebuilt on its next load.
PREP_VERSION = "1"

DIGITS_SCALES = ("unit", "raw")  # unit: 0..16 / 16 into [0, 1]; raw: 0..16 kept as float
INPUT_NORMS = ("pm1", "unit", "standard", "global")  # the input map applied after scaling (see `input_map`)
USPS_TRAIN = ("original", "rebuilt")  # which file holds USPS's training split (see docs/data.md)
# Which samples train and which validate: the official split (the paper's, every reported number), or
# a split carved out of the training split alone (choosing a learning rate never reads the official
# validation split): `tuning`, a stratified TUNING_FRACTION of each class, drawn with TUNING_SEED; or
# `cv<k>-<i>`, fold i of a stratified k-fold cross-validation of the training split (scikit-learn's
# StratifiedKFold, shuffled with TUNING_SEED), so that every training sample helps choose.
TUNING_FRACTION, TUNING_SEED = 0.15, 2601
CV_FOLDS = range(3, 11)  # the k a cross-validation split may have
SPLITS = ("official", "tuning") + tuple(f"cv{k}-{i}" for k in CV_FOLDS for i in range(k))
# The rebuilt USPS training split (docs/data.md, 'USPS's training split, rebuilt'): not torchvision's bytes, so it
# is read only under its own name and checksum, and only when usps_train="rebuilt" asks for it.
USPS_REBUILT = ("usps-rebuilt/usps.bz2", "87922cc43ed42d3d18caceec739190db")
USPS_REBUILT_NOTE = "training split rebuilt"
ENV_DATA, ENV_CACHE = "SALREPRO_DATA", "SALREPRO_CACHE"




# ----------------------------------------------------------------------------
# 1. the returned object (the dataset names and errors: datasets.py)


class Unavailable(str):
    """Why a dataset cannot be loaded (a str that is falsy, see `available`)."""

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True, eq=False)
class Dataset:
    """What load_dataset returns; meta holds Table 1's facts (classes, resolution, channels, counts, split)."""

    name: str
    x_train: torch.Tensor  # (N, D) float32
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    meta: dict

    @property
    def in_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.meta["classes"])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, val={tuple(self.x_val.shape)}, "
                f"classes={self.num_classes})")


# ----------------------------------------------------------------------------
# 2. where files live


def project_root(start: Path | None = None) -> Path:
    """The salrepro checkout: nearest folder up from cwd with a salrepro pyproject.toml (else cwd)."""
    start = Path.cwd() if start is None else Path(start)
    for d in (start, *start.parents):
        pyproject = d / "pyproject.toml"
        if pyproject.is_file() and "salrepro" in pyproject.read_text(errors="replace"):
            return d
    return start


def _root_and_origin(root=None) -> tuple[Path, str]:
    if root is not None:
        return Path(root).expanduser().resolve(), "the root argument"
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA]).expanduser().resolve(), f"${ENV_DATA}"
    return (project_root() / "data" / "raw").resolve(), "the default <project>/data/raw"


def data_root(root=None) -> Path:
    """Folder holding the raw files: `root`, else $SALREPRO_DATA, else <project>/data/raw."""
    return _root_and_origin(root)[0]


def cache_root(cache_dir=None) -> Path:
    """Folder holding the cache files: `cache_dir`, else $SALREPRO_CACHE, else <project>/data/cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser().resolve()
    return (project_root() / "data" / "cache").resolve()


def cache_path(name: str, cache_dir=None) -> Path:
    """The one cache file of a dataset, e.g. data/cache/mnist.pt."""
    return cache_root(cache_dir) / f"{_spec(name).name}.pt"



# ----------------------------------------------------------------------------
# 3. finding and checking files


def _find(spec: _Spec, root: Path, splits) -> tuple[dict, list]:
    """-> ({split: [(path, md5), ...]}, [(split, requirement) missing])."""
    found, missing = {}, []
    for split in splits:
        found[split] = []
        for req in spec.files[split]:
            hit = next(((root / rel, md5) for rel, md5 in req if (root / rel).is_file()), None)
            if hit is None:
                missing.append((split, req))
            else:
                found[split].append(hit)
    return found, missing


def _requirements(spec: _Spec, splits) -> dict:
    """Each required file once, with the splits that need it, in table order."""
    out: dict = {}
    for split in splits:
        for req in spec.files[split]:
            out.setdefault(req, []).append(split)
    return out


def _req_text(req: tuple) -> str:
    return " (or ".join(rel for rel, _ in req) + ")" * (len(req) - 1)


def _grouped(reqs: dict) -> list[tuple[str, list]]:
    """Requirements ({req: splits}) grouped by the splits that read them, in table order: [("train+val", [req,
    ...]), ("train", [...]), ...], so that each group says its splits once."""
    groups: dict = {}
    for req, splits in reqs.items():
        groups.setdefault("+".join(splits), []).append(req)
    return list(groups.items())


def _files_text(reqs: list) -> str:
    """Files in one line; those in one folder named once: `folder/: a, b (or b.gz), c`."""
    folders = {str(Path(rel).parent) for req in reqs for rel, _ in req}
    if len(reqs) > 1 and len(folders) == 1 and "." not in folders:
        names = [" (or ".join(Path(rel).name for rel, _ in req) + ")" * (len(req) - 1) for req in reqs]
        return f"{folders.pop()}/: " + ", ".join(names)
    return ", ".join(_req_text(req) for req in reqs)


def _missing_text(spec: _Spec, missing, suffix: str) -> list[str]:
    """The missing files, one item per group of splits that read them: 'a, b (train+val)'."""
    gone = {r for _, r in missing}
    reqs = {r: sp for r, sp in _requirements(spec, ("train", "val")).items() if r in gone}
    return [f"{_files_text(group)} ({splits}{suffix})" for splits, group in _grouped(reqs)]


def _other_file_here(spec: _Spec, root: Path) -> str:
    """The fix the files under `root` allow, if any: USPS's other training file is there (the rebuilt split
    where the original is asked for, or the reverse); '' otherwise."""
    if spec.name != "usps":
        return ""
    asks_rebuilt = spec.files["train"] == ((USPS_REBUILT,),)
    other = _spec_for("usps", {"usps_train": "original" if asks_rebuilt else "rebuilt"})
    if _find(other, root, ("train",))[1]:
        return ""
    if asks_rebuilt:
        return "torchvision's original training file usps.bz2 is in that folder: the data option usps_train: original reads it"
    return (f"the rebuilt training split {USPS_REBUILT[0]} is in that folder: the data option usps_train: rebuilt reads it "
            "(salrepro run --data-option usps_train=rebuilt; in params.yaml, datasets: usps: {usps_train: rebuilt}; "
            "docs/data.md)")


def _missing_error(spec: _Spec, root: Path, origin: str, splits, missing) -> DatasetMissingError:
    lines = [f"Dataset {spec.name!r} ({spec.display}) is missing files.",
             f"  folder searched: {root}  (from {origin})",
             "  files expected there (torchvision's layout), by the splits that read them:"]
    gone = {r for _, r in missing}
    for used_by, reqs in _grouped(_requirements(spec, splits)):
        lines.append(f"    {used_by}:")
        lines += [f"      [{'MISSING' if req in gone else 'found  '}] {_req_text(req)}" for req in reqs]
    if hint := _other_file_here(spec, root):
        lines.append(f"  with what is there: {hint}.")
    if spec.download:
        lines.append(f"  to get them: salrepro.load_dataset({spec.name!r}, download=True) downloads them into that "
                     f"folder (source: {spec.url}),")
        lines.append(f"  or set ${ENV_DATA} (or pass root=) to a folder that already holds them.")
    else:
        lines.append("  to get them: " + _FER_HOWTO.format(root=root))
        lines.append(f"  Or set ${ENV_DATA} (or pass root=) to a folder that already holds them.")
    if spec.note:
        lines.append(f"  note: {spec.note}")
    return DatasetMissingError("\n".join(lines))


def _verify(spec: _Spec, found: dict) -> None:
    """Compare each file with torchvision's published MD5; one hash per file."""
    for path, md5 in sorted({f for fs in found.values() for f in fs}, key=lambda f: str(f[0])):
        if md5 is None:
            continue
        actual = calculate_md5(path)
        if actual != md5 and spec.name == "usps" and actual == USPS_REBUILT[1]:
            raise DatasetCorruptError(
                f"Dataset 'usps': {path} is the rebuilt training split (MD5 {actual}), not torchvision's "
                f"original (MD5 {md5}). It is read only under its own name: put it at <root>/{USPS_REBUILT[0]} "
                "and set the data option usps_train: rebuilt (docs/data.md).")
        if actual != md5:
            raise DatasetCorruptError(
                f"Dataset {spec.name!r} ({spec.display}): file {path} is corrupt or incomplete "
                f"(MD5 {actual}, expected {md5}). Delete it and get it again"
                + (f": salrepro.load_dataset({spec.name!r}, download=True)." if spec.download else
                   " (see the manual download steps in docs/data.md)."))


def _decode_split(ctx: _Ctx, split: str):
    """Run a decoder; any parse failure becomes DatasetCorruptError naming the files."""
    spec = ctx.spec
    try:
        x, y, extra = spec.decode(ctx, split)
        x, y = np.ascontiguousarray(x, dtype=np.uint8), np.asarray(y).astype(np.int64).reshape(-1)
        h, w = spec.hw
        if x.ndim != 2 or x.shape[1] != h * w or len(x) != len(y) or len(y) == 0:
            raise ValueError(f"decoded shapes x{x.shape} y{y.shape} do not fit {len(y)} images of {h}x{w}")
        if y.min() < 0 or y.max() >= spec.classes:
            raise ValueError(f"labels outside 0..{spec.classes - 1}: [{y.min()}, {y.max()}]")
        return x, y, extra
    except (DatasetError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:
        names = ", ".join(str(p) for p in ctx.files.get(split, [])) or "(no files)"
        raise DatasetCorruptError(
            f"Dataset {spec.name!r} ({spec.display}): could not parse the {split} split from {names}: "
            f"{type(e).__name__}: {e}. The file is corrupt, truncated or not in torchvision's format; "
            "delete it and get it again.") from e


# ----------------------------------------------------------------------------
# 4. the cache


# Every data option: allowed values, default, the datasets it applies to (None: all), what it does.
DATA_OPTIONS = {
    "input_norm": (INPUT_NORMS, "pm1", None,
                   "the input map after scaling to [0, 1]: pm1 (x * 2 - 1, the default), unit ([0, 1]), "
                   "standard (per feature, training statistics), global (one mean and std, training split)"),
    "digits_scale": (DIGITS_SCALES, "unit", ("digits",), "Digits' 0..16 values: unit (/ 16, the default) or raw"),
    "usps_train": (USPS_TRAIN, "original", ("usps",),
                   "USPS's training split: original (torchvision's usps.bz2, the default) or rebuilt "
                   f"({USPS_REBUILT[0]}, an approximation: docs/data.md)"),
    "split": (SPLITS, "official", None,
              "official (the paper's train / validation split, the default), tuning (train on the training split "
              f"less a stratified {TUNING_FRACTION:.0%} of each class, validate on that {TUNING_FRACTION:.0%}) or "
              "cv<k>-<i> (fold i of a stratified k-fold split of the training split, k 3..10): for choosing "
              "settings without reading the official validation split"),
}
# The options that change the decoded pixels, hence the cache file; input_norm is applied on load.
_CACHED_OPTIONS = ("digits_scale", "usps_train")


def data_options(name: str, options: dict | None = None) -> dict:
    """All data options of dataset `name`, defaults filled in, checked: what names a run's data.

    Raises ValueError naming the option and its allowed values for an unknown option, a value
    outside the allowed ones, or an option that does not apply to this dataset.
    """
    spec, options = _spec(name), dict(options or {})
    for key, value in options.items():
        if key not in DATA_OPTIONS:
            raise ValueError(f"data option {key!r} is unknown; allowed: {sorted(DATA_OPTIONS)}")
        allowed, _, only, _ = DATA_OPTIONS[key]
        if only is not None and spec.name not in only:
            raise ValueError(f"data option {key!r} applies to {', '.join(only)} only, not to {spec.name!r}")
        if value not in allowed:
            raise ValueError(f"data option {key!r} must be one of {allowed}, got {value!r}")
    return {key: options.get(key, default) for key, (_, default, only, _) in DATA_OPTIONS.items()
            if only is None or spec.name in only}


def display_name(name: str, options: dict | None = None) -> str:
    """The paper's spelling, with "(training split rebuilt)" for USPS on the rebuilt file."""
    rebuilt = name == "usps" and (options or {}).get("usps_train") == "rebuilt"
    return f"{DISPLAY_NAMES[name]} ({USPS_REBUILT_NOTE})" if rebuilt else DISPLAY_NAMES[name]


def _options(spec: _Spec, options: dict) -> dict:
    """The options that decide the cached pixels (part of the cache key)."""
    full = data_options(spec.name, options)
    return {k: full[k] for k in _CACHED_OPTIONS if k in full}


def _spec_for(name: str, options: dict) -> _Spec:
    """The dataset's spec under its data options (usps_train="rebuilt" reads another training file)."""
    spec = _spec(name)
    if data_options(name, options).get("usps_train") == "rebuilt":
        spec = dataclasses.replace(
            spec, files={**spec.files, "train": ((USPS_REBUILT,),)},
            split=f"official train/test ({USPS_REBUILT_NOTE}: {USPS_REBUILT[0]}, not the original bytes)",
            note=(f"usps_train='rebuilt' reads {USPS_REBUILT[0]} (MD5 {USPS_REBUILT[1]}), the training split rebuilt "
                  "from another public copy of the same images (docs/data.md); it cannot be downloaded. "
                  "usps_train='original' (the default) reads torchvision's usps.bz2, which download=True fetches."))
    return spec


def _scale(spec: _Spec, options: dict) -> float:
    return 1.0 if options.get("digits_scale") == "raw" else spec.pixel_max  # raw: Digits' 0..16 kept as they are


def _stat(root: Path, path: Path) -> list:
    st = path.stat()
    return [path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns]


def _key(spec: _Spec, root: Path, found: dict, options: dict, verify: bool) -> str:
    files = sorted({p for fs in found.values() for p, _ in fs})
    optional = [root / rel for rel in spec.optional if (root / rel).is_file()]
    return json.dumps({
        "prep_version": PREP_VERSION,
        "dataset": spec.name,
        "options": options,
        "verified": verify,
        "libs": {m: _import(m, spec.display).__version__ for m in spec.libs},
        "files": [_stat(root, p) for p in files + optional],
    }, sort_keys=True)


def _read_cache(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a foreign or damaged file: rebuild it
        log.warning("cache %s is unreadable (%s); rebuilding it", path, e)
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        log.info("cache %s is stale (raw files, options or preprocessing changed); rebuilding it", path)
        return None
    return blob


def _write_cache(path: Path, blob: dict) -> None:
    """Atomic: a temp file in the same folder, then os.replace; never a partial file under the final name."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
        tmp = None
    except OSError as e:  # an unwritable cache must not stop a run
        log.warning("could not write cache %s: %s", path, e)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _counts(y: np.ndarray, classes: int) -> list[int]:
    return np.bincount(y, minlength=classes).tolist()


def _build(spec: _Spec, root: Path, found: dict, options: dict, scratch_parent: Path | None, key: str) -> dict:
    ctx = _Ctx(spec, root, found, scratch_parent, options)
    try:
        (xt, yt, et), (xv, yv, ev) = _decode_split(ctx, "train"), _decode_split(ctx, "val")
    finally:
        ctx.close()
    extra = {"unused_split": None, "n_unused": 0, **et, **ev}
    h, w = spec.hw
    meta = {
        "name": spec.name, "display_name": spec.display, "classes": spec.classes,
        "resolution": f"{h}x{w}", "channels": "RGB->Gray" if spec.rgb else "Gray",
        "n_train": len(yt), "n_val": len(yv), "total": len(yt) + len(yv),
        "split": spec.split, "source": spec.source, **extra,
        "scale": _scale(spec, options), "options": options,
        "preprocessing": ("PIL 'L' luma, " if spec.rgb else "") + f"/{_scale(spec, options):g}, flattened row-major",
        "class_counts_train": _counts(yt, spec.classes), "class_counts_val": _counts(yv, spec.classes),
        "files": sorted({p.relative_to(root).as_posix() for fs in found.values() for p, _ in fs}),
        "prep_version": PREP_VERSION,
    }
    return {"key": key, "meta": meta,
            "x_train": torch.from_numpy(xt), "y_train": torch.from_numpy(yt),
            "x_val": torch.from_numpy(xv), "y_val": torch.from_numpy(yv)}


# ----------------------------------------------------------------------------
# 5. public API


def _native(spec: _Spec, root: Path) -> bool:
    """Every file present in the form torchvision itself reads (MNIST: gunzipped)."""
    return all((root / req[0][0]).is_file() for reqs in spec.files.values() for req in reqs)


def _download(spec: _Spec, root: Path) -> None:
    """download=True: hand over to torchvision's own downloader, the spec's `fetch` (it skips files whose MD5
    already matches). A dataset without one (Digits needs no files; FER2013 is a manual download) is left to
    the missing-files error below."""
    if spec.fetch is None:
        return
    try:
        spec.fetch(root)
    except Exception as e:
        raise DatasetError(f"Dataset {spec.name!r}: download into {root} failed: {type(e).__name__}: {e} "
                           f"(needs internet access to {spec.url} and a writable folder)") from e


def _prepare(name, root=None, download=False, *, cache=True, cache_dir_=None, options=None,
             verify=True) -> tuple[dict, Path | None, str]:
    """-> (blob with uint8 tensors and meta, cache file or None, "hit" | "built" | "off")."""
    spec = _spec_for(name, options)
    options = _options(spec, options)
    root, origin = _root_and_origin(root)
    if download and not _native(spec, root):
        _download(spec, root)
    found, missing = _find(spec, root, ("train", "val"))
    if missing:
        raise _missing_error(spec, root, origin, ("train", "val"), missing)
    key = _key(spec, root, found, options, verify)
    path = cache_path(name, cache_dir_) if cache else None
    if path is not None and (blob := _read_cache(path, key)) is not None:
        return blob, path, "hit"
    if verify:
        _verify(spec, found)
    log.info("decoding %s from %s", name, root if any(spec.files.values()) else f"{spec.source} (no files needed)")
    blob = _build(spec, root, found, options, path.parent if path is not None else None, key)
    if path is not None:
        _write_cache(path, blob)
    return blob, path, "built" if path is not None else "off"


def _to_float(x: torch.Tensor, scale: float) -> torch.Tensor:
    out = x.to(torch.float32)  # the only float copy
    return out.div_(scale) if scale != 1.0 else out


def pointwise_map(x: torch.Tensor, input_norm: str) -> torch.Tensor:
    """The maps that need no statistics, in place: pm1 (x * 2 - 1) and unit (unchanged)."""
    return x.mul_(2).sub_(1) if input_norm == "pm1" else x


def input_map(x_train: torch.Tensor, x_val: torch.Tensor, input_norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The protocol's input map, applied in place to the scaled inputs ([0, 1]; Digits raw: 0..16).

    pm1: x * 2 - 1 (the default: [0, 1] -> [-1, 1]); unit: unchanged; standard: per feature,
    (x - mean) / std with mean and std (ddof 0) of the training split only, and a feature that is
    constant on the training split set to 0 in both splits; global: (x - mean) / std with one mean
    and std over every training value.
    """
    if input_norm in ("pm1", "unit"):
        return pointwise_map(x_train, input_norm), pointwise_map(x_val, input_norm)
    if input_norm == "standard":
        mean, std = x_train.double().mean(0), x_train.double().std(0, correction=0)
        constant = std == 0
        scale = torch.where(constant, 0.0, 1.0 / torch.where(constant, 1.0, std))
    elif input_norm == "global":
        mean, std = x_train.double().mean(), x_train.double().std(correction=0)
        scale = 1.0 / std if std > 0 else torch.zeros(())
    else:
        raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
    mean, scale = mean.float(), scale.float()
    return x_train.sub_(mean).mul_(scale), x_val.sub_(mean).mul_(scale)


def _given(name: str, input_norm: str, digits_scale: str, usps_train: str, split: str = "official") -> dict:
    """The keyword arguments of the loaders as data options (those of another dataset are not its own)."""
    return {"input_norm": input_norm, **({"digits_scale": digits_scale} if name == "digits" else {}),
            **({"usps_train": usps_train} if name == "usps" else {}), "split": split}


def tuning_split(y: torch.Tensor, fraction: float = TUNING_FRACTION, seed: int = TUNING_SEED
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (fit, held) of the training split's samples: `held` is round(fraction x n_c) samples of
    each class c, drawn with a generator seeded by `seed` alone (never by a run's seed), `fit` the
    rest; both in ascending order."""
    gen = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).squeeze(1)
        held.append(idx[torch.randperm(idx.numel(), generator=gen)[: round(fraction * idx.numel())]])
    held = torch.sort(torch.cat(held)).values
    keep = torch.ones(y.numel(), dtype=torch.bool)
    keep[held] = False
    return torch.nonzero(keep).squeeze(1), held


def cv_split(y: torch.Tensor, folds: int, fold: int, seed: int = TUNING_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (fit, held) of the training split's samples for fold `fold` of a stratified `folds`-fold
    cross-validation (scikit-learn's StratifiedKFold, shuffled with `seed` alone, never a run's seed):
    every sample is held out in exactly one fold; both in ascending order."""
    from sklearn.model_selection import StratifiedKFold

    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold} of a {folds}-fold split: expected 0..{folds - 1}")
    labels = y.numpy()
    fit, held = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(labels, labels))[fold]
    return torch.from_numpy(fit).sort().values, torch.from_numpy(held).sort().values


def parse_cv(split: str) -> tuple[int, int] | None:
    """(k, i) of a split named 'cv<k>-<i>', None for any other split."""
    if not split.startswith("cv"):
        return None
    k, _, i = split[2:].partition("-")
    return int(k), int(i)


def load_dataset(name: str, root=None, download: bool = False, *, cache: bool = True, cache_dir=None,
                 input_norm: str = "pm1", digits_scale: str = "unit", usps_train: str = "original",
                 split: str = "official", verify: bool = True) -> Dataset:
    """Train and validation tensors of one Table 1 dataset, preprocessed and cached.

    name: one of DATASETS. root: raw data folder (else $SALREPRO_DATA, else <project>/data/raw).
    download: let torchvision fetch missing files into root (not FER2013; Digits needs none).
    cache / cache_dir: the per-dataset cache file (else $SALREPRO_CACHE, else <project>/data/cache).
    input_norm: the input map (`input_map`): "pm1" ([-1, 1], default), "unit" ([0, 1]), "standard"
        or "global" (training-split statistics). Applied on load; the cache holds the pixels before it.
    digits_scale: "unit" (0..16 / 16, default) or "raw" (0..16); Digits only, part of the cache key.
    usps_train: "original" (torchvision's usps.bz2, default) or "rebuilt" (usps-rebuilt/usps.bz2, an
        approximation of the training split, see docs/data.md); USPS only, part of the cache key.
    split: "official" (the paper's train / validation split, default), "tuning" (`tuning_split`: the
        training split less a stratified 15% of each class, validated on that 15%) or "cv<k>-<i>"
        (`cv_split`: fold i of a stratified k-fold split of the training split); the last two never read
        the official validation split. The input map's statistics come from the split's own training part.
    verify: compare raw files with torchvision's MD5s before decoding (False is for synthetic test files).
    """
    options = data_options(name, _given(name, input_norm, digits_scale, usps_train, split))
    blob, path, status = _prepare(name, root, download, cache=cache, cache_dir_=cache_dir, options=options,
                                  verify=verify)
    meta = {**blob["meta"], "cache": status, "cache_file": str(path) if path is not None else None,
            "input_norm": input_norm, "data_options": options, "display": display_name(name, options)}
    meta["preprocessing"] += f", input map {input_norm}"
    scale = meta["scale"]
    x_train, y_train = blob["x_train"], blob["y_train"]
    if split != "official":  # the official validation split is never touched
        cv = parse_cv(split)
        fit, held = tuning_split(y_train) if cv is None else cv_split(y_train, *cv)
        x_train, y_train, x_val, y_val = x_train[fit], y_train[fit], x_train[held], y_train[held]
        part = (f"a stratified {TUNING_FRACTION:.0%}" if cv is None
                else f"fold {cv[1]} of a stratified {cv[0]}-fold split") + f", seed {TUNING_SEED}"
        meta["split"] = f"{split}: {fit.numel()} of the {y_train.numel() + held.numel()} training samples train, " \
                        f"{held.numel()} ({part}) validate"
    else:
        x_val, y_val = blob["x_val"], blob["y_val"]
    x_train, x_val = input_map(_to_float(x_train, scale), _to_float(x_val, scale), input_norm)
    return Dataset(name=name, x_train=x_train, y_train=y_train.clone(), x_val=x_val, y_val=y_val.clone(), meta=meta)


def load_split(name: str, split: str, root=None, *, input_norm: str = "pm1", digits_scale: str = "unit",
               usps_train: str = "original", verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One split ("train" or "val"), uncached, needing only that split's files (e.g. USPS's test split alone).

    input_norm: "pm1" or "unit" only; "standard" and "global" need the training split's statistics
    (use load_dataset).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if input_norm not in ("pm1", "unit"):
        raise ValueError(f"load_split: input_norm must be 'pm1' or 'unit' (got {input_norm!r}); "
                         "'standard' and 'global' are fitted on the training split: use load_dataset")
    given = _given(name, input_norm, digits_scale, usps_train)
    spec = _spec_for(name, given)
    options = _options(spec, given)
    root, origin = _root_and_origin(root)
    found, missing = _find(spec, root, (split,))
    if missing:
        raise _missing_error(spec, root, origin, (split,), missing)
    if verify:
        _verify(spec, found)
    ctx = _Ctx(spec, root, found, None, options)
    try:
        x, y, _ = _decode_split(ctx, split)
    finally:
        ctx.close()
    return pointwise_map(_to_float(torch.from_numpy(x), _scale(spec, options)), input_norm), torch.from_numpy(y)


def prepare(name: str, root=None, download: bool = False, *, cache_dir=None, **options) -> Path:
    """Build (or confirm) the cache file of a dataset ahead of training and return its path.

    options: the dataset's data options (DATA_OPTIONS; input_norm is accepted and does not change the file)."""
    _, path, status = _prepare(name, root, download, cache=True, cache_dir_=cache_dir, options=options)
    log.info("%s: cache %s (%s)", name, path, status)
    return path


def available(root=None, options: dict | None = None) -> dict[str, bool | Unavailable]:
    """Which datasets have their files under the data root; checks presence only (no MD5, no decoding).

    options: {name: data options} (e.g. {"usps": {"usps_train": "rebuilt"}}); defaults otherwise.
    Values are True, or an `Unavailable` reason (a falsy str: "missing: ..." or "partial: ...").
    """
    root = data_root(root)
    out: dict[str, bool | Unavailable] = {}
    for name in DATASETS:
        spec = _spec_for(name, (options or {}).get(name))
        _, missing = _find(spec, root, ("train", "val"))
        if not missing:
            out[name] = True
            continue
        gone = _missing_text(spec, missing, "")
        complete = [s for s in ("train", "val") if s not in {m[0] for m in missing}]
        kind = f"partial: {', '.join(complete)} split present; missing" if complete else "missing"
        hint = _other_file_here(spec, root)
        out[name] = Unavailable(f"{kind} {'; '.join(gone)} under {root}" + (f"; {hint}" if hint else ""))
    return out


def describe(name: str, root=None, *, cache_dir=None, options: dict | None = None) -> dict:
    """Table 1's columns of one dataset, measured from its files: classes, total_samples (every labelled
    official split, including one the protocol leaves unused: PCam test, FER2013 PrivateTest), resolution,
    channel_processing, with status "loaded", "partial: ..." (some split's files absent: the numbers cover
    the present split only, and comparable is False), "missing: ..." or "error: ...", and a note.
    options: the dataset's data options (e.g. USPS's rebuilt training split); defaults otherwise."""
    opts = options or {}
    spec = _spec_for(name, opts)
    row = {"dataset": display_name(name, data_options(name, opts)), "name": name, "classes": None,
           "total_samples": None, "resolution": None, "channel_processing": None, "status": "", "note": "",
           "comparable": False}
    row.update(_table1_ours(spec, opts, root, cache_dir))
    return row


def _ours(spec: _Spec, ys) -> dict:
    """Table 1's columns measured from decoded labels (classes = distinct labels seen)."""
    h, w = spec.hw
    y = np.concatenate([np.asarray(v) for v in ys])
    return {"classes": int(len(np.unique(y))), "total_samples": int(len(y)), "resolution": f"{h}x{w}",
            "channel_processing": "RGB->Gray" if spec.rgb else "Gray"}


def _table1_ours(spec: _Spec, opts: dict, root, cache_dir_) -> dict:
    try:
        blob, _, _ = _prepare(spec.name, root, cache_dir_=cache_dir_, options=opts)
    except DatasetMissingError:
        return _table1_partial(spec, opts, root)
    except DatasetError as e:
        return {"status": f"error: {str(e).splitlines()[0]}"}
    m = blob["meta"]
    row = {**_ours(spec, [blob["y_train"].numpy(), blob["y_val"].numpy()]), "status": "loaded",
           "note": f"train {m['n_train']} + val {m['n_val']}", "comparable": m["n_unused"] is not None}
    if m["unused_split"] and m["n_unused"] is not None:
        row["total_samples"] += m["n_unused"]
        row["note"] += f" + {m['unused_split']} {m['n_unused']} (an official split the protocol does not use)"
    elif m["unused_split"]:
        row["note"] += f"; {m['unused_split']} split files absent, so the total leaves it out"
    return row


def _table1_partial(spec: _Spec, opts: dict, root) -> dict:
    root_path = data_root(root)
    present = [s for s in ("train", "val") if not _find(spec, root_path, (s,))[1]]
    missing = _missing_text(spec, _find(spec, root_path, ("train", "val"))[1], " split")
    if not present:
        more = f" and {len(missing) - 1} more file(s)" if len(missing) > 1 else ""
        return {"status": f"missing: {missing[0]}{more}"}
    try:
        ys = {s: load_split(spec.name, s, root, **{k: v for k, v in opts.items() if k != "input_norm"})[1]
              for s in present}
    except DatasetError as e:
        return {"status": f"error: {str(e).splitlines()[0]}"}
    return {**_ours(spec, list(ys.values())), "status": f"partial: {', '.join(missing)} absent",
            "note": " + ".join(f"{s} {len(y)}" for s, y in ys.items()) + " only; not comparable to the paper's total"}
