"""Runs: one configuration = one trained model = one result record.

    configs = grid("digits", methods=[("bp", 1), ("sal", 4)], seeds=range(5), epochs=25)
    results = run_all(configs, store="results/runs/digits")
    table = summarize(results)

A result record is a plain dict (JSON-serialisable): the configuration, the
per-epoch history, final metrics, parameter counts, wall time, device and the
code version. With a `store` folder, every finished run is written atomically
(temporary file, then rename) under a name derived from its configuration
and the code version; a rerun skips runs already stored, so an interrupted
sweep resumes where it stopped and never reads a half-written file.

Its modules, each one job: `keys` (a run's identity: RunConfig, the key its record is stored under, the
code version), `store` (the records on disk), `plan` (batches from a cost model, memory checks), `run`
(training: one run, a batch, a whole grid) and `tables` (result tables from records). The machine they
run on is `engine/hardware.py`. This face re-exports what the pipeline, the tests and users call.
"""

from ..engine.hardware import (SetupError, available_bytes, cpu_batch_bytes, cpu_model, describe_device,
                               devices_here, last_level_cache_bytes, resolve_device)
from .keys import (DATA_SHAPES, RESULTS_VERSION, RunConfig, batch_id, code_commit, grid, make_config,
                   package_version)
from .plan import (AUTOGRAD_AREA_BATCH_BYTES, MAX_BATCH_BYTES, MAX_LARGE_BATCH_BYTES, Plan, batch_key,
                   batch_seconds, check_fits, meta_model, plan_batches, steps_of, tensor_bytes, train_seconds,
                   training_bytes, weight_bytes)
from .run import run_all, run_batch, run_one, train_planned
from .store import (batch_checkpoint, check_store, load_stored, read_record, record_input_norm,
                    remove_stale_temporaries, store_batch, stored_files, stored_records, write_json_atomic,
                    write_text_atomic)
from .tables import CONFIG_COLUMNS, curves_frame, occupancy_frame, runs_frame, summarize, unstable

__all__ = ["SetupError", "available_bytes", "cpu_batch_bytes", "cpu_model", "describe_device", "devices_here",
           "last_level_cache_bytes", "resolve_device", "DATA_SHAPES", "RESULTS_VERSION", "RunConfig", "batch_id",
           "code_commit", "grid", "make_config", "package_version", "AUTOGRAD_AREA_BATCH_BYTES", "MAX_BATCH_BYTES",
           "MAX_LARGE_BATCH_BYTES", "Plan", "batch_key", "batch_seconds", "check_fits", "meta_model", "plan_batches",
           "steps_of", "tensor_bytes", "train_seconds", "training_bytes", "weight_bytes", "run_all", "run_batch",
           "run_one", "train_planned", "batch_checkpoint", "check_store", "load_stored", "read_record",
           "record_input_norm", "remove_stale_temporaries", "store_batch", "stored_files", "stored_records",
           "write_json_atomic", "write_text_atomic", "CONFIG_COLUMNS", "curves_frame", "occupancy_frame",
           "runs_frame", "summarize", "unstable"]
