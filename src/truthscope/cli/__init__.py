"""Command line: `truthscope <command>`. Each command module registers itself on `app`."""

from truthscope.cli import mc  # noqa: F401  (registers `mc`)
from truthscope.cli import generation  # noqa: F401  (registers `gen`, `score`, `judge`)
from truthscope.cli import probe  # noqa: F401  (registers `probe`, `latent`, `steer`)
from truthscope.cli import neurons  # noqa: F401  (registers `neurons find|suppress|plot`)
from truthscope.cli import sweep  # noqa: F401  (registers `sweep`, `report`)
from truthscope.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
