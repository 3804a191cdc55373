"""Where truthscope reads data from and writes caches and runs to."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path


def cache_dir() -> Path:
    """Root of truthscope's caches (converted weights, trained judges): `TRUTHSCOPE_CACHE`,
    else `$XDG_CACHE_HOME/truthscope`, else `~/.cache/truthscope`."""
    if env := os.environ.get("TRUTHSCOPE_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "truthscope"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: `--data`, else `TRUTHSCOPE_DATA`, else the copy shipped inside the package
    (`truthscope/data/files/`, see `truthscope.data.files`)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if env := os.environ.get("TRUTHSCOPE_DATA"):
        return Path(env).expanduser()
    from truthscope.data.files import packaged_data_dir

    return packaged_data_dir()


def new_run_dir(kind: str, root: str | os.PathLike = "runs") -> Path:
    """A fresh folder `runs/<kind>-<timestamp>` for a run that was given no --out."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{kind}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{kind}-{stamp}-{suffix}"
    return path
