"""How the method's area products run fast: grouping samples by area (`dispatch`) and MKL's grouped
GEMM on CPU (`blas`). No mathematics of the method lives here; nothing here imports the method."""
