"""The replication pipeline, above the method: every stage declared once (`registry`), params.yaml
read and checked (`schema`, `config`), the experiments (`stages`, `tuned`, `calibration`,
`protocol`), the verdicts (`paper`, `claims`, `report`, `figures`), `retrain` and the `salrepro`
command (`cli`). Nothing below this package imports it."""
