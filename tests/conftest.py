import os
import shutil
import tempfile
from pathlib import Path

# Notebook kernels started by nbval inherit this: their data cache goes to a
# scratch folder, never into the project's DVC-tracked data/cache.
os.environ.setdefault("SALREPRO_CACHE", tempfile.mkdtemp(prefix="salrepro-test-cache-"))

# The notebook tests train from scratch every session: stored runs of an
# earlier session (tests/notebooks/_out/*/runs) would be resumed, not retested.
shutil.rmtree(Path(__file__).parent / "notebooks" / "_out", ignore_errors=True)
