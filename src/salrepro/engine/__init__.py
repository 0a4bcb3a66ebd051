"""Training engines: one model (`train`) and many models of one shape stacked on a leading dimension
(`batched`), which call the method's own functions rather than writing its equations again."""
