"""Reading an .npz without trusting it: each member's .npy header is checked before its data.

``np.load`` allocates whatever a header declares, so a 300-byte file whose weights claim shape
(784, 2**24) asks for 49 GiB. Here the file, each zip member and each array have a byte limit, and
the caller's check of dtype and shape runs on the header alone, so memory stays bounded whatever
the bytes. Every failure, of the file system, zipfile, zlib or numpy's header parser, is an
ArtifactError. Private to `trainer.artifacts`, which knows the members and their limits.
"""

from __future__ import annotations

import functools
import math
import os
import stat
import struct
import tokenize
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NoReturn

import numpy as np
from numpy.typing import NDArray

from trainer._artifact_schema import ArtifactError

__all__ = ["HeaderCheck", "Member", "NpzReader", "open_npz"]

HeaderCheck = Callable[[np.dtype[Any], tuple[int, ...]], str | None]

# What damaged bytes make zipfile, zlib and numpy's header parser raise. numpy retries a header
# that is not a Python literal as a Python 2 one, through tokenize (TokenError), and warns when
# that works (under `-W error` the warning is raised). RuntimeError covers NotImplementedError
# (zipfile's unsupported features) and RecursionError.
_DAMAGED = (
    zipfile.BadZipFile, OSError, EOFError, ValueError, SyntaxError, TypeError, OverflowError,
    RuntimeError, struct.error, zlib.error, tokenize.TokenError, Warning,
)  # fmt: skip
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; the end record of an empty zip
_NPY_MAGIC = b"\x93NUMPY"
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # np.savez, np.savez_compressed
_NPY_HEADER_MAX = 16 * 1024  # numpy refuses headers over 10,000 characters; plus the preamble
_ZIP_OVERHEAD = 1024 * 1024  # zip headers, names, extra fields, a comment: generous, still bounded
_SHOWN = 5  # member names listed in a message
# zipfile parses the whole central directory into ZipInfo objects before anything can be checked
# (a 30 MB directory of 640,000 entries takes 5 s and 270 MB), so its size is bounded first.
# An artifact's directory has three entries, ~250 bytes.
_MAX_DIRECTORY = 64 * 1024
_END_RECORD = struct.Struct("<4s4H2LH")  # signature, disks, entry counts, size, offset, comment
_END_MAGIC, _ZIP64_LOCATOR_MAGIC = b"PK\x05\x06", b"PK\x06\x07"
# Format 3.0 only adds UTF-8 field names of structured dtypes, which no artifact has.
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


@dataclass(frozen=True)
class Member:
    """One member's header (dtype, shape, order) and its data: exactly the bytes declared."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran_order: bool
    data: bytes

    def array(self) -> NDArray[Any]:
        """The data as an array of the header's dtype and shape, C-contiguous."""
        flat = np.frombuffer(self.data, dtype=self.dtype)
        order: Literal["C", "F"] = "F" if self.fortran_order else "C"
        return np.ascontiguousarray(flat.reshape(self.shape, order=order))

    def text(self) -> str:
        """The string in a 0-d unicode array, trailing NULs dropped as numpy does.

        Raises UnicodeDecodeError for code points no str can hold, where numpy would raise
        SystemError.
        """
        codec = "utf-32-be" if self.dtype.str.startswith(">") else "utf-32-le"
        return self.data.decode(codec).rstrip("\0")


class NpzReader:
    """An open .npz whose member names and declared sizes are known good; see `open_npz`."""

    def __init__(self, zf: zipfile.ZipFile, where: str, limits: Mapping[str, int]) -> None:
        self._zf, self._where, self._limits = zf, where, limits

    def read(self, name: str, check: HeaderCheck) -> Member:
        """Read ``<name>.npy``: its header, then ``check(dtype, shape)``, a problem or None, then
        the data, only if the check passed and the data fits the member's limit."""
        member = f"{name}.npy"
        with _damaged(self._where):
            fp = self._zf.open(member)
        with fp:
            with _damaged(self._where):
                version = np.lib.format.read_magic(fp)
                if version not in _HEADER_READERS:
                    major, minor = version
                    self._fail(f"{member}: unsupported .npy format version {major}.{minor}")
                shape, fortran_order, dtype = _HEADER_READERS[version](fp)
            if dtype.hasobject:  # what np.load(allow_pickle=False) refuses
                self._fail(f"contains a pickled object array ({name}); refusing to load")
            if problem := check(dtype, shape):
                self._fail(problem)
            nbytes = math.prod(shape) * dtype.itemsize
            if min(shape, default=0) < 0:  # a check that compares shapes has refused it already
                self._fail(f"{member} declares shape {shape}")
            if nbytes > (limit := self._limits[name]):
                self._fail(f"{name} is too large: {nbytes} bytes, more than the {limit} allowed")
            with _damaged(self._where):
                data = fp.read(nbytes)  # never more than the member's declared size
                past_end = fp.read(1)  # also makes zipfile check the CRC, which it does at the end
        if len(data) != nbytes:
            self._fail(
                f"truncated or corrupt .npz file: {member} holds {len(data)} of the {nbytes} "
                "data bytes its header declares"
            )
        if past_end:
            self._fail(f"{member} has bytes past the end of its array")
        return Member(name, dtype, shape, fortran_order, data)

    def read_text(self, name: str) -> str:
        """Read ``<name>.npy`` as a string: a 0-d unicode array, as ``np.array(str)`` saves it."""
        member = self.read(name, functools.partial(_text_problem, name))
        try:
            return member.text()
        except UnicodeDecodeError as exc:
            self._fail(f"{name} is not valid Unicode text: {exc}")

    def _fail(self, problem: str) -> NoReturn:
        raise ArtifactError(self._where, problem)


@contextmanager
def open_npz(path: Path, where: str, limits: Mapping[str, int]) -> Iterator[NpzReader]:
    """Open ``path`` as an .npz holding exactly the members ``<name>.npy`` for each name in
    ``limits``, whose values bound each array's data in bytes.

    Refused before any member is read: anything but a regular file (a FIFO would block), a file
    larger than the limits allow, a zip with other, missing or duplicate members, a member that
    is encrypted, compressed other than by deflate, or declares more bytes than its limit.
    """
    max_size = sum(limits.values()) + len(limits) * _NPY_HEADER_MAX + _ZIP_OVERHEAD
    with _open_regular_file(path, where, max_size) as fh:
        try:
            head = fh.read(len(_NPY_MAGIC))
        except OSError as exc:
            raise ArtifactError(where, f"cannot read file: {exc}") from None
        if head.startswith(_NPY_MAGIC):
            raise ArtifactError(where, "not an .npz file (a bare .npy array)")
        if not head.startswith(_ZIP_MAGIC):
            raise ArtifactError(where, "not an .npz file")
        with _damaged(where):
            _check_directory_size(fh, where)
            fh.seek(0)
            zf = zipfile.ZipFile(fh)
        with zf:
            _check_members(zf.infolist(), where, limits)
            yield NpzReader(zf, where, limits)


@contextmanager
def _open_regular_file(path: Path, where: str, max_size: int) -> Iterator[IO[bytes]]:
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, maybe forever.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ArtifactError(where, "no such file") from None
    except OSError as exc:
        raise ArtifactError(where, f"cannot read file: {exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(where, "cannot read file: not a regular file")
        if info.st_size > max_size:
            raise ArtifactError(
                where, f"file is too large: {info.st_size} bytes, more than the {max_size} allowed"
            )
        fh = os.fdopen(fd, "rb")
    except OSError as exc:
        os.close(fd)
        raise ArtifactError(where, f"cannot read file: {exc}") from None
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def _text_problem(name: str, dtype: np.dtype[Any], shape: tuple[int, ...]) -> str | None:
    if dtype.kind != "U" or shape != ():
        return f"{name} must be a 0-d unicode array, got {dtype} of shape {shape}"
    return None


def _check_directory_size(fh: IO[bytes], where: str) -> None:
    # Finds the end record as zipfile does: at the very end, else the last one in the final 64 KiB
    # (where a comment may hide it). If there is none, zipfile says so.
    # 20 more bytes: room for the zip64 locator that would precede a record found at the start.
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(size - _END_RECORD.size - 0xFFFF - 20, 0))
    tail = fh.read()
    at = len(tail) - _END_RECORD.size
    if not (at >= 0 and tail[at : at + 4] == _END_MAGIC and tail[-2:] == b"\0\0"):
        at = tail.rfind(_END_MAGIC)
    if at < 0 or len(tail) - at < _END_RECORD.size:
        return
    if tail[max(at - 20, 0) : at].startswith(_ZIP64_LOCATOR_MAGIC):  # zipfile would trust it
        raise ArtifactError(where, "a zip64 end record, which no artifact needs; refusing to load")
    directory_size = _END_RECORD.unpack_from(tail, at)[5]
    if directory_size > _MAX_DIRECTORY:
        raise ArtifactError(
            where, f"the zip directory takes {directory_size} bytes, more than {_MAX_DIRECTORY}"
        )


def _check_members(infos: list[zipfile.ZipInfo], where: str, limits: Mapping[str, int]) -> None:
    counts = Counter(info.filename for info in infos)
    expected = {f"{name}.npy" for name in limits}
    if unexpected := sorted(set(counts) - expected):
        raise ArtifactError(where, f"unexpected members: {_listing(unexpected)}")
    if missing := sorted(expected - set(counts)):
        names = [name.removesuffix(".npy") for name in missing]
        raise ArtifactError(where, f"missing arrays: {', '.join(names)}")
    if duplicates := sorted(name for name, count in counts.items() if count > 1):
        raise ArtifactError(where, f"duplicate members: {', '.join(duplicates)}")
    for info in infos:
        name = info.filename
        if info.flag_bits & 0x1:
            raise ArtifactError(where, f"{name} is encrypted")
        if info.compress_type not in _COMPRESSIONS:
            raise ArtifactError(
                where, f"{name} uses unsupported compression method {info.compress_type}"
            )
        limit = limits[name.removesuffix(".npy")] + _NPY_HEADER_MAX
        if info.file_size > limit:  # a zip bomb: little compressed data, much uncompressed
            raise ArtifactError(
                where, f"{name} declares {info.file_size} bytes uncompressed, more than {limit}"
            )


def _listing(names: list[str]) -> str:
    shown = [name if name.isprintable() and len(name) <= 60 else ascii(name[:60]) for name in names]
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(shown[:_SHOWN]) + more


@contextmanager
def _damaged(where: str) -> Iterator[None]:
    try:
        yield
    except ArtifactError:
        raise
    except _DAMAGED as exc:
        raise ArtifactError(where, f"truncated or corrupt .npz file: {_brief(exc)}") from None


def _brief(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else f"{text[:200]}..."
