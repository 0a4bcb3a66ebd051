"""The method: SAL (`sal`: its equations, numbered, each written once), the baselines trained by
backpropagation or feedback (`baselines`: BP, MoE, FA, DFA, SAL-BP), the shared network shapes
(`nets`) and the one builder for every method (`models`). Below it: `kernels`; above it: `engine`."""
