"""`truthscope probe`: truth probes per layer on held-out items, their generalisation across datasets,
and the probe's TruthfulQA MC1 against the model's own. The science is in `truthscope.interp`
(`experiments`, `probes`, `latent`); `cli.common.open_interp_run` opens the run, as for `latent`, `steer`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer

from truthscope.cli.app import (
    BATCH_SIZE,
    DATA,
    DATA_VERSION,
    DEVICE,
    DRAW,
    DTYPE,
    JSON,
    LIMIT,
    MODEL,
    OUT,
    PRESET,
    PROTOCOL,
    SEED,
    SET_LIMIT,
    SETS,
    TRUST_REMOTE_CODE,
    app,
    model_options,
    report_run,
    user_errors,
)  # fmt: skip
from truthscope.cli.common import LAYERS, SITE, TEST_FRACTION, methods_of, open_interp_run


@app.command("probe")
@user_errors
def probe_command(
    model: str = MODEL,
    data: str = DATA,
    data_version: str = DATA_VERSION,
    protocol: str = PROTOCOL,
    preset: str = PRESET,
    sets: str = SETS,
    set_limit: int = SET_LIMIT,
    methods: str = typer.Option("logistic,mass_mean,ccs", "--methods", help="Probe methods: logistic, mass_mean, ccs."),
    layers: str = LAYERS,
    site: str = SITE,
    test_fraction: float = TEST_FRACTION,
    limit: int = LIMIT,
    draw: str = DRAW,
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
    as_json: bool = JSON,
) -> None:
    """Truth probes per layer (held-out questions), their generalisation across datasets, and probe
    MC1 against the model's own MC1. CCS is label-free (each item with " True" / " False")."""
    from truthscope.interp.experiments import split_questions, statement_sets, truthfulqa_set
    from truthscope.interp.latent import competing_answers, mc1_rate, mc1_sets, question_mc1
    from truthscope.interp.probe_plots import plot_generalisation, plot_probe_layers
    from truthscope.interp.probes import (
        drop_shared_answers,
        features_of,
        probe_layers,
        select_common_layer,
        summarise_rows,
    )
    from truthscope.scoring.intervals import bootstrap_mean

    started = time.time()
    method_list = methods_of(methods)
    set_names = [x.strip() for x in sets.split(",") if x.strip()]
    s, run = open_interp_run(
        "probe", model, out,
        {"sets": set_names, "set_limit": set_limit, "methods": method_list, "test_fraction": test_fraction},
        data=data, data_version=data_version, protocol=protocol, preset=preset, limit=limit, draw=draw, seed=seed,
        layers=layers, site=site, model_options=model_options(device, dtype, batch_size, trust_remote_code),
    )  # fmt: skip

    ccs = "ccs" in method_list
    tqa = truthfulqa_set(s, contrast=ccs)
    all_sets = [tqa, *statement_sets(s, set_names, set_limit, contrast=ccs)]
    train, test, held_out = split_questions(tqa, s.questions, test_fraction, seed)
    splits = {tqa.name: (drop_shared_answers(tqa.texts, train, test), test)}
    rows, splits, probes = probe_layers(all_sets, s.hooks, method_list, test_fraction, seed, splits)
    common, validation = select_common_layer(all_sets, s.hooks, splits, seed)

    test_items = [tqa.items[i] for i in test]
    model_mc1 = question_mc1(held_out, test_items, tqa.logprobs[test], *s.fmt)
    probe_mc1 = {
        m: {h: mc1_rate(held_out, test_items, probes[tqa.name, h, m].scores(features_of(tqa, h, m)[test]), *s.fmt)
            for h in s.hooks}
        for m in method_list
    }  # fmt: skip
    for i, row in enumerate(rows):
        row["id"] = i
        row["scores"] = {k: row.pop(k) for k in ("accuracy", "auroc")}
        if row["train"] == row["test"] == tqa.name:
            row["scores"]["probe_mc1"] = probe_mc1[row["method"]][row["hook"]]
    run.append(rows)
    for row in rows:  # the summary's views read the flat form
        row.update(row["scores"])

    model_score = bootstrap_mean(list(model_mc1.values()), seed=seed)
    summary = {
        "task": "probe",
        "model": s.lm.name,
        "sizes": {
            x.name: {
                "items": len(x.items),
                "groups": int(np.unique(x.groups).size),
                "train": int(len(splits[x.name][0])),
                "test": int(len(splits[x.name][1])),
            }
            for x in all_sets
        },  # fmt: skip
        **summarise_rows(rows, [x.name for x in all_sets], method_list, common),
        "common_hook_rule": "best mean validation AUROC of mass-mean probes across datasets, on training groups only",
        "validation_auroc": validation,
        "truthfulqa_mc1": {
            "questions": len(held_out),
            "model": model_score,
            "chance": float(np.mean([1 / competing_answers(mc1_sets(q, *s.fmt)) for q in held_out])),
            "probe": probe_mc1,
            "note": "training answers whose string is also a test answer are dropped from the probe's training",
        },
        "scores": {
            "model_mc1": model_score,
            **{
                f"probe_mc1_{m}@{common}": {"mean": probe_mc1[m][common], "ci_low": None, "n": len(held_out)}
                for m in method_list
            },
        },  # fmt: skip
        **run.provenance(started),
    }
    run.finish(summary)
    plot_probe_layers(summary, run.directory / "probe_layers.png")
    plot_generalisation(summary, run.directory / "generalisation.png")
    report_run(summary, run.directory, as_json)
