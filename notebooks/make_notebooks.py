"""Writes the source notebooks of notebooks/ (stripped: no outputs). Edit the cells here and run

    python notebooks/make_notebooks.py

then python tests/notebooks/regenerate.py to refresh the golden copies of the nbval tests.
"""
from pathlib import Path

import nbformat as nbf
from nbformat.v4 import new_notebook, new_markdown_cell as md, new_code_cell as code

def nb(cells, name):
    n = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                             "language_info": {"name": "python"}})
    for i, c in enumerate(n.cells):
        c["id"] = f"{name}-{i:02d}"
    nbf.write(n, Path(__file__).resolve().parent / f"{name}.ipynb")

def params(src):
    c = code(src); c.metadata["tags"] = ["parameters"]; return c

def check(src):
    c = code(src); c.metadata["tags"] = ["nbval-check-output"]; return c

IMPORTS = "from IPython.display import Markdown, display\n\nimport salrepro\nfrom salrepro.pipeline import analysis, claims, figures, paper, registry, stages"

# ------------------------------------------------------------------ datasets
nb([
    md("# Table 1: the datasets\n\nThe paper's ten datasets (Table 1), regenerated from our loaders: classes, "
       "total samples, native resolution and channel processing, with the paper's numbers beside ours. A dataset "
       "whose files are not present under the data root is listed with the reason and how to get it.\n\n"
       "Expected time: seconds (Digits); about a minute when every dataset is present. Expected result: every "
       "dataset present matches the paper's Table 1 (USPS on its rebuilt training split included)."),
    params('params_file = "params.yaml"  # the profile\'s parameters\nout_dir = "results/quick/datasets"'),
    code(IMPORTS + "\n\ntable = stages.dataset_table(params_file, out_dir)\nanalysis.wrapped(analysis.table1_view(table))"),
    md("Rows the profile needs must say `loaded`; the check below prints them."),
    check('loaded = table[table["status"] == "loaded"]\nprint(loaded[["name", "classes", "total_samples", "resolution", "channel_processing", "matches"]].to_string(index=False))'),
    md("## Verdict"),
    code('ok = table[table["matches"] == True]["dataset"].tolist()  # noqa: E712\n'
         'bad = table[table["matches"] == False]["dataset"].tolist()  # noqa: E712\n'
         'absent = table[table["matches"].isna()]["dataset"].tolist()\n'
         'display(Markdown(f"Loaded and identical to the paper\'s Table 1: {\', \'.join(ok) or \'none\'}. "\n'
         '                 f"Loaded but different: {\', \'.join(bad) or \'none\'}. "\n'
         '                 f"Not comparable here (files absent or partial): {\', \'.join(absent) or \'none\'}."))'),
], "datasets")

# ------------------------------------------------------------------ calibration
nb([
    md("# Calibration: the protocol checked on BP\n\n"
       "BP is the one method of the paper with no open choice, so its row in Tables 2 and 3 calibrates the shared "
       "protocol (input map, splits, loss) before any SAL verdict is read. BP (input -> 256 -> classes, ReLU, "
       "plain SGD; 25 epochs, batch 16, lr 1e-4, 5 seeds: the area sweep's settings from `params.yaml`) runs on every "
       "dataset of the profile under every input map (`input_norm`, docs/data.md): `pm1` (x * 2 - 1, [-1, 1], the "
       "default), `unit` ([0, 1], the first protocol), `standard` (per feature, training statistics) and `global` "
       "(one mean and std over the training values). Each of BP's three cells (validation accuracy, training loss, "
       "validation loss) is compared with the paper's: *within* when |ours - paper| <= sigma combined standard "
       "deviations.\n\n"
       "Expected time: under a minute for Digits (the quick profile); about 25 minutes on 2 CPU cores for the cpu "
       "profile's five datasets. Expected result: `pm1` reproduces the paper's BP row; `unit` does not."),
    params('params_file = "params.yaml"\nout_dir = "results/quick/calibration"\nfigures_dir = "figures/quick"\nprogress = False'),
    code("from IPython.display import Markdown, display\n\nfrom salrepro.pipeline import calibration, figures\nfrom salrepro.pipeline.config import load_params\n\n"
         "params = load_params(params_file)\nsigma = params[\"report\"][\"sigma\"]\n"
         "table = calibration.run_calibration(params_file, out_dir, progress=progress)\n"
         "calibration.side_by_side(table)"),
    check('print(table[["dataset", "input_norm", "metric", "ours_mean", "verdict"]].round(2).to_string(index=False))'),
    md("## Each BP cell against the paper's\n\nz = (ours - paper) / combined std, per dataset, metric and map; "
       "a cell agrees inside the shaded band."),
    code('figures.show(figures.calibration(table, sigma), f"{figures_dir}/calibration.png")'),
    md("## Agreement per input map, over every dataset"),
    code("calibration.agreement_view(table)"),
    md("## Conclusion"),
    code("display(Markdown(calibration.conclusion(table, sigma)))"),
], "calibration")

# ------------------------------------------------------------------ area sweep
nb([
    md("# Tables 2 and 3: accuracy and losses against the number of areas K\n\n"
       "The shallow net (input -> 256 -> classes, ReLU) trained by backpropagation (BP) and by SAL with "
       "K = 1, 2, 4, 8, 16 areas on its first layer; the paper's settings (25 epochs, batch 16, lr 1e-4, "
       "5 seeds) come from `params.yaml`, inputs under the calibrated map (`input_norm`, see the calibration "
       "notebook). We report the mean and standard deviation over seeds of the "
       "final-epoch validation accuracy, training loss and validation loss, beside the paper's numbers, and a "
       "verdict per cell: *within* when |ours - paper| <= sigma combined standard deviations.\n\n"
       "With `stage = \"preset_sweep\"` the same grid runs with SAL under the named preset of `params.yaml` "
       "(`preset_sweep.preset`, e.g. `paper_fit`: the protocol study's closest reading); the BP runs are shared.\n\n"
       "Expected time: about a minute for Digits on 2 CPU cores (30 runs trained together); MNIST-sized datasets "
       "take about 15 minutes."),
    params('stage = "area_sweep"  # or "preset_sweep"\ndataset = "digits"\nparams_file = "params.yaml"\n'
           'out_dir = "results/quick/area_sweep/digits"\nfigures_dir = "figures/quick"\nprogress = False'),
    code(IMPORTS + "\n\nout = stages.run_stage(stage, dataset, params_file=params_file, out_dir=out_dir, progress=progress)\n"
         "title = salrepro.data.display_name(dataset, out.settings.data_options)\n"
         "out.settings.view(\"methods\", \"seeds\", \"epochs\", \"batch_size\", \"lr\", \"hidden\", \"options\", \"data_options\","
         " *((\"preset\",) if stage == \"preset_sweep\" else ()))"),
    md("## Ours beside the paper"),
    code("paper.side_by_side(out.comparison)"),
    check('print(out.summary[["label", "val_accuracy_pct_mean", "train_loss_mean", "val_loss_mean"]].round(1).to_string(index=False))'),
    md("## Learning curves"),
    code('figures.show(figures.learning_curves(out.curves, title), f"{figures_dir}/{stage}-{dataset}-curves.png")'),
    md("## Agreement with the paper\n\nOurs and the paper's accuracy per method (top, axis zoomed), and the difference "
       "with the band inside which a cell agrees (bottom)."),
    code('figures.show(figures.ours_vs_paper(out.comparison, title), f"{figures_dir}/{stage}-{dataset}-vs-paper.png")'),
    md("## Area occupancy\n\nHow many validation samples each area of the routed layer receives at the end of training "
       "(mean share over seeds). An area that receives nothing never learns."),
    code('figures.show(figures.occupancy(out.occupancy, title), f"{figures_dir}/{stage}-{dataset}-occupancy.png")'),
    md("## Verdict"),
    code('found = registry.judge(stage, out.runs)  # the claims this stage tests (pipeline/registry.py)\n'
         'display(Markdown(f"**{title}**: {analysis.accuracy_agreement(out.comparison)}\\n\\n" + claims.claims_markdown(found)))'),
], "area_sweep")

# ------------------------------------------------------------------ depth
nb([
    md("# Figure 2: depth\n\nThe residual tanh net (width fixed, K areas on the first and every hidden layer) "
       "trained by BP and by SAL at growing depth; depths, width, K and training from `params.yaml`; SAL under "
       "the defaults and again under each preset of `depth.presets` (the reading that reproduces Tables 2/3), BP once. "
       "The paper goes to depth 128 on CIFAR-10, FER2013, Semeion and STL-10 and prints no numbers for this "
       "figure: its own reading of it is drawn under ours.\n\n"
       "Expected time: about a minute for the quick profile (depth to 16, 2 seeds); the cpu profile's depth 128 "
       "takes about an hour per dataset on 2 CPU cores."),
    params('dataset = "digits"\nparams_file = "params.yaml"\nout_dir = "results/quick/depth/digits"\nfigures_dir = "figures/quick"\nprogress = False'),
    code(IMPORTS + "\n\nout = stages.run_stage(\"depth\", dataset, params_file=params_file, out_dir=out_dir, progress=progress)\n"
         "title = salrepro.data.display_name(dataset, out.settings.data_options)\n"
         "out.settings.view(\"methods\", \"depths\", \"hidden\", \"seeds\", \"epochs\", \"batch_size\", \"lr\", \"options\", \"data_options\")"),
    md("## Final validation accuracy against depth"),
    code('out.summary.pivot_table(index="depth", columns="label", values=["val_accuracy_pct_mean", "val_accuracy_pct_std", "params_active"]).round(2)'),
    check('print(out.summary[["label", "depth", "val_accuracy_pct_mean"]].round(1).to_string(index=False))'),
    code('fig = figures.versus_axis(out.summary, "depth", f"{title}: accuracy against depth (width {out.settings.hidden})",\n'
         '                          paper_trend=paper.TRENDS["depth"])\n'
         'figures.show(fig, f"{figures_dir}/depth-{dataset}.png")'),
    md("## Verdict"),
    code('for reading in dict.fromkeys(out.runs["reading"]):  # SAL under the defaults, then each preset\n'
         '    view = claims.reading_view(out.runs, reading)\n'
         '    display(Markdown(f"**SAL under `{reading}`**\\n\\n" + claims.claims_markdown(registry.judge("depth", view))))'),
    md("BP's dips against depth, if any, diagnosed from its losses:"),
    code('display(Markdown(analysis.depth_dips(out.summary, out.runs) or "No BP dip against depth here."))'),
], "depth")

# ------------------------------------------------------------------ width
nb([
    md("# Figure 3: width\n\nThe residual tanh net at a fixed depth with growing width, BP against SAL with K areas; "
       "SAL under the defaults and again under each preset of `width.presets`; the table gives active (per sample) and "
       "total parameter counts. The paper goes to width 4096 at depth 64 "
       "(about 1.07B active and 4.3B total weights) and prints no numbers for this figure: its own reading of it "
       "is drawn under ours.\n\n"
       "Expected time: about a minute for the quick profile (widths to 256 at depth 8). On 2 CPU cores, at depth 64, a "
       "SAL-4 run takes about 10 minutes at width 1024, 16 at 2048 and an hour at 4096 (17 GB of memory: such a net "
       "trains alone, and a batch that cannot fit in the memory free is refused before it is built)."),
    params('dataset = "digits"\nparams_file = "params.yaml"\nout_dir = "results/quick/width/digits"\nfigures_dir = "figures/quick"\nprogress = False'),
    code(IMPORTS + "\n\nout = stages.run_stage(\"width\", dataset, params_file=params_file, out_dir=out_dir, progress=progress)\n"
         "title = salrepro.data.display_name(dataset, out.settings.data_options)\n"
         "out.settings.view(\"methods\", \"widths\", \"depth\", \"seeds\", \"epochs\", \"batch_size\", \"lr\", \"options\", \"data_options\")"),
    md("## Final validation accuracy and parameter counts against width"),
    code('out.summary[["label", "depth", "hidden", "val_accuracy_pct_mean", "val_accuracy_pct_std", "params_active", "params_total"]].round(2)'),
    check('print(out.summary[["label", "hidden", "val_accuracy_pct_mean", "params_active", "params_total"]].round(1).to_string(index=False))'),
    md("The paper's widest point, counted on the meta device (nothing allocated), for this dataset's input size:"),
    code('n_in, n_classes = salrepro.data.IN_FEATURES[dataset], salrepro.data.NUM_CLASSES[dataset]\n'
         'salrepro.count_parameters(salrepro.build_model("sal", n_in, n_classes, hidden=4096, depth=64, num_areas=4, device="meta"))'),
    code('fig = figures.versus_axis(out.summary, "width", f"{title}: accuracy against width (depth {out.settings.depth})",\n'
         '                          paper_trend=paper.TRENDS["hidden"], note=analysis.run_costs(out.summary[out.summary["hidden"] >= 2048]))\n'
         'figures.show(fig, f"{figures_dir}/width-{dataset}.png")'),
    md("What each point rests on and what its runs cost (seconds per step and peak memory, as the runs recorded them; "
       "runs from before these were recorded show none):"),
    code('display(Markdown(analysis.run_costs(out.summary) or "No run here recorded its step time and memory."))'),
    md("## Verdict"),
    code('for reading in dict.fromkeys(out.runs["reading"]):  # SAL under the defaults, then each preset\n'
         '    view = claims.reading_view(out.runs, reading)\n'
         '    display(Markdown(f"**SAL under `{reading}`**\\n\\n" + claims.claims_markdown(registry.judge("width", view))))'),
], "width")

# ------------------------------------------------------------------ moe
nb([
    md("# Figures 4 and 5: SAL against a mixture of experts; is it the areas or the rule?\n\nSAL with K areas against "
       "the methods of `moe.methods`, on the shallow net with the training settings of Table 2 (the SAL runs are those "
       "of the area sweep): `moe`, a top-1 mixture of K experts trained end to end by backpropagation (softmax gate, "
       "gate-probability scaling, Switch load balancing), the paper's Figures 4-5; and `salbp`, beyond the paper, "
       "SAL's own areas and routing (selector trained by its local loss) with the area weights trained by "
       "backpropagation instead of the feedback rule. SAL-BP-1 is BP. SAL-BP against SAL-BP-1 shows what the areas "
       "give under backpropagation; SAL against SAL-BP at equal K shows what the rule gives.\n\n"
       "Expected time: about two minutes for Digits on 2 CPU cores; MNIST-sized datasets take about 40 minutes. "
       "Expected result: not known before it runs."),
    params('dataset = "digits"\nparams_file = "params.yaml"\nout_dir = "results/quick/moe/digits"\nfigures_dir = "figures/quick"\nprogress = False'),
    code(IMPORTS + "\n\nout = stages.run_stage(\"moe\", dataset, params_file=params_file, out_dir=out_dir, progress=progress)\n"
         "title = salrepro.data.display_name(dataset, out.settings.data_options)\n"
         "out.settings.view(\"areas\", \"seeds\", \"epochs\", \"batch_size\", \"lr\", \"hidden\", \"options\", \"sal_options\", \"data_options\")"),
    md("## Final validation accuracy per method and K"),
    code('out.summary.pivot_table(index="areas", columns="method", values=["val_accuracy_pct_mean", "val_accuracy_pct_std"]).round(2)'),
    check('print(out.summary[["label", "val_accuracy_pct_mean"]].round(1).to_string(index=False))'),
    md("## Per-epoch validation accuracy"),
    code('figures.show(figures.sal_vs_moe(out.curves, title), f"{figures_dir}/moe-{dataset}.png")'),
    md("## Verdict"),
    code('display(Markdown(claims.claims_markdown(registry.judge("moe", out.runs))))'),
    md("## Beyond the paper: the areas or the learning rule?"),
    code('display(Markdown(analysis.areas_versus_rule(out.summary)))'),
], "moe")

# ------------------------------------------------------------------ report
nb([
    md("# The replication report\n\nWhat our runs say of each claim of the paper: first the finding in words and "
       "the claims table, then every claim on every dataset (a figure), then the calibration, Tables 2/3 ours beside "
       "the paper's (within: |ours - paper| <= sigma combined standard deviations; the paper's printed std floored "
       "at half its last digit), the protocol, the cells we could not run and why, and the cost. It reads the "
       "stages' tables: seconds."),
    params('params_file = "params.yaml"\nresults_dir = "results/quick"\nout_dir = "results/quick/report"\nfigures_dir = "figures/quick"\n'
           'readme = None  # a path: also write the generated blocks into that README (this stage alone writes it)'),
    code("from IPython.display import Markdown, display\n\nfrom salrepro.pipeline import analysis, calibration, claims, figures, paper, protocol, report\nfrom salrepro.pipeline.config import load_params\n\n"
         "params = load_params(params_file)\nrep = report.build_report(results_dir, params)\nmetrics = report.write_report(rep, out_dir)"),
    md("## The finding"),
    code('display(Markdown(report.finding_markdown(rep)))'),
    md("## Every claim, every dataset\n\nEach dataset's effect with its 95% interval, per column of the claims table, "
       "coloured by that dataset's verdict (Holm-adjusted across the cell's datasets); the vertical line is what the "
       "claim is read against. Rows marked *(fit)* are datasets the preset was chosen on."),
    code('forest = claims.forest_frame(rep.claims)\n'
         'figures.show(figures.forest(forest, fit_datasets=[paper.DISPLAY_NAMES[d] for d in rep.fit_datasets]), '
         'f"{figures_dir}/claims_forest.png") if len(forest) else figures.absent("no claim could be tested here")'),
    md("### How each cell is computed"),
    code('display(Markdown(report.AGGREGATION))'),
    md("## Calibration: BP under each input map\n\nBP has no open choice, so its row calibrates the protocol "
       "(the calibration stage): the map that reproduces the paper's BP row is the one the verdicts below should rest on."),
    code('calibration.side_by_side(rep.calibration) if len(rep.calibration) else "no calibration results"'),
    md("## At a glance: the paper against ours\n\nEvery Table 2/3 cell we ran. BP on the diagonal is the calibration; "
       "SAL off it is the finding."),
    code('figures.show(figures.paper_vs_ours(rep.comparison, rep.preset_comparison, rep.preset), '
         'f"{figures_dir}/paper_vs_ours.png") if len(rep.comparison) else "no area-sweep results"'),
    md("## Tables 2 and 3, ours beside the paper"),
    code('paper.side_by_side(rep.comparison) if len(rep.comparison) else "no area-sweep results"'),
    md("## Tables 2 and 3 under the named preset (`preset_sweep`)\n\nThe same grid with SAL under the preset of "
       "`params.yaml` (`preset_sweep.preset`; docs/method.md). The defaults of docs/method.md stay the defaults: this "
       "is the reading the protocol study found closest to the paper, shown beside them."),
    code('paper.side_by_side(rep.preset_comparison) if len(rep.preset_comparison) else "no preset-sweep results"'),
    check('print(metrics["cells_within"], "of", metrics["cells_per_metric"])\nprint(metrics["claims"])'),
    md("## Claims of the paper's text, with their evidence\n\nEvery cell of the claims table (at the top of the "
       "summary below), dataset by dataset."),
    code('analysis.wrapped(claims.claims_frame([c for c in rep.claims if c["verdict"] != "not run"]))'),
    md("## Every method at its own learning rate (`tuned`)\n\nThe learning rate each configuration chose on the "
       "tuning split, and the accuracy each lr reached there."),
    code('figures.show(figures.lr_curves(rep.tuned_choice, params["area_sweep"]["lr"]), f"{figures_dir}/tuned_lr.png") '
         'if len(rep.tuned_choice) else "no tuned results"'),
    md("## The protocol study and its held-out test"),
    code('display(Markdown(protocol.conclusion(rep.protocol) if len(rep.protocol) else "- Not run in this profile."))'),
    md("## Beyond the paper: the areas or the learning rule? (the moe stage's SAL-BP runs)"),
    code('display(Markdown(analysis.areas_versus_rule(rep.stages["moe"]) if len(rep.stages["moe"]) else "- Not run."))'),
    md("## What we could not run, and why"),
    code('analysis.wrapped(rep.not_run)'),
    md("## What it cost\n\nTraining wall time of each stage instance (its runs' seconds summed; data loading and "
       "rendering not counted) and the machine its runs name: the baseline for speed work."),
    code('analysis.wrapped(rep.times) if len(rep.times) else "no run records here"'),
    md("## Summary (the README's verdict block)"),
    code('if readme:\n    report.write_readme_blocks(readme, results_dir)\ndisplay(Markdown(report.summary_markdown(rep)))'),
], "report")

# ------------------------------------------------------------------ protocol study
nb([
    md("# Protocol study: which reading of the paper reproduces it?\n\n"
       "The paper's text leaves choices open (docs/method.md): the update divisor, the feedback scale and the "
       "feedback matrix's distribution, the router width and prototype normalisation, the selector's learning rate, "
       "the initialisation. A *reading* is one set of those choices; each runs Table 2/3's grid (BP and SAL-1..16, "
       "the area sweep's training settings). Readings are chosen on the **fit set** only: first a grid "
       "(`protocol_study.grid`, crossed), then, from the grid reading closest to the paper, each "
       "`one_at_a_time` choice alone. The defaults and the `held_out_readings` closest readings then run once "
       "on the **held-out set**, the test. Scores: mean |z| over all Table 2/3 cells of a dataset, RMS accuracy "
       "difference, cells within, and the paper's two qualitative claims (SAL above BP; accuracy rising with K), "
       "each tested for significance. The defaults are never moved to fit the paper.\n\n"
       "Expected time: about a minute for the quick profile (fit set Digits, 4 readings, 2 seeds). The cpu profile: "
       "about 20 minutes for the fit set (Digits and Semeion, 15 + 8 readings, 5 seeds) on 2 CPU cores, plus the "
       "held-out set (MNIST, Fashion-MNIST, USPS; about 15 minutes per reading per MNIST-sized dataset, less where "
       "the area sweep's or preset sweep's runs are reused). Expected result: not known before it runs."),
    params('params_file = "params.yaml"\nout_dir = "results/quick/protocol_study"\nfigures_dir = "figures/quick"\nprogress = False'),
    code("from IPython.display import Markdown, display\n\nimport pandas as pd\n\nfrom salrepro.pipeline import analysis, figures, protocol\n\n"
         "table = protocol.run_study(params_file, out_dir, progress=progress)\n"
         "protocol.fit_ranking(table).round(2)"),
    md("The checked cell prints what the study concludes (the ranking and each reading's verdicts), not its raw "
       "scores: a fast reading such as `sum` amplifies float rounding, which differs between CPUs."),
    check('print(protocol.fit_ranking(table)["reading"].tolist())\n'
          'print(table[["dataset", "reading", "set", "sal_above_bp", "rises_with_k"]].to_string(index=False))'),
    md("## Distance to the paper per reading (fit set, then held out)"),
    code('figures.show(figures.protocol_distances(table), f"{figures_dir}/protocol_study.png")'),
    md("## The held-out test: the chosen readings and the defaults, run once"),
    code('held = table[table["set"] == "held_out"]\n'
         'held[["dataset", "reading", "choices", "mean_abs_z", "acc_rmse_pp", "cells_within", "cells", "sal_above_bp", '
         '"rises_with_k"]].round(2) if len(held) else Markdown("No held-out dataset in this profile.")'),
    md("## Evidence for the claims, per reading"),
    code('analysis.wrapped(table[["dataset", "reading", "set", "sal_above_bp_evidence", "rises_with_k_evidence"]])'),
    md("## A reading-independent check: loss against accuracy\n\n"
       "The paper reports each cell's accuracy and loss. Every run of every reading is a point below; the paper's "
       "points are stars. A paper point where no run of any reading falls is evidence about the paper, not about "
       "one reading."),
    code('runs = pd.read_csv(f"{out_dir}/runs.csv")\nconsistency = protocol.consistency(runs)\n'
         'figures.show(figures.loss_accuracy(runs, consistency), f"{figures_dir}/protocol_loss_accuracy.png")'),
    code("display(Markdown(protocol.consistency_conclusion(consistency)))"),
    md("## Conclusion"),
    code("display(Markdown(protocol.conclusion(table)))"),
], "protocol_study")

# ------------------------------------------------------------------ tuned
nb([
    md("# Every method at its own learning rate: do the claims survive a trained baseline?\n\n"
       "The paper trains every method at lr 1e-4 (batch 16, 25 epochs), where BP is far from trained. Here each "
       "configuration of `tuned.methods` (BP; SAL-K under the defaults and under each preset of `tuned.presets`; "
       "MoE-K), and on the datasets of `tuned.depth` the depth figure's nets, picks its own learning rate from "
       "`tuned.lrs`: `select_seeds` run(s) per lr train on the training split less a stratified 15% of each class and "
       "are scored on that 15% (the *tuning split*; the official validation split is not read). The lr with the "
       "highest tuning accuracy wins (an lr under which a run diverged never does). The chosen lr then trains the "
       "`area_sweep.seeds` seeds on the full training split, reported on the official validation split as Table 2 "
       "is. Where a method's chosen lr is the paper's, its runs are those of the other stages.\n\n"
       "Expected time: about two minutes for Digits on 2 CPU cores; MNIST-sized datasets take hours (see the "
       "report's stage times). Expected result: not known before it runs."),
    params('dataset = "digits"\nparams_file = "params.yaml"\nout_dir = "results/quick/tuned/digits"\nfigures_dir = "figures/quick"\nprogress = False'),
    code("from IPython.display import Markdown, display\n\nimport salrepro\nfrom salrepro.pipeline import claims, figures, paper, registry, tuned\n\n"
         "out = tuned.run_tuned(dataset, params_file=params_file, out_dir=out_dir, progress=progress)\n"
         "title = salrepro.data.display_name(dataset, out.settings.data_options)\n"
         "out.settings.view(\"methods\", \"presets\", \"lrs\", \"folds\", \"cv_below\", \"select_seeds\", \"seeds\", \"epochs\", \"batch_size\", \"hidden\", \"lr\")"),
    md("## The learning rate each configuration chose\n\nMean accuracy (%) of each lr's selection runs (the folds of "
       "a cross-validation of the training split, or the tuning split carved out of it: `runs` per lr; empty: "
       "an unstable run, so the lr failed), the lr chosen, its standard error and the near-ties within one "
       "standard error of it."),
    code('out.choice.drop(columns=["dataset"]).round({c: 1 for c in out.choice.columns if c.startswith("acc@") or c in ("tuning_accuracy_pct", "se")})'),
    check('print(out.choice[["label", "depth", "lr"]].to_string(index=False))'),
    code('figures.show(figures.lr_curves(out.choice, out.settings.lr), f"{figures_dir}/tuned-{dataset}-lr.png")'),
    md("## At the chosen learning rates, reported on the official validation split"),
    code('out.summary[["label", "depth", "lr", "seeds", "diverged", "val_accuracy_pct_mean", "val_accuracy_pct_std", '
         '"train_loss_mean", "val_loss_mean"]].round(3)'),
    md("## Verdicts at tuned learning rates"),
    code('shallow = out.runs[out.runs["depth"] == 2]\n'
         'for reading in dict.fromkeys(shallow.loc[shallow["method"] == "sal", "reading"]):\n'
         '    view = claims.reading_view(shallow, reading)\n'
         '    found = registry.judge("tuned", view, data=("table2", "moe"))\n'
         '    display(Markdown(f"**SAL under `{reading}`**\\n\\n" + claims.claims_markdown(found)))\n'
         'd = out.settings.depth\n'
         'deep_view = lambda frame: claims.depth_view(frame, d.methods, d.depths, d.hidden)\n'
         'deep = deep_view(out.summary)\n'
         'for reading in (d.readings if d.run else ()):\n'
         '    found = registry.judge("tuned", claims.reading_view(deep_view(out.runs), reading), data=("depth",))\n'
         '    display(Markdown(f"**Depth at tuned learning rates, SAL under `{reading}`**\\n\\n" + claims.claims_markdown(found)))'),
    md("## Depth at tuned learning rates (Figure 2, on the datasets of `tuned.depth`)"),
    code('figures.show(figures.versus_axis(deep, "depth", f"{title}: accuracy against depth, each at its tuned lr",\n'
         '                                 paper_trend=paper.TRENDS["depth"]), f"{figures_dir}/tuned-{dataset}-depth.png") \\\n'
         '    if d.run else figures.absent(f"the depth nets run at tuned lrs on {\', \'.join(d.datasets) or \'no dataset\'} only")'),
], "tuned")
