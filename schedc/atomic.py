"""Write files so a crash or an error never leaves a half-finished output behind."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from schedc.errors import OutputError


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over the target only on success."""
    target = Path(target)
    check_output(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def atomic_savez(target: str | os.PathLike, arrays: dict, compressed: bool = True) -> Path:
    """Arrays into one .npz at `target`, written to a temporary file and renamed (never half a file)."""
    import numpy as np

    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return Path(target)


def check_output(target: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse, before any work, an output that is a directory, sits where nothing can be written, or
    is one of the command's own inputs (no command ever overwrites what it read)."""
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"output {target} is a directory: give a file name")
    for source in inputs:
        source = Path(source)
        if source.exists() and (target.exists() and os.path.samefile(source, target)
                                or source.resolve() == target.resolve()):
            raise OutputError(f"output {target} is also an input of this command: refusing to overwrite it")
    parent = target.parent if str(target.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: {existing} is not a writable directory")
    return target
