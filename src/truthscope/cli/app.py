"""The `truthscope` Typer application, options shared by commands, and user-error handling."""

from __future__ import annotations

import functools
import sys

import typer

from truthscope.errors import TruthscopeError

app = typer.Typer(
    name="truthscope",
    help="Measure how language models mimic human falsehoods, and look inside them to see why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def user_errors(command):
    """Turn a `TruthscopeError` into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TruthscopeError as err:
            print(f"error: {err}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


# Options that several commands take, declared once.
MODEL = typer.Option(
    ..., "--model", "-m", help="Bundled alias (smollm2-135m, gemma3-270m), local folder, hub id, or 'mock'."
)
DATA = typer.Option(
    None,
    "--data",
    help="Folder holding truthfulqa/ (default: $TRUTHSCOPE_DATA, ../shared/data, ./data), or hf:DATASET.",
)
VERSION = typer.Option("2021", "--version", help="TruthfulQA version: 2021 (817 questions) or 2025 (790).")
PRESET = typer.Option("qa", "--preset", help="Prompt preset: qa, help, null, chat, long, harm.")
OUT = typer.Option(None, "--out", help="Run directory (default: a new folder under runs/). Reuse it to resume.")
LIMIT = typer.Option(None, "--limit", min=1, help="Evaluate only the first N questions.")
BATCH_SIZE = typer.Option(16, "--batch-size", min=1, help="Sequences per forward pass.")
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N.")
DTYPE = typer.Option("float32", "--dtype", help="float32, bfloat16, float16.")
TRUST_REMOTE_CODE = typer.Option(
    False, "--trust-remote-code", help="Run the model repository's own code (off by default)."
)
SEED = typer.Option(0, "--seed", help="Seed for option order and bootstrap resamples.")


@app.callback()
def _root() -> None:
    """truthscope: TruthfulQA, exact and fast, plus the tools to see why models say false things."""
