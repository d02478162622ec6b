"""What a sandboxed child hands over, taken out of its reach.

Its scratch directory is the child's: any name in it may be a symlink to a file it wants us to
read (another student's, the test set) or a FIFO that blocks us. Each file is opened component
by component with O_NOFOLLOW (a regular file only, never blocking) and copied, up to a size cap,
into a directory only the grader can write. No imports from this package.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

EXPORTS = {"build": {"model.json": 8 << 20, "weights.npz": 512 << 20, "meta.json": 64 << 10},
           "train": {"weights.npz": 512 << 20}}


def snapshot(source: Path, target: Path, caps: dict[str, int]) -> str | None:
    """Copy the phase's files out of the child's reach; None, or what is wrong with them."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        directory = _open_dir(source)
    except OSError:
        return f"the sandbox exported no {source.name} files (out/{source.name} is missing)"
    try:
        for name, cap in caps.items():
            problem = _copy_capped(directory, name, target / name, cap)
            if problem:
                return problem
    finally:
        os.close(directory)
    return None


def _open_dir(path: Path) -> int:
    """Open each component without following a symlink the child may have planted."""
    fd = os.open(path.parents[1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in path.parts[-2:]:
            new = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = new
    except OSError:
        os.close(fd)
        raise
    return fd


def _copy_capped(directory: int, name: str, target: Path, cap: int) -> str | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError:
        return f"the sandbox exported no {name}"
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return f"the exported {name} is not a regular file"
        data_left = cap + 1
        with target.open("wb") as out:
            while data_left > 0 and (chunk := source.read(min(1 << 20, data_left))):
                out.write(chunk)
                data_left -= len(chunk)
    if data_left <= 0:
        return f"the exported {name} is larger than {cap >> 20} MB"
    os.chmod(target, 0o600)
    return None
