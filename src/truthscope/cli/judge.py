"""`truthscope judge train | show | eval`: truthscope's truth and informativeness judges."""

from __future__ import annotations

from pathlib import Path

import typer

from truthscope.cli.app import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    DTYPE,
    JSON,
    OUT,
    SEED,
    TRUST_REMOTE_CODE,
    app,
    model_options,
    report_run,
    user_errors,
)  # fmt: skip
from truthscope.errors import TruthscopeError

judge_app = typer.Typer(help="Train and inspect truthscope's truth and informativeness judges.", no_args_is_help=True)
app.add_typer(judge_app, name="judge")


@judge_app.command("train")
@user_errors
def judge_train_command(
    judge: str = typer.Option("trained", "--judge", help="trained (the feature judges) or crossencoder (both kinds)."),
    kind: str = typer.Option("all", "--kind", help="trained only: truth, info, or all (both)."),
    data: str = DATA,
    folds: int = typer.Option(5, "--folds", min=1, help="trained only: cross-validation folds, grouped by question."),
    epochs: int = typer.Option(1, "--epochs", min=1, help="crossencoder only: passes over the training pairs."),
    threads: int = typer.Option(None, "--threads", min=1, help="crossencoder only: torch CPU threads."),
    dev: bool = typer.Option(
        False,
        "--dev",
        help="crossencoder only: a design run, measured after every epoch on a fifth of the training "
        "questions held out; the test split is not scored (saved beside the judges, as crossencoder-dev).",
    ),
    out: Path = typer.Option(None, "--out", help="Folder to save into (default: the cache, where gen/score look)."),
    seed: int = SEED,
) -> None:
    """Train judges on the paper's human labels (finetune_truth/info.jsonl) outside the frozen test
    split, report their agreement on the split, and save them. `crossencoder` resumes from its
    checkpoint when started again with the same settings."""
    from truthscope.paths import data_dir
    from truthscope.scoring.similarity import SentenceEmbedder

    embedder = SentenceEmbedder(store=SentenceEmbedder.default_store())
    if judge == "crossencoder":
        from truthscope.judges.crossencoder import crossencoder_dir
        from truthscope.judges.finetune import TrainingOptions, finish, train_crossencoder

        options = TrainingOptions(epochs=epochs, seed=seed, dev=dev)
        if dev and out is None:
            out = crossencoder_dir().with_name("crossencoder-dev")  # never where gen/score look
        model = train_crossencoder(
            data_dir(data), options, directory=out, embedder=embedder, threads=threads, log=typer.echo
        )
        embedder.save()
        assert model is not None  # stopped early only when asked to (stop_after)
        saved = finish(model, out)
        for judge_ in model.judges().values():
            typer.echo(_test_line(judge_.describe()))
        typer.echo(f"saved the cross-encoder judges to {saved}")
        return
    if judge != "trained":
        raise TruthscopeError(f"judge train trains trained or crossencoder, not {judge!r}")
    _train_features(kind, data_dir(data), folds, out, seed, embedder)


def _train_features(kind: str, data, folds: int, out: Path | None, seed: int, embedder) -> None:
    from truthscope.judges import KINDS, train_judge

    if kind not in (*KINDS, "all"):
        raise TruthscopeError(f"unknown judge kind {kind!r}; choose truth, info or all")
    for k in KINDS if kind == "all" else (kind,):
        trained = train_judge(k, data, n_folds=folds, seed=seed, embedder=embedder, log=typer.echo)
        saved = trained.save(out / k if out is not None and kind == "all" else out)
        embedder.save()
        typer.echo(_cv_line(trained.describe()))
        typer.echo(_test_line(trained.describe()))
        typer.echo(f"saved the {k} judge to {saved}")


@judge_app.command("show")
@user_errors
def judge_show_command() -> None:
    """Print the trained and the cross-encoder judges' agreement with the human labels on the frozen
    test split (and the trained judges' cross-validated agreement on the train part)."""
    from truthscope.judges import KINDS, CrossEncoder, FastJudge

    try:
        for judge in CrossEncoder.load().judges().values():
            typer.echo(_test_line(judge.describe()))
    except TruthscopeError as err:
        typer.echo(str(err))
    for kind in KINDS:
        try:
            info = FastJudge.load(kind).describe()
        except TruthscopeError as err:
            typer.echo(str(err))
            continue
        typer.echo(_cv_line(info))
        typer.echo(_test_line(info))


@judge_app.command("eval")
@user_errors
def judge_eval_command(
    judge: str = typer.Option(
        "trained",
        "--judge",
        help="trained, crossencoder, lm:MODEL (any model, prompted as GPT-judge) or llama2-judge:MODEL (the open "
        "Llama-2 judges' style); MODEL may be TRUTH_MODEL,INFO_MODEL.",
    ),
    data: str = DATA,
    limit: int = typer.Option(
        None, "--limit", min=1, help="Evaluate a seeded sample of N test answers per judge (default: all)."
    ),
    out: Path = OUT,
    batch_size: int = BATCH_SIZE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    seed: int = SEED,
    as_json: bool = JSON,
) -> None:
    """Evaluate a judge on the frozen question-held-out test split of the human labels: accuracy,
    balanced accuracy, AUROC, sensitivity and specificity with 95% intervals, on all test answers
    and on those that are not reference answers."""
    from truthscope.judges.evaluate import METRICS, SUBSETS, run_eval, score_key
    from truthscope.paths import data_dir, new_run_dir

    summary, run = run_eval(
        judge, data_dir(data), out or new_run_dir("judge-eval"), limit=limit, seed=seed,
        model_options=model_options(device, dtype, batch_size, trust_remote_code), log=typer.echo,
    )  # fmt: skip
    order = tuple(score_key(k, s, m) for k in ("truth", "info") for s in SUBSETS for m in METRICS)
    report_run(summary, run.directory, as_json, order)


def _test_line(info: dict) -> str:
    test = info.get("test_split")
    if not test:
        return f"{info['name']}: no test-split figures"

    def fmt(m: dict) -> str:
        if m["mean"] is None:
            return "n/a"
        return f"{m['mean']:.3f}" + ("" if m["ci_low"] is None else f" [{m['ci_low']:.3f}, {m['ci_high']:.3f}]")

    parts = []
    for subset in ("all_answers", "non_reference_answers"):
        a = test[subset]
        parts.append(
            f"{subset.replace('_', ' ')} (n={a['n']}): accuracy {fmt(a['accuracy'])}, balanced "
            f"{fmt(a['balanced_accuracy'])}, AUROC {fmt(a['auroc'])}, sensitivity {fmt(a['sensitivity'])}, "
            f"specificity {fmt(a['specificity'])}"
        )
    split = info.get("split") or {}
    return f"{info['name']} (frozen test split {str(split.get('sha256', '?'))[:12]}): " + "; ".join(parts)


def _cv_line(info: dict) -> str:
    cv = info.get("cross_validation")
    if not cv:
        return f"{info['name']}: not cross-validated"
    parts = []
    for subset in ("all_answers", "non_reference_answers"):
        a = cv[subset]
        auroc = "n/a" if a["auroc"] is None else f"{a['auroc']:.3f}"
        parts.append(
            f"{subset.replace('_', ' ')} (n={a['n']}): accuracy {a['accuracy']:.3f}, "
            f"balanced {a['balanced_accuracy']:.3f}, AUROC {auroc}"
        )
    return f"{info['name']} ({cv['folds']}-fold CV grouped by question, train part): " + "; ".join(parts)
