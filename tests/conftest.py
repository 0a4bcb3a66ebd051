import os
import tempfile

# Notebook kernels started by nbval inherit this: their data cache goes to a
# scratch folder, never into the project's DVC-tracked data/cache.
os.environ.setdefault("SALREPRO_CACHE", tempfile.mkdtemp(prefix="salrepro-test-cache-"))
