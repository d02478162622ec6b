"""An LMS download read safely: a zip or an unzipped folder as a list of members, every one
checked before anything is written (no path that climbs out, no link, no special file, sizes and
counts within limits). Nothing is extracted here: a member's bytes are read when asked, capped.
"""

from __future__ import annotations

import contextlib
import os
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 512 * 2**20  # the sandbox's own cap on a weights file
MAX_TOTAL_BYTES = 4 * 2**30
NAME_BYTES = 255  # a file or folder name: what Linux, macOS and Windows file systems hold
NOISE = ("__MACOSX", ".DS_Store", "Thumbs.db")  # what zipping on a Mac or Windows adds


class Refused(Exception):
    """The download is refused as a whole: the message says which member and why."""


@dataclass(frozen=True)
class Member:
    path: PurePosixPath  # relative, checked: no "..", not absolute
    size: int
    mtime: float  # seconds since the epoch (a zip member's time read as local time)
    read: Callable[[], bytes]


@dataclass(frozen=True)
class Limits:
    members: int = MAX_MEMBERS
    member_bytes: int = MAX_MEMBER_BYTES
    total_bytes: int = MAX_TOTAL_BYTES


LIMITS = Limits()


def members(source: Path, limits: Limits = LIMITS) -> list[Member]:
    """The files of a zip or of a folder (noise left out); Refused when any is unsafe."""
    if source.is_symlink():
        raise Refused(f"{source}: a link; give the download itself")
    if source.is_dir():
        found = _folder_members(source, limits)
    elif zipfile.is_zipfile(source):
        found = _zip_members(source, limits)
    elif source.exists():
        raise Refused(f"{source}: neither a zip nor a folder (unpack a .tar or .7z first)")
    else:
        raise Refused(f"{source}: no such file or directory")
    _check_totals(found, limits, source)
    return sorted((m for m in found if not _noise(m.path)), key=lambda m: str(m.path))


def _noise(path: PurePosixPath) -> bool:
    return any(part in NOISE or part.startswith("._") for part in path.parts)


def _checked_path(name: str, source: Path) -> PurePosixPath:
    """A member's path, refused when it is absolute or climbs out of the folder."""
    text = name.replace("\\", "/")  # zips made on Windows may use either separator
    path = PurePosixPath(text)
    if any(len(part.encode("utf-8", "surrogateescape")) > NAME_BYTES for part in path.parts):
        raise Refused(f"{source}: member {name[:80]!r}... has a name longer than {NAME_BYTES} "
                      "bytes (no file system holds it): the download is refused")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":") or ".." in path.parts:
        raise Refused(f"{source}: member {name[:200]!r} has a path that climbs out of the folder "
                      "(absolute or with ..): the download is refused, nothing was written")
    return path


def _check_size(name: str, size: int, limits: Limits, source: Path) -> None:
    if size > limits.member_bytes:
        raise Refused(f"{source}: member {name[:200]!r} is {size:,} bytes, more than the "
                      f"{limits.member_bytes:,} allowed: the download is refused")


def _check_totals(found: list[Member], limits: Limits, source: Path) -> None:
    if len(found) > limits.members:
        raise Refused(f"{source}: {len(found):,} files, more than the {limits.members:,} "
                      "allowed: the download is refused")
    total = sum(m.size for m in found)
    if total > limits.total_bytes:
        raise Refused(f"{source}: {total:,} bytes in all, more than the "
                      f"{limits.total_bytes:,} allowed: the download is refused")


def _zip_members(source: Path, limits: Limits) -> list[Member]:
    with _readable(source, "this zip"), zipfile.ZipFile(source) as archive:
        return _zip_infos(source, archive, limits)


@contextlib.contextmanager
def _readable(source: Path, what: str) -> Iterator[None]:
    """A zip that fails to read, in any of zipfile's ways (bad headers, a wrong CRC, an
    encrypted or unsupported member), is refused naming it."""
    try:
        yield
    except Refused:
        raise
    except Exception as error:  # BadZipFile, RuntimeError (encrypted), NotImplementedError...
        raise Refused(f"{source}: {what} cannot be read ({type(error).__name__}: "
                      f"{str(error)[:200]}): the download is refused") from None


def _zip_infos(source: Path, archive: zipfile.ZipFile, limits: Limits) -> list[Member]:
    found = []
    infos = archive.infolist()
    if len(infos) > limits.members:  # before looking at each one
        raise Refused(f"{source}: {len(infos):,} members, more than the "
                      f"{limits.members:,} allowed: the download is refused")
    for info in infos:
        path = _checked_path(info.filename, source)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise Refused(f"{source}: member {info.filename[:200]!r} is a link: the download is "
                          "refused, nothing was written")
        if info.is_dir():
            continue
        _check_size(info.filename, info.file_size, limits, source)
        mtime = _zip_time(info.date_time)
        found.append(Member(path, info.file_size, mtime,
                            _zip_reader(source, info.filename, info.file_size)))
    return found


def _zip_time(date_time: tuple[int, int, int, int, int, int]) -> float:
    """A member's time (zip keeps this machine's local time, no zone) as seconds since the epoch;
    an impossible date (month 0) sorts first."""
    try:
        return datetime(*date_time).timestamp()
    except (ValueError, OverflowError):
        return 0.0


def _zip_reader(source: Path, name: str, size: int) -> Callable[[], bytes]:
    def read() -> bytes:
        with _readable(source, f"member {name[:200]!r}"), zipfile.ZipFile(source) as archive, \
                archive.open(name) as member:
            data = member.read(size + 1)  # never more than it declared
        if len(data) != size:
            raise Refused(f"{source}: member {name[:200]!r} is not the size it declares")
        return data
    return read


def _folder_members(source: Path, limits: Limits) -> list[Member]:
    found = []
    for folder, dirs, names in os.walk(source, followlinks=False):
        for name in sorted(dirs + names):
            path = Path(folder, name)
            info = path.lstat()
            relative = PurePosixPath(path.relative_to(source).as_posix())
            if stat.S_ISLNK(info.st_mode):
                raise Refused(f"{source}: {relative} is a link: the download is refused, "
                              "nothing was written")
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise Refused(f"{source}: {relative} is not a regular file: refused")
            _check_size(str(relative), info.st_size, limits, source)
            found.append(Member(relative, info.st_size, info.st_mtime,
                                _file_reader(path, info.st_size)))
            if len(found) > limits.members:
                _check_totals(found, limits, source)
    return found


def _file_reader(path: Path, size: int) -> Callable[[], bytes]:
    def read() -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(size + 1)
        if len(data) != size:
            raise Refused(f"{path}: changed while it was imported")
        return data
    return read
