"""salrepro: reference replication of SAL (Selective Adaptive Learning,
Liu, Yang, Zou, arXiv 2601.21561).

    import salrepro
    data = salrepro.load_dataset("digits")
    model = salrepro.build_model("sal", data.in_features, data.num_classes, num_areas=16)
    history = salrepro.train(model, data, epochs=25, batch_size=16, lr=1e-4, seed=0)

Layers, each importing only those below it: `kernels/` (the grouped area
products), `data/` (the paper's ten datasets), `method/` (`sal.py`: the method,
its equations each in one place; `baselines.py`: BP, MoE, FA, DFA, SAL-BP;
`nets.py`: the shared net shapes; `models.py`: one record per method,
build_model, count_parameters), `engine/` (the training loops: one model,
stacked models, worker processes; the machine), `runs/` (a run's identity, the
run store, the batch planner, `run_all`, result tables), `pipeline/` (the replication: its stages,
params, verdicts, report and the `salrepro` command).
"""


from .method.models import METHODS, OPTIONS, PRESETS, ParameterCount, build_model, count_parameters, describe, reading_of
from .engine.train import evaluate, train
from .runs import RunConfig, grid, package_version, run_all, run_one, summarize

__version__ = package_version()  # one source: pyproject.toml, through the installed package's metadata

from .data import DATASETS, Dataset, load_dataset

