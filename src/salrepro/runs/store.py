"""The run store: one JSON record per finished run, written atomically (a temporary file, then a rename; safe
with many writers on a shared filesystem), read back by key; an unfinished batch's checkpoint beside them."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from ..engine.hardware import SetupError
from .keys import RunConfig, batch_id

log = logging.getLogger("salrepro")


def check_store(store) -> Path:
    """The run store folder, created if needed; SetupError (naming the path) when it is a file or not writable."""
    path = Path(store)
    if path.exists() and not path.is_dir():
        raise SetupError(f"store {path}: is a file, not a folder; give a folder for the run records")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=f".tmp-{os.getpid()}-probe"):
            pass
    except OSError as e:
        raise SetupError(f"store {path}: cannot write there ({e.strerror or e}); give a writable folder") from None
    return path


# ---------------------------------------------------------------------------
# The run store: one JSON file per finished run, written atomically.
# ---------------------------------------------------------------------------
def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file atomically: a temporary beside it, flushed to disk, then renamed over the name.
    The file gets the mode a plain open() would give it (0o666 less the umask), not mkstemp's private 0o600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{os.getpid()}-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it back at once
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, obj) -> None:
    """Write `obj` as a JSON file atomically (`write_text_atomic`); NaN stays NaN."""
    write_text_atomic(path, json.dumps(obj, allow_nan=True))


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files (`.tmp-<pid>-*`) of writers that no longer
    run: a process killed mid-write (SIGKILL, power loss) leaves its
    temporary behind, never a half-written record. A live writer's are kept."""
    for tmp in Path(folder).glob(".tmp-*"):
        pid = tmp.name.split("-")[1]
        if not (pid.isdigit() and _running(int(pid))):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap, safe check here: keep the file
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_record(path: Path) -> dict | None:
    """A stored run record, or None if it is missing or unreadable (an atomic write never leaves one, but a disk may)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def stored_files(store: Path) -> list[Path]:
    """The finished run records' files of a store, in name order; writers' temporaries
    (`.tmp-*`) and checkpoints (`.ckpt-*`) are not records."""
    return sorted(p for p in Path(store).glob("*.json") if not p.name.startswith("."))


def stored_records(store: Path) -> list[dict]:
    """Every readable run record of a store."""
    return [r for r in map(read_record, stored_files(store)) if r is not None]


def record_input_norm(record: dict) -> str:
    """The input map a run trained under; records from before input_norm existed were all made on [0, 1] inputs."""
    return (record["config"].get("data_options") or {}).get("input_norm", "unit")


def load_stored(store: Path, config: RunConfig) -> dict | None:
    record = read_record(store / config.filename())  # missing or unreadable: recompute
    return record if record is not None and record.get("key") == config.key() else None


def batch_checkpoint(store: Path, batch: list[RunConfig]) -> Path:
    """The file a batch's epoch checkpoints go to in a run store (named by its runs' keys)."""
    return Path(store) / f".ckpt-{batch_id(batch)}.pt"


def store_batch(store: Path, batch: list[RunConfig], records: list[dict]) -> None:
    """Write a trained batch's records to the store, each atomically, then remove its checkpoint. Safe with
    many writers at once (other processes or machines on a shared filesystem): each writes its own
    temporary and renames it over the record's name, so a reader sees a whole record or none."""
    for config, record in zip(batch, records):
        write_json_atomic(Path(store) / config.filename(), record)
    batch_checkpoint(store, batch).unlink(missing_ok=True)


