"""The `truthscope` Typer application, the options commands share, user-error handling, and the
closing table every command prints.

One name per concept, across all commands (the README's table lists them):
    --model/-m  --data  --data-version  --preset  --protocol  --limit (items)  --draw (seeded|first)
    --sets  --set-limit  --methods  --layers  --site  --out (always a folder)  --seed  --json
    --batch-size  --device  --dtype  --trust-remote-code
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
import typer

from truthscope.errors import RunFailed, TruthscopeError

app = typer.Typer(
    name="truthscope",
    help="Measure how language models mimic human falsehoods, and look inside them to see why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_DEBUG = {"on": False}  # set by the root callback's --debug, read by `user_errors`


def user_errors(command):
    """Every command's error boundary: a `TruthscopeError` (bad input) or an `OSError` (the
    environment: no permission, a full disk, a file where a folder goes) is one line on stderr and
    exit code 2, a `RunFailed` one line and exit 1, and anything else (a bug) one line naming the
    exception and exit 1. No traceback unless `truthscope --debug`, which re-raises instead."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise  # typer's own exits and usage errors: already one line with their code
        except (TruthscopeError, RunFailed) as err:
            if _DEBUG["on"]:
                raise
            print(f"error: {one_line(str(err))}", file=sys.stderr)
            raise typer.Exit(err.exit_code) from None
        except OSError as err:  # the environment: a folder that is a file, no permission, a full disk
            if _DEBUG["on"]:
                raise
            where = f"{err.filename}: " if err.filename else ""
            print(f"error: {where}{one_line(err.strerror or str(err))}", file=sys.stderr)
            raise typer.Exit(2) from None
        except Exception as err:
            if _DEBUG["on"]:
                raise
            print(
                f"error: unexpected {type(err).__name__}: {one_line(str(err))} "
                "(a bug in truthscope: `truthscope --debug ...` shows the traceback)",
                file=sys.stderr,
            )
            raise typer.Exit(1) from None

    wrapper.handles_errors = True  # type: ignore[attr-defined]  (tests check every command has it)
    return wrapper


def one_line(text: str, limit: int = 2000) -> str:
    """A message as one line: its lines joined, cut at `limit` characters."""
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Options that several commands take, declared once.
MODEL = typer.Option(
    ...,
    "--model",
    "-m",
    help="Bundled alias (smollm2-135m, gemma3-270m), local folder, hub id, 'mock'; vllm:ID_OR_PATH (vLLM in process);"
    " openai:MODEL or openai-chat:MODEL (an OpenAI-compatible endpoint at --base-url).",
)
DATA = typer.Option(
    None,
    "--data",
    help="Folder laid out like truthfulqa/ and geometry_of_truth/ (default: the packaged copy), or hf:DATASET.",
)
DATA_VERSION = typer.Option("2021", "--data-version", help="TruthfulQA version: 2021 (817 questions) or 2025 (790).")
PRESET = typer.Option("qa", "--preset", help="Prompt preset: qa, help, null, chat, long, harm.")
PROTOCOL = typer.Option(
    "harness",
    "--protocol",
    help="harness (lm-evaluation-harness), upstream (original code); mc also takes letters (letter choice, for chat"
    " endpoints: task mc_letters).",
)
OUT = typer.Option(None, "--out", help="Run folder (default: a new folder under runs/). Reuse it to resume.")
LIMIT = typer.Option(None, "--limit", min=1, help="Evaluate N items (questions), drawn as --draw says.")
DRAW = typer.Option("seeded", "--draw", help="How --limit draws: seeded (random sample, in file order) or first.")
SETS = typer.Option(
    "cities,sp_en_trans,larger_than,common_claim_true_false", "--sets", help="Statement sets, comma-separated."
)
SET_LIMIT = typer.Option(200, "--set-limit", min=2, help="Statements per set (seeded sample).")
BATCH_SIZE = typer.Option(16, "--batch-size", min=1, help="Sequences per forward pass.")
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N.")
DTYPE = typer.Option("float32", "--dtype", help="float32, bfloat16, float16.")
TRUST_REMOTE_CODE = typer.Option(
    False, "--trust-remote-code", help="Run the model repository's own code (off by default)."
)
BASE_URL = typer.Option(
    None,
    "--base-url",
    envvar="OPENAI_BASE_URL",
    help="Endpoint of openai:/openai-chat: models, e.g. http://127.0.0.1:8000/v1 (key from $OPENAI_API_KEY).",
)
SEED = typer.Option(0, "--seed", min=0, help="Seed for samples, splits and bootstrap resamples.")
JSON = typer.Option(False, "--json", help="Print the summary as JSON (for scripts) instead of the table.")


def model_options(
    device: str, dtype: str, batch_size: int = 16, trust_remote_code: bool = False, base_url: str | None = None
) -> dict:
    options = {"device": device, "dtype": dtype, "batch_size": batch_size, "trust_remote_code": trust_remote_code}
    return {**options, "base_url": base_url} if base_url else options


def split_list(text: str, option: str) -> list[str]:
    """A comma-separated option value as a list (an empty one is an error)."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise TruthscopeError(f"{option}: give at least one value, comma-separated")
    return values


def report_run(summary: dict, directory: Path, as_json: bool = False, metrics: tuple[str, ...] | None = None) -> None:
    """The closing output of a command: a table of scores (95% interval, n) and where the files went;
    with --json, the summary itself."""
    if as_json:
        typer.echo(json.dumps(summary, indent=1, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    scores = summary.get("scores", {})
    table = Table(title=f"{summary.get('task', '')} · {summary.get('model') or ''}".strip(" ·"), title_justify="left")
    for column in ("metric", "score", "95% interval", "n"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name in metrics or tuple(scores):
        s = scores.get(name)
        if isinstance(s, dict) and "mean" in s:
            interval = "—" if s.get("ci_low") is None else f"{s['ci_low']:.3f} – {s['ci_high']:.3f}"
            table.add_row(name, f"{s['mean']:.3f}", interval, str(s.get("n", "")))
    console = Console(soft_wrap=True)
    if table.row_count:
        console.print(table)
    files = sorted(p.name + "/" * p.is_dir() for p in Path(directory).iterdir() if not p.name.startswith("."))
    console.print(f"wrote {directory}: {', '.join(files)}", highlight=False)


def _version(value: bool) -> None:
    if value:
        from truthscope import __version__

        typer.echo(f"truthscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print truthscope's version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error (for bug reports)."),
) -> None:
    """truthscope: TruthfulQA, exact and fast, plus the tools to see why models say false things."""
    _DEBUG["on"] = debug
