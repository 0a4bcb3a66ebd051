import os
import shutil
import tempfile
from pathlib import Path

# Notebook kernels started by nbval inherit this: their data cache goes to a
# scratch folder, never into the project's DVC-tracked data/cache.
os.environ.setdefault("SALREPRO_CACHE", tempfile.mkdtemp(prefix="salrepro-test-cache-"))

# The runner trains small batches side by side in one-thread worker processes, one per torch thread
# (engine/workers.py): the number would depend on the machine's cores. Tests (and the notebook kernels
# nbval starts) train in their own process; tests/test_workers.py runs the workers explicitly.
os.environ.setdefault("SALREPRO_WORKERS", "1")

# The notebook tests train from scratch every session: stored runs of an
# earlier session (tests/notebooks/_out/*/runs) would be resumed, not retested.
shutil.rmtree(Path(__file__).parent / "notebooks" / "_out", ignore_errors=True)


# Device tests (marker `device`): tests of the code paths that differ by device (dispatch, the
# batched engine, the training loop). They run on CPU in every test run; on a GPU machine
# `python -m pytest -m device --device cuda` (or benchmarks/device_check.py) runs them there.
def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for tests marked `device` (default cpu; e.g. cuda)")


def pytest_configure(config):
    config.addinivalue_line("markers", "device: exercises device-dependent code; runs on --device")


import pytest  # noqa: E402


@pytest.fixture
def device(request):
    import torch

    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda: no CUDA device here")
    return torch.device(name)
