"""What the evaluation commands share: run a registered task from command-line arguments."""

from __future__ import annotations

from pathlib import Path

import typer

from truthscope.errors import TruthscopeError
from truthscope.paths import new_run_dir
from truthscope.sampling import sample_of
from truthscope.tasks.base import Resources, run_task


def run_command(
    task: str,
    model,
    out: Path | None,
    options: dict,
    *,
    data: str | None,
    data_version: str,
    limit: int | None = None,
    draw: str = "seeded",
    seed: int = 0,
    group_size: int | None = None,
    model_options: dict | None = None,
):
    """Run `task` as a command does: packaged data unless --data, a new folder under runs/ unless
    --out; returns (summary, run)."""
    resources = Resources(data, data_version, {k: v for k, v in (model_options or {}).items() if k != "batch_size"})
    return run_task(
        task,
        model,
        out or new_run_dir(task),
        options=options,
        resources=resources,
        sample=sample_of(limit, draw, seed),
        seed=seed,
        group_size=group_size,
        model_options=model_options,
    )


# --- what the activation commands (probe, latent, steer) share -----------------------------------

TEST_FRACTION = typer.Option(
    0.5, "--test-fraction", min=0.05, max=0.95, help="Share of questions (groups) held out for testing."
)
LAYERS = typer.Option("all", "--layers", help="Layers to read: 'all' or a comma list such as 0,5,10.")
SITE = typer.Option("resid_post", "--site", help="Hook site: resid_post, or attn.heads (a layer's heads side by side).")


def open_interp_run(task, model, out, options, *, data, data_version, protocol, preset, limit, draw, seed, layers,
                    site, model_options):  # fmt: skip
    """(setup, run) of an activation command: data checked before the model loads, the model loaded,
    the questions drawn, the hooks checked, and the run log opened at `out` (or a new folder) with a
    config that records all of it plus the command's own `options`."""
    from truthscope.interp.experiments import setup
    from truthscope.models import load_model
    from truthscope.models.facts import model_facts
    from truthscope.runlog import RunConfig, RunLog
    from truthscope.sampling import sample_of

    resources = Resources(data, data_version, {k: v for k, v in model_options.items() if k != "batch_size"})
    resources.truthfulqa()  # bad data fails before a model loads
    resources.preset(preset)
    lm = load_model(model, **model_options)
    s = setup(lm, resources, protocol=protocol, preset=preset, sample=sample_of(limit, draw, seed), layers=layers,
              site=site, seed=seed)  # fmt: skip
    config = RunConfig(
        task=task, options={"protocol": protocol, "preset": preset, "hooks": s.hooks, **options},
        model=model_facts(lm, model), data=s.data, sample=s.sample, seed=seed,
        execution={"batch_size": model_options.get("batch_size", 16)},
    )  # fmt: skip
    return s, RunLog(out or new_run_dir(task), config)


def methods_of(text: str, allowed=None, exactly_one: bool = False) -> list[str]:
    """--methods as a list of probe methods (an unknown one is a one-line error)."""
    from truthscope.interp.probes import METHODS, parse_methods

    try:
        return parse_methods(text, allowed or METHODS, exactly_one)
    except ValueError as err:
        raise TruthscopeError(str(err)) from None
