"""The `salrepro` command: SAL experiments without notebooks.

    salrepro run --dataset digits --method sal-16 --seeds 5
    salrepro sweep area_sweep --dataset digits
    salrepro sweep area_sweep --profile cpu --executor submitit --partition cpu   # as SLURM jobs (docs/cluster.md)
    salrepro datasets
    salrepro check                      # params.yaml and its data, before anything runs

Exit codes: 0 done (or, with --no-wait, jobs submitted); 1 unexpected error; 2 bad
arguments, parameters, device or store; 3 dataset missing or corrupt; 4 finished
but some runs diverged; 5 some cluster jobs failed (each named with its error
and log; the same command resubmits them); 130 interrupted (with a run store,
finished runs are kept and a rerun resumes).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
import time

import pandas as pd

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DATA, EXIT_DIVERGED, EXIT_JOBS_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130


def _option(text: str) -> tuple[str, object]:
    """NAME=VALUE with VALUE read as params.yaml's values are (config.parse_yaml, YAML 1.2): numbers such as
    1e-4, true/false, strings."""
    from .config import ParamsError, parse_yaml

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, e.g. divisor=sum, got {text!r}")
    try:
        return name, parse_yaml(value, name)
    except ParamsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return v


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    from .config import STAGES
    from ..data import DATASETS
    from ..method.models import METHOD, METHODS

    parser = argparse.ArgumentParser(prog="salrepro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)  # the usage line lists every command (argparse's default)

    run = sub.add_parser("run", help="train one configuration for several seeds and print a table of results",
                         description="Train one configuration (method, K, shape, training settings) for several "
                                     "seeds, batched, and print the final-epoch metrics per seed and as mean and std. "
                                     "Defaults are the paper's Table 2 settings.")
    run.add_argument("--dataset", default="digits", choices=DATASETS,
                     help="dataset (default: digits, embedded, needs no files)")
    run.add_argument("--method", default="sal-4",
                     help=", ".join(f"{m}-K" if METHOD[m].areas else m for m in METHODS)
                     + ", as in the paper's tables (default: sal-4); salbp-K is SAL's areas and routing trained by "
                       "backpropagation (beyond the paper: the areas or the rule?)")
    run.add_argument("--seeds", type=_int_at_least(1), default=5, help="number of seeds, 0..N-1 (default: 5, the paper's)")
    run.add_argument("--epochs", type=_int_at_least(1), default=25, help="epochs (default: 25, the paper's)")
    run.add_argument("--batch-size", type=_int_at_least(1), default=16, help="batch size (default: 16, the paper's)")
    run.add_argument("--lr", type=_positive_float, default=1e-4, help="learning rate of plain SGD (default: 1e-4, the paper's)")
    run.add_argument("--hidden", type=_int_at_least(1), default=256, help="hidden width (default: 256, the paper's)")
    run.add_argument("--depth", type=_int_at_least(2), default=2,
                     help="weight layers: 2 = the shallow ReLU net of Table 2, more = the residual tanh net of Figures 2-3 (default: 2)")
    run.add_argument("--option", type=_option, action="append", default=[], metavar="NAME=VALUE",
                     help="a method option, repeatable, e.g. --option divisor=sum (see docs/method.md for all and their defaults)")
    run.add_argument("--data-option", type=_option, action="append", default=[], metavar="NAME=VALUE",
                     help="a data option (repeatable): input_norm=pm1|unit|standard|global (the input map, default "
                          "pm1: [-1, 1], calibrated on BP), digits_scale=unit|raw (Digits), usps_train=original|rebuilt (USPS); "
                          "docs/data.md")
    run.add_argument("--data-root", default=None, help="folder with the dataset files (default: $SALREPRO_DATA, else data/raw)")
    run.add_argument("--download", action="store_true", help="let torchvision download missing files into the data root")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    run.add_argument("--store", default=None,
                     help="folder for the run records; finished runs there are reused, so an interrupted command resumes")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    from .registry import retrain_order

    sweep = sub.add_parser("sweep", help="run one section of params.yaml (one pipeline stage) without notebooks",
                           description="Run a stage of the pipeline (a section of params.yaml) for one or all of its "
                                       "datasets, writing the same outputs as the notebook would (summary, curves, "
                                       "metrics; resumable), and print its summary table.")
    sweep.add_argument("stage", choices=(*STAGES, *(s for s in retrain_order() if s not in STAGES)),
                       help="the params.yaml section to run (calibration and protocol_study run once, over all "
                            "their datasets)")
    sweep.add_argument("--dataset", action="append", default=None,
                       help="dataset of that section (repeatable; default: all the section lists)")
    which = sweep.add_mutually_exclusive_group()
    which.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml, the quick profile)")
    which.add_argument("--profile", default=None,
                       help="a profile of conf/profile/ (cpu, paper) instead of a params file, params.yaml untouched; "
                            "afterwards `salrepro profile NAME && dvc repro` renders its notebooks from the stored runs")
    sweep.add_argument("--results", default=None,
                       help="results folder (default: results/<profile>, the pipeline's folder for the params' profile)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bars")
    sweep.add_argument("--executor", choices=("local", "submitit"), default="local",
                       help="local (default): train on this machine, small batches in worker processes; submitit: each "
                            "planned batch of runs is one cluster job (SLURM, through submitit) that writes its runs "
                            "into the same run store; the command waits, shows how the jobs stand, then renders the "
                            "stage's outputs (docs/cluster.md)")
    sweep.add_argument("--cluster", choices=("slurm", "local"), default=None,
                       help="with --executor submitit: slurm (default: sbatch, one job array per set of resources) or "
                            "local (submitit's local executor: every job a process of this machine, all started at "
                            "once; for tests and a workstation)")
    sweep.add_argument("--partition", default=None, help="with --executor submitit: the SLURM partition (default: the "
                                                         "cluster's default partition)")
    sweep.add_argument("--gpus-per-job", type=_int_at_least(0), default=0,
                       help="with --executor submitit: GPUs for each job (default 0: CPU jobs; 1: one job per GPU, the "
                            "batches then planned for a GPU, with the params' device auto or cuda)")
    sweep.add_argument("--no-wait", action="store_true",
                       help="with --executor submitit: submit and return; the same command run later says how the jobs "
                            "stand, resubmits those that failed (they resume from their checkpoints) and, once all "
                            "are done, renders the outputs")
    sweep.add_argument("--dry-run", action="store_true",
                       help="with --executor submitit: say which jobs would be submitted (how many, their CPUs, memory "
                            "and time limits, from the planner's estimates) and submit nothing")
    sweep.add_argument("--jobs-folder", default=None,
                       help="with --executor submitit: submitit's folder, on a filesystem the nodes share: job scripts, "
                            "logs, the staged datasets, jobs.json (default: <results>/.jobs)")

    ds = sub.add_parser("datasets", help="which datasets are available where, what is missing and how to get it",
                        description="List the paper's ten datasets: present or missing under the data root, "
                                    "and what to do about the missing ones.")
    ds.add_argument("--data-root", default=None, help="folder to look in (default: $SALREPRO_DATA, else data/raw)")

    check = sub.add_parser("check", help="check a params file and its data before anything runs (the pipeline's first stage)",
                           description="Check every key and value of a params file (unknown keys included), its device, "
                                       "and that every dataset it lists has its files under the data root; print one "
                                       "line. The pipeline runs this first, so that a bad params.yaml stops `dvc repro` "
                                       "before DVC removes any stage's outputs.")
    check.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")

    profile = sub.add_parser("profile", help="switch params.yaml to a profile of conf/profile/, checked first",
                             description="Write params.yaml from conf/profile/NAME.yaml (as `dvc exp run -S profile=NAME` "
                                         "would write it), only after the profile passes `salrepro check`: a profile "
                                         "whose data is missing here is refused and params.yaml is left as it was, so "
                                         "the next `dvc repro` still runs. `salrepro profile quick` returns to the "
                                         "committed params.yaml, byte for byte. Then run `dvc repro`.")
    profile.add_argument("name", help="a profile of conf/profile/: quick (committed), cpu, paper")
    profile.add_argument("--params", default="params.yaml", help="the params file to write (default: params.yaml)")

    from .retrain import ORDER
    retrain = sub.add_parser("retrain", help="retrain a profile (or some stages) from scratch, then `dvc repro` renders it",
                             description="Train every run of the profile's stages again, ignoring the stored run records, "
                                         "into results/<profile>/.retrain/; each stage's runs/ folders are swapped into "
                                         "place only when all its runs are finished, so an interruption leaves the "
                                         "committed runs of every stage not yet swapped in as they were (the message "
                                         "lists which were), and the same command resumes. A run whose history "
                                         "equals the committed one (bit for bit, or losses within 1e-4 relative "
                                         "with every accuracy identical: float rounding between CPUs) keeps its "
                                         "committed file byte for byte; the command prints how many runs were "
                                         "bit-identical, equal within the tolerance and changed (naming them). "
                                         "Then run `dvc repro` to render the notebooks from the changed runs.")
    retrain.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml, the quick profile)")
    retrain.add_argument("--stage", action="append", choices=ORDER, default=None,
                         help="a stage to retrain (repeatable; default: all, in pipeline order). moe and preset_sweep "
                              "reuse the area sweep's runs: retrain area_sweep with them to retrain those too")
    retrain.add_argument("--no-progress", action="store_true", help="no progress bars")

    prep = sub.add_parser("prepare", help="build the preprocessed cache of one dataset (the pipeline's data stage)",
                          description="Decode one dataset of the params file into its cache file (data/cache/NAME.pt, "
                                      "a DVC output), with the data options the params file gives it.")
    prep.add_argument("name", help="dataset name, as listed under datasets: in the params file (e.g. digits)")
    prep.add_argument("--params", default="params.yaml", help="params file giving the data root and options")
    prep.add_argument("--cache-dir", default="data/cache",
                      help="where the cache file goes (default: data/cache, the DVC output; $SALREPRO_CACHE is ignored here)")
    readme = sub.add_parser("readme", help="copy a profile's generated report blocks into README.md",
                            description="Write results/PROFILE/report/summary.md into README.md's block "
                                        "replication-PROFILE (what the report stage does when it runs).")
    readme.add_argument("--profile", default="quick")
    readme.add_argument("--readme", default="README.md")
    check.add_argument("--stamp", default=None,
                       help="file to write when the check passes (the DVC stage's output, which every stage depends on)")
    return parser


def _table(summary: pd.DataFrame) -> str:
    cols = ["label", "depth", "hidden", "lr", "seeds", "diverged", "val_accuracy_pct_mean", "val_accuracy_pct_std",
            "train_loss_mean", "val_loss_mean"]
    table = summary[[c for c in cols if c in summary]].copy()
    if "lr" in table:
        table["lr"] = table["lr"].map("{:g}".format)  # 0.0001, not 0.0 at three decimals
    return table.round(3).to_string(index=False)


def cmd_run(args) -> int:
    from .. import runs as ex
    from .config import ParamsError, parse_method
    from ..data import data_options, load_dataset
    from ..method.models import build_model

    try:
        method, areas = parse_method(args.method)
    except ParamsError as e:
        print(f"salrepro run: --method: {e}", file=sys.stderr)
        return EXIT_USAGE
    ex.resolve_device(args.device)  # refused (SetupError) before any data is read
    if args.store is not None:
        ex.check_store(args.store)
    try:
        data_opts = data_options(args.dataset, dict(args.data_option))
    except ValueError as e:
        print(f"salrepro run: --data-option: {e}", file=sys.stderr)
        return EXIT_USAGE
    data = load_dataset(args.dataset, root=args.data_root, download=args.download, **data_opts)
    if args.batch_size > data.x_train.shape[0]:
        print(f"salrepro run: --batch-size {args.batch_size} exceeds the {data.x_train.shape[0]} training samples "
              f"of {args.dataset}", file=sys.stderr)
        return EXIT_USAGE
    configs = [ex.make_config(args.dataset, method, num_areas=areas, depth=args.depth, hidden=args.hidden, seed=s,
                              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, options=dict(args.option),
                              data_options=data_opts)
               for s in range(args.seeds)]
    try:  # option names and values are checked by the model builder before any training
        build_model(method, data.in_features, data.num_classes, hidden=4, depth=args.depth, num_areas=areas,
                       device="meta", **dict(args.option))
    except ValueError as e:
        print(f"salrepro run: {e}", file=sys.stderr)
        return EXIT_USAGE
    records = ex.run_all(configs, data, store=args.store, device=args.device,
                         progress=False if args.no_progress else None, desc=f"{args.dataset} {args.method}")
    per_seed = ex.runs_frame(records)[["seed", "val_accuracy_pct", "train_loss", "val_loss", "diverged"]]
    print(per_seed.round(3).to_string(index=False))
    print()
    print(_table(ex.summarize(records)))
    return EXIT_DIVERGED if per_seed["diverged"].any() else EXIT_OK


def cmd_sweep(args) -> int:
    from . import registry
    from .config import load_params, profile_file

    params = str(profile_file(args.profile)) if args.profile else args.params
    cfg = load_params(params)
    once = not registry.STAGE[args.stage].per_dataset  # calibration, protocol_study: one instance, every dataset
    if once and args.dataset:
        from ..runs import SetupError

        raise SetupError(f"--dataset: {args.stage} runs once, over the datasets its section lists")
    datasets = [None] if once else args.dataset or cfg[args.stage]["datasets"]
    results = args.results or f"results/{cfg['profile']}"
    executor = _cluster_executor(args, results)
    submitted = executor.Pending if executor is not None else ()  # (an empty tuple catches nothing)
    outs: dict = {}
    pending = list(datasets)
    while pending:  # with an executor: submit every dataset's jobs, wait for them all, render (tuned: twice)
        waiting = []
        for name in pending:
            try:
                out_dir = f"{results}/{args.stage}" + (f"/{name}" if name else "")
                outs[name] = registry.run(args.stage, name, params_file=params, out_dir=out_dir, results=None,
                                          progress=False if args.no_progress else None, executor=executor)
            except submitted:  # its jobs are queued or running (or, in a dry run, planned)
                waiting.append(name)
        if not waiting:
            break
        if args.dry_run:
            print(_dry_run_table(executor.planned))
            return EXIT_OK
        if args.no_wait:
            print(f"salrepro sweep: {args.stage}: jobs queued or running"
                  + (f" for {', '.join(waiting)}" if not once else "") + "; run the same command "
                  "again to see how they stand (it resubmits those that failed, and renders once all are done)",
                  file=sys.stderr)
            return EXIT_OK
        from .cluster import JobsFailed

        try:
            executor.wait_all()
        except JobsFailed as e:
            print(f"salrepro sweep: {len(e.failures)} job(s) failed, each named above with its error and log; run the "
                  "same command again to resubmit them (they resume from their last epoch checkpoints)", file=sys.stderr)
            return EXIT_JOBS_FAILED
        pending = waiting
    if once:  # its runner returns its table (calibration: against the paper; the study: one row per reading)
        print(f"== {args.stage} ==")
        print(outs[None].round(3).to_string(index=False))
        return EXIT_OK
    diverged = False
    for name in datasets:
        print(f"== {args.stage} {name} ==")
        print(_table(outs[name].summary))
        diverged |= bool(outs[name].summary["diverged"].any())
    return EXIT_DIVERGED if diverged else EXIT_OK


def _cluster_executor(args, results: str):
    """The submitit executor the sweep's options ask for, or None (--executor local); its options without it
    are refused (SetupError)."""
    if args.executor == "local":
        given = {"--cluster": args.cluster, "--partition": args.partition, "--gpus-per-job": args.gpus_per_job,
                 "--no-wait": args.no_wait, "--dry-run": args.dry_run, "--jobs-folder": args.jobs_folder}
        if any(given.values()):
            from ..runs import SetupError

            raise SetupError(f"{', '.join(k for k, v in given.items() if v)}: only with --executor submitit")
        return None
    from .cluster import SubmititExecutor

    return SubmititExecutor(args.jobs_folder or Path(results) / ".jobs", cluster=args.cluster or "slurm",
                            partition=args.partition, gpus_per_job=args.gpus_per_job, wait=False, dry_run=args.dry_run)


def _dry_run_table(planned) -> str:
    """The jobs a dry run would submit, per stage instance and resources: how many, what each asks for,
    and the planner's estimate of their training (one thread; runs.batch_seconds)."""
    width = max(len(desc) for desc, *_ in planned)
    lines = [f"{desc:{width}}  {n:4d} job(s) of {res.describe():28} training estimated {seconds / 3600:7.2f} h"
             for desc, res, n, seconds in planned]
    jobs, hours = sum(p[2] for p in planned), sum(p[3] for p in planned) / 3600
    longest = max(res.minutes for _, res, _, _ in planned)
    lines.append(f"{'in all':{width}}  {jobs:4d} job(s); training estimated {hours:.1f} h on one thread in all; "
                 f"the longest time limit {longest / 60:.1f} h")
    return "\n".join(lines)


def cmd_retrain(args) -> int:
    from .retrain import ORDER, retrain, summary_lines

    t0 = time.perf_counter()
    done = retrain(args.params, args.stage or ORDER, progress=False if args.no_progress else None)
    for d in done:
        print(f"{d['stage']}{'@' + d['dataset'] if d['dataset'] else ''}: retrained runs in {d['runs']}")
    print("\n".join(summary_lines(done)))
    changed = sum(len(d["kept"].changed) for d in done)
    print(f"retrained in {time.perf_counter() - t0:.0f} s; "
          + ("now `dvc repro` renders the notebooks from the changed runs" if changed else
             "nothing changed beyond the tolerance: the committed results stand as they were"))
    return EXIT_OK


def cmd_prepare(args) -> int:
    from .config import load_params
    from ..data import prepare

    cfg = load_params(args.params)
    if args.name not in cfg["datasets"]:
        print(f"salrepro prepare: {args.name!r} is not listed under datasets: in {args.params}", file=sys.stderr)
        return EXIT_USAGE
    path = prepare(args.name, cfg["data"]["root"], cfg["data"]["download"], cache_dir=args.cache_dir,
                   **cfg["datasets"][args.name])
    print(f"{args.name}: {path}")
    return EXIT_OK


def cmd_readme(args) -> int:
    from .report import write_readme_blocks

    written = write_readme_blocks(args.readme, f"results/{args.profile}")
    print(f"{args.readme}: " + (", ".join(written) if written else "no block written (no markers or no report)"))
    return EXIT_OK


def missing_data(cfg: dict) -> str | None:
    """Why a checked params tree cannot run here (a device it names is absent: SetupError; a dataset's
    files are missing: the returned line), or None."""
    from ..data import _spec, available
    from ..runs import resolve_device

    resolve_device(cfg["device"] if cfg["device"] != "auto" else None)
    status = available(cfg["data"]["root"], cfg["datasets"])
    for name in cfg["datasets"]:
        if not status[name] and not (cfg["data"]["download"] and _spec(name).download):
            return (f"datasets.{name}: cannot run: {status[name]} "
                    "(set $SALREPRO_DATA or data.root to a folder that has it, or data.download: true)")
    return None


def cmd_check(args) -> int:
    from pathlib import Path

    from .config import load_params

    cfg = load_params(args.params)  # every key, unknown ones included: ParamsError
    why = missing_data(cfg)
    if why:
        back = (f"; {args.params} holds the {cfg['profile']} profile: `salrepro profile quick` (or `git checkout "
                f"{args.params}`) returns to the committed one" if cfg["profile"] != "quick" else "")
        print(f"salrepro check: {args.params}: {why}{back}", file=sys.stderr)
        return EXIT_DATA
    if args.stamp:
        Path(args.stamp).parent.mkdir(parents=True, exist_ok=True)
        Path(args.stamp).write_text("params checked\n")  # constant: a passing check never reruns the stages after it
    print(f"{args.params}: ok (profile {cfg['profile']}; datasets {', '.join(cfg['datasets'])})")
    return EXIT_OK


def cmd_profile(args) -> int:
    from .config import load_params, params_text, profile_file, validate
    from ..runs import write_text_atomic

    source = profile_file(args.name)
    cfg = validate(load_params(source))
    why = missing_data(cfg)
    if why:
        print(f"salrepro profile: {args.name}: {why}; {args.params} is unchanged", file=sys.stderr)
        return EXIT_DATA
    write_text_atomic(Path(args.params), params_text(cfg))
    print(f"{args.params}: the {args.name} profile ({source.relative_to(source.parent.parent.parent)}); now run `dvc repro`"
          + ("" if args.name == "quick" else "; `salrepro profile quick` returns to the committed one"))
    return EXIT_OK


def _interrupted(args, error=None) -> str:
    """What an interruption kept, and how to go on."""
    from pathlib import Path

    from ..runs import stored_files

    store = getattr(args, "store", None)
    if args.command == "sweep" and getattr(args, "executor", "local") == "submitit":
        return ("interrupted; the jobs submitted keep running on SLURM (local jobs stop with a Ctrl-C in their "
                "terminal) and write their runs into the stage's runs/ folders: rerun the same command to follow "
                "them, resubmit what failed, and render")
    if args.command == "sweep":
        return "interrupted; finished runs are kept in the stage's runs/ folders: rerun the same command to resume"
    if args.command == "retrain":
        swapped, pending = getattr(error, "swapped", []), getattr(error, "pending", [])
        results = getattr(error, "results", "results/PROFILE")
        return (f"interrupted; swapped in (retrained, now in {results}): {', '.join(swapped) or 'none'}; not swapped "
                f"(their committed runs untouched): {', '.join(pending) or 'none'}; the runs finished so far are kept "
                f"in {results}/.retrain/: rerun the same command to resume")
    if store is None:
        return "interrupted; nothing was kept (no --store): add --store DIR to make a run resumable"
    runs = stored_files(Path(store))
    ckpt = list(Path(store).glob(".ckpt-*.pt"))
    return (f"interrupted; {len(runs)} finished run(s) kept in {store}"
            + (" and the unfinished batch's checkpoint (last finished epoch)" if ckpt else "")
            + ": rerun the same command to resume")


def cmd_datasets(args) -> int:
    from ..data import DATASETS, DISPLAY_NAMES, available, data_root

    root = data_root(args.data_root)
    status = available(args.data_root)
    print(f"data root: {root}")
    for name in DATASETS:
        s = status[name]
        mark = "ready" if s else ("partial" if str(s).startswith("partial") else "missing")
        print(f"{name:14} {DISPLAY_NAMES[name]:14} {mark}")
        if not s:
            print(f"{'':14} {s}")
    print("\nTo get a missing dataset: salrepro.load_dataset(NAME, download=True) or `salrepro run --download`;"
          " FER2013 is a manual download (docs/data.md); or point --data-root / $SALREPRO_DATA at a folder that has it.")
    return EXIT_OK


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    """Each command's parser, by name."""
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


class _Say(logging.Handler):
    """The package's log lines on the current stderr, as 'salrepro: ...'. One write per line, flushed: worker
    processes log side by side (resumes), and `print` writes a line and its newline apart, which an
    unbuffered stderr (PYTHONUNBUFFERED) passes on as two writes that the workers interleave."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"salrepro: {record.getMessage()}\n")
        sys.stderr.flush()


def main(argv=None) -> int:
    from .config import ParamsError
    from ..data import DatasetError
    from ..runs import SetupError

    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the command's own parser, with its usage (argparse would print the top-level one)
            _subparsers(parser)[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    logger = logging.getLogger("salrepro")
    if not any(isinstance(h, _Say) for h in logger.handlers):  # resumes and reuses are said on stderr
        logger.addHandler(_Say())
        logger.setLevel(logging.INFO)
    try:
        commands = {"run": cmd_run, "sweep": cmd_sweep, "datasets": cmd_datasets, "check": cmd_check, "retrain": cmd_retrain,
                    "prepare": cmd_prepare, "readme": cmd_readme, "profile": cmd_profile}
        return commands[args.command](args)
    except ParamsError as e:
        print(f"salrepro {args.command}: bad parameters: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SetupError as e:
        print(f"salrepro {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except DatasetError as e:
        print(f"salrepro {args.command}: {e}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt as e:
        print(f"salrepro {args.command}: {_interrupted(args, e)}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
