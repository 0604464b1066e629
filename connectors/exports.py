"""Finding and opening an official data export: a .zip, its unpacked folder, or the bare JSON file.

:func:`locate_export` finds the export's main file (``conversations.json``) and returns an
:class:`Export`, which opens it or a file beside it (``message_feedback.json``), whichever form
the export is in, and turns every way of failing to read it into one ``ConnectorError`` line.
"""

from __future__ import annotations

import posixpath
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from connectors.json_stream import CHUNK_SIZE, MAX_ITEM_MB, JsonStreamError, iter_json_array
from connectors.records import ConnectorError

_ENCRYPTED = 0x1  # general purpose bit 0 of a zip entry: the member is encrypted


@dataclass(frozen=True)
class Export:
    """Where an export's JSON file is: ``member`` inside the zip at ``path``, or ``path`` itself."""

    source: str
    path: Path
    member: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    def sibling_where(self, name: str) -> str:
        if self.member:
            return f"{self.path}:{self._sibling_member(name)}"
        return str(self.path.with_name(name))

    def files(self, *siblings: str) -> dict[str, Path]:
        """The files to fingerprint: the zip, or the JSON file plus the siblings that exist."""
        if self.member:
            return {self.path.name: self.path}
        found = {self.path.name: self.path}
        for name in siblings:
            if self.path.with_name(name).is_file():
                found[name] = self.path.with_name(name)
        return found

    @contextmanager
    def open(self, sibling: str | None = None) -> Iterator[IO[bytes] | None]:
        """The main file, or the named file beside it (None when that one is absent)."""
        where = self.sibling_where(sibling) if sibling else self.where
        with self._errors(where):
            if self.member:
                with zipfile.ZipFile(self.path) as archive:
                    member = self._sibling_member(sibling) if sibling else self.member
                    if member not in archive.namelist():
                        yield None
                        return
                    if archive.getinfo(member).flag_bits & _ENCRYPTED:
                        problem = "encrypted (password-protected); unzip the export and point `path` at the folder"
                        raise ConnectorError(self.source, f"{where}: {problem}")
                    with archive.open(member) as stream:
                        yield stream
            else:
                path = self.path.with_name(sibling) if sibling else self.path
                if sibling and not path.is_file():
                    yield None
                    return
                with path.open("rb") as stream:
                    yield stream

    def stream_array(self, chunk_size: int = CHUNK_SIZE) -> Iterator[Any]:
        """The elements of the main file's top-level JSON array (BadElement for broken ones)."""
        with self.open() as stream:
            assert stream is not None
            yield from iter_json_array(stream, chunk_size, MAX_ITEM_MB << 20)

    def _sibling_member(self, name: str) -> str:
        return posixpath.join(posixpath.dirname(self.member or ""), name)

    @contextmanager
    def _errors(self, where: str) -> Iterator[None]:
        try:
            yield
        except JsonStreamError as e:
            problem = f"{e}; check that this is a complete, unmodified export"
            raise ConnectorError(self.source, f"{where}: {problem}") from e
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
            problem = f"the zip is corrupt ({e}); download the export again"
            raise ConnectorError(self.source, f"{where}: {problem}") from e
        except OSError as e:
            raise ConnectorError(self.source, f"{where}: cannot read it ({e.strerror or e})") from e


def locate_export(source: str, path: Path, name: str) -> Export:
    """Find the export's ``name`` (conversations.json) in a .zip, in a folder, or at ``path``."""
    hint = f"point `path` at the export .zip or its {name}"
    if path.is_dir():
        if not (path / name).is_file():
            raise ConnectorError(source, f"{path}: no {name} in this folder; {hint}")
        return Export(source, path / name)
    if not path.is_file():
        raise ConnectorError(source, f"{path}: not found; {hint}")
    if not _looks_like_zip(source, path):
        return Export(source, path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        problem = f"not a readable zip ({e}); download the export again"
        raise ConnectorError(source, f"{path}: {problem}") from e
    candidates = sorted((n for n in names if posixpath.basename(n) == name), key=lambda n: (n.count("/"), n))
    if not candidates:
        raise ConnectorError(source, f"{path}: the zip holds no {name}; is this the right export?")
    return Export(source, path, candidates[0])


def _looks_like_zip(source: str, path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ConnectorError(source, f"{path}: cannot read it ({e.strerror or e})") from e
    return path.suffix.lower() == ".zip" or head.startswith(b"PK")
