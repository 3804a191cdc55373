"""`truthscope latent`: does the model know the true answer and still say a false one? The 2x2 table
of a truth probe's MC1 (knows) against the model's own (says), read against controls: a text-only
baseline, a randomly initialised model, a probe trained on statement sets only, and independence
(see `truthscope.interp.latent`)."""

from __future__ import annotations

import time
from pathlib import Path

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
    TRUST_REMOTE_CODE,
    app,
    model_options,
    report_run,
    user_errors,
)  # fmt: skip
from truthscope.cli.common import LAYERS, SITE, TEST_FRACTION, methods_of, open_interp_run

HEADLINE = ("knows", "says", "knows_not_says", "expected_knows_not_says", "excess_over_independence",
            "excess_over_knows_text", "excess_over_knows_random", "excess_over_knows_transfer")  # fmt: skip


@app.command("latent")
@user_errors
def latent_command(
    model: str = MODEL,
    data: str = DATA,
    data_version: str = DATA_VERSION,
    protocol: str = PROTOCOL,
    preset: str = PRESET,
    methods: str = typer.Option("logistic,mass_mean", "--methods", help="Probe methods to choose the best from."),
    layers: str = LAYERS,
    site: str = SITE,
    sets: str = typer.Option(
        "cities,sp_en_trans,larger_than,common_claim_true_false",
        "--sets",
        help="Statement sets of the transferred probe (trained on them only); '' for none.",
    ),  # fmt: skip
    set_limit: int = SET_LIMIT,
    random_init: bool = typer.Option(
        True, "--random-init/--no-random-init", help="Control: the same probe on a randomly initialised model."
    ),
    shuffle_labels: bool = typer.Option(
        False, "--shuffle-labels", help="Null test: permute the training labels (knows should fall to chance)."
    ),
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
    """Per held-out question: does the best truth probe rank the true answer first, and does the
    model's likelihood (summed, per token, calibrated)? The 2x2 table, observed and expected under
    independence, McNemar's test, and knows-not-says in excess of each control, with 95% intervals."""
    from truthscope.interp.experiments import (
        probe_set,
        random_init_model,
        split_questions,
        statement_sets,
        truthfulqa_set,
    )
    from truthscope.interp.latent import latent_analysis, latent_summary, says_readings
    from truthscope.interp.probe_plots import plot_latent_table

    started = time.time()
    method_list = methods_of(methods)
    set_names = [x.strip() for x in sets.split(",") if x.strip()]
    options = {"methods": method_list, "sets": set_names, "set_limit": set_limit, "random_init": random_init,
               "shuffle_labels": shuffle_labels, "test_fraction": test_fraction}  # fmt: skip
    s, run = open_interp_run(
        "latent", model, out, options, data=data, data_version=data_version, protocol=protocol, preset=preset,
        limit=limit, draw=draw, seed=seed, layers=layers, site=site,
        model_options=model_options(device, dtype, batch_size, trust_remote_code),
    )  # fmt: skip

    tqa = truthfulqa_set(s, contrast="ccs" in method_list)
    train, test, held_out = split_questions(tqa, s.questions, test_fraction, seed)
    random_set = None
    if random_init:
        control = random_init_model(s.lm, seed)
        random_set = probe_set(control, tqa.name, tqa.items, s.hooks)
        del control
    test_items = [tqa.items[i] for i in test]
    says = says_readings(s.lm, test_items, tqa.logprobs[test], s.preset, s.presets)
    records, fitted = latent_analysis(
        tqa, held_out, s.fmt, train, test, hooks=s.hooks, methods=method_list, seed=seed, says=says,
        random_set=random_set, statement_sets=statement_sets(s, set_names, set_limit), shuffle_labels=shuffle_labels,
    )  # fmt: skip
    run.append(records)
    views = latent_summary(records, seed=seed)
    table = views["table"]
    scores = {"knows": table["knows"], "says": table["says"], "knows_not_says": table["knows_not_says"],
              "expected_knows_not_says": {"mean": table["expected"]["knows_not_says"], "ci_low": None},
              "excess_over_independence": table["excess_over_independence"],
              **{f"excess_over_{c}": v["excess"] for c, v in views["controls"].items()},
              **{c: v["knows"] for c, v in views["controls"].items()}}  # fmt: skip
    summary = {
        "task": "latent",
        "model": s.lm.name,
        **fitted,
        "questions": {"train": len(s.questions) - len(held_out), "test": len(held_out)},
        "headline": "knows_not_says in excess of the controls: the probe ranks the true answer first, "
        "the model's likelihood does not, beyond what answer text, an untrained model or independence give",
        "scores": scores,
        **views,
        **run.provenance(started),
    }
    run.finish(summary)
    plot_latent_table(summary, run.directory / "latent.png")
    report_run(summary, run.directory, as_json, (*HEADLINE, "knows_text", "knows_random", "knows_transfer"))
