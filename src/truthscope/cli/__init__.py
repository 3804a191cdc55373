"""Command line: `truthscope <command>`. Each command module registers itself on `app`."""

from truthscope.cli import (  # noqa: F401  (importing a command module registers its commands)
    calibration,  # calibration, sycophancy, pik
    export,  # export
    generation,  # gen, score
    judge,  # judge train | show | eval
    latent,  # latent
    mc,  # mc
    neurons,  # neurons find | suppress | plot
    organism,  # organism build | train | finetune | report
    probe,  # probe
    questions,  # questions
    steer,  # steer
    sweep,  # sweep, report
)
from truthscope.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
