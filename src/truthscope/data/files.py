"""One reader for every data file, packaged or not.

A data folder is laid out like the upstream repositories (`truthfulqa/...`, `geometry_of_truth/...`).
Any file in it may be stored gzip-compressed as `NAME.gz`: the readers here take the uncompressed
relative path and read `NAME`, else `NAME.gz`. The packaged copy (`packaged_data_dir()`, sources and
licences in its `LICENSES.md`) compresses its large files; a folder such as `../shared/data` holds them
plain. Hashes are always of the uncompressed bytes, so provenance is the same for both.

Every problem raises `DataError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from truthscope.errors import DataError, LimitError
from truthscope.limits import MAX_FILE_BYTES, check_size

PACKAGE = "truthscope.data"
FOLDER = "files"  # src/truthscope/data/files/
MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class DataFile:
    path: Path  # the uncompressed path, `root/relative`, as messages and provenance name it
    text: str
    sha256: str  # of the uncompressed bytes


def packaged_data_dir() -> Path:
    """The data folder shipped inside the package (`truthscope/data/files/`)."""
    folder = resources.files(PACKAGE).joinpath(FOLDER)
    if not isinstance(folder, Path) or not (folder / MANIFEST).is_file():
        raise DataError(
            f"{folder}: the packaged data is missing (a broken install?): reinstall truthscope, "
            "or pass --data DIR / set TRUTHSCOPE_DATA"
        )
    return folder


def packaged_manifest() -> dict[str, str]:
    """The packaged copy's `MANIFEST.json`: uncompressed relative path -> SHA-256 of those bytes."""
    return json.loads((packaged_data_dir() / MANIFEST).read_text(encoding="utf-8"))


def read_data_bytes(root: str | Path, relative: str) -> bytes:
    """The uncompressed bytes of `root/relative` (or of `root/relative.gz`)."""
    path = Path(root) / relative
    try:
        check_size(path)
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None
    packed = path.with_name(path.name + ".gz")
    try:
        with gzip.open(packed) as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # a small .gz must not unpack into gigabytes
        if len(raw) > MAX_FILE_BYTES:
            raise LimitError(f"{packed}: unpacks to over the limit of {MAX_FILE_BYTES:,} bytes")
        return raw
    except FileNotFoundError:
        top = Path(relative).parts[0]
        raise DataError(f"{path}: file not found (is --data / TRUTHSCOPE_DATA the folder holding {top}/?)") from None
    except OSError as err:  # includes gzip.BadGzipFile
        raise DataError(f"{packed}: cannot read: {err.strerror or err}") from None
    except (EOFError, zlib.error) as err:
        raise DataError(f"{packed}: cannot read: not a complete gzip file ({err})") from None


def read_data(root: str | Path, relative: str, encoding: str = "utf-8-sig") -> DataFile:
    """Read `root/relative` (or `.gz`) as text, with the SHA-256 of its uncompressed bytes.

    `encoding` is "utf-8-sig" (a leading byte-order mark is dropped) or "utf-8" (kept)."""
    if encoding not in ("utf-8", "utf-8-sig"):
        raise ValueError(f"encoding must be 'utf-8' or 'utf-8-sig', not {encoding!r}")
    path = Path(root) / relative
    raw = read_data_bytes(root, relative)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: bytes that are not UTF-8 (offset {err.start})") from None
    if encoding == "utf-8-sig":
        text = text.removeprefix("\ufeff")
    return DataFile(path=path, text=text, sha256=hashlib.sha256(raw).hexdigest())


def read_data_text(root: str | Path, relative: str, encoding: str = "utf-8-sig") -> str:
    """The text of `root/relative`, else of `root/relative.gz`, decoded as UTF-8 (by default dropping a
    byte-order mark). Missing, unreadable and non-UTF-8 files raise `DataError` naming the file."""
    return read_data(root, relative, encoding).text


def data_file_sha256(root: str | Path, relative: str) -> str:
    """SHA-256 of the uncompressed bytes of `root/relative` (or `.gz`): the same for both."""
    return hashlib.sha256(read_data_bytes(root, relative)).hexdigest()
