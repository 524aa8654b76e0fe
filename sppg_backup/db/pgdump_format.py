"""Just enough of pg_dump's custom archive format to restore table data while the archive still streams in.

The layout (PostgreSQL's pg_backup_archiver.c and pg_backup_custom.c): a header, the table of contents
(TOC), then one data block per table in TOC order. An uncompressed block is a header (byte 1, int dump id),
chunks (int length, COPY text) and a terminator (int 0). COPY text never holds a NUL byte and a chunk is
never empty, so five zero bytes occur only as a terminator: a terminator followed by a block header marks a
block boundary, and a scan for it with bytes.find keeps up with decryption.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

SECTION_PRE_DATA = 2
SECTION_POST_DATA = 4
OFFSET_NO_DATA = 3
BLOCK_DATA = 1
VERSIONS = {(1, 14), (1, 15)}  # PostgreSQL 12-15 and 16 write these; others are restored the plain way


class Unsupported(Exception):
    """An archive this module does not read: restore it with plain pg_restore from the finished file."""


@dataclass(frozen=True)
class Entry:
    dump_id: int
    desc: str
    section: int
    namespace: str
    tag: str
    has_data: bool
    deps: tuple[int, ...] = ()


@dataclass
class Toc:
    int_size: int
    length: int  # bytes of header + TOC; the first data block starts here
    entries: list[Entry] = field(default_factory=list)

    @property
    def data(self) -> list[Entry]:
        return [e for e in self.entries if e.has_data]

    def single_table_post_data(self) -> dict[int, list[int]]:
        """For each table's data entry, the post-data entries (indexes, constraints, triggers) that need only
        that table: they can run as soon as its data is in."""
        pre = {e.dump_id for e in self.entries if e.section == SECTION_PRE_DATA}
        tables = {e.dump_id for e in self.entries if e.desc == "TABLE"}
        table_data = {dep: e.dump_id for e in self.data for dep in e.deps if dep in tables}
        found: dict[int, list[int]] = {}
        for e in self.entries:
            if e.section != SECTION_POST_DATA or not set(e.deps) <= pre:
                continue
            needs = {table_data[d] for d in e.deps if d in table_data}
            if len(needs) == 1:
                found.setdefault(needs.pop(), []).append(e.dump_id)
        return found

    def terminator(self) -> bytes:
        return b"\x00" * (1 + self.int_size)

    def block_header(self, dump_id: int) -> bytes:
        return bytes([BLOCK_DATA, 0]) + dump_id.to_bytes(self.int_size, "little")


class _Reader:
    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.pos = 0
        self.int_size = 4

    def bytes(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise Unsupported("the archive ends inside its table of contents")
        self.pos += n
        return data

    def byte(self) -> int:
        return self.bytes(1)[0]

    def int(self) -> int:
        sign = self.byte()
        value = int.from_bytes(self.bytes(self.int_size), "little")
        return -value if sign else value

    def str(self) -> str | None:
        size = self.int()
        return None if size < 0 else self.bytes(size).decode("utf-8", "replace")


def read_toc(read: Callable[[int], bytes]) -> Toc:
    """Parse header and TOC through `read(n)`; raise Unsupported for a layout other than uncompressed 1.14/1.15."""
    r = _Reader(read)
    if r.bytes(5) != b"PGDMP":
        raise Unsupported("not a pg_dump custom-format archive")
    version = (r.byte(), r.byte())
    r.byte()  # revision
    r.int_size, offset_size, archive_format = r.byte(), r.byte(), r.byte()
    if version not in VERSIONS or archive_format != 1 or not 1 <= r.int_size <= 8:
        raise Unsupported(f"archive version {version[0]}.{version[1]}, format {archive_format}")
    compressed = r.byte() if version >= (1, 15) else r.int()
    if compressed:
        raise Unsupported("pg_dump compressed the data itself")
    for _ in range(7):  # creation time
        r.int()
    for _ in range(3):  # database name, server version, pg_dump version
        r.str()
    toc = Toc(int_size=r.int_size, length=0)
    for _ in range(r.int()):
        dump_id, had_dumper = r.int(), r.int()
        r.str(), r.str()  # catalog ids
        tag, desc, section = r.str() or "", r.str() or "", r.int()
        for _ in range(3):  # definition, drop and COPY statements
            r.str()
        namespace = r.str() or ""
        r.str(), r.str(), r.str(), r.str()  # tablespace, table access method, owner, "with oids"
        deps = []
        while (dep := r.str()) is not None:
            deps.append(int(dep))
        offset_flag = r.byte()
        r.bytes(offset_size)
        has_data = bool(had_dumper) and offset_flag != OFFSET_NO_DATA
        if has_data and desc != "TABLE DATA":
            raise Unsupported(f"data of kind {desc}")  # large objects have their own block layout
        toc.entries.append(Entry(dump_id, desc, section, namespace, tag, has_data, tuple(deps)))
    toc.length = r.pos
    return toc


class BlockScanner:
    """Finds where each table's data block starts, given the archive's bytes after the TOC in order."""

    def __init__(self, toc: Toc) -> None:
        self.toc = toc
        self.expected = {e.dump_id for e in toc.data}
        self._marker = toc.terminator() + bytes([BLOCK_DATA, 0])
        self._tail = b""
        self._tail_at = toc.length
        self.first = True

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        """(dump id, offset of its block header) for every block header completed by `data`."""
        found: list[tuple[int, int]] = []
        buffer = self._tail + data
        base = self._tail_at
        id_size = self.toc.int_size
        if self.first:
            header = 2 + id_size
            if len(buffer) < header:
                self._tail = buffer
                return found
            self._claim(buffer[:2], int.from_bytes(buffer[2:header], "little"), base, found)
            self.first = False
        start = 0
        while True:
            at = buffer.find(self._marker, start)
            if at < 0 or at + len(self._marker) + id_size > len(buffer):
                break
            ids = at + len(self._marker)
            dump_id = int.from_bytes(buffer[ids : ids + id_size], "little")
            self._claim(b"\x01\x00", dump_id, base + at + 1 + id_size, found)
            start = at + 1
        keep = min(len(buffer), len(self._marker) + id_size - 1 if at < 0 else len(buffer) - at)
        self._tail = buffer[len(buffer) - keep :]
        self._tail_at = base + len(buffer) - keep
        return found

    @property
    def certain(self) -> int:
        """Every block header before this offset has been reported."""
        return self._tail_at

    def _claim(self, kind: bytes, dump_id: int, offset: int, found: list[tuple[int, int]]) -> None:
        if kind != bytes([BLOCK_DATA, 0]) or dump_id not in self.expected:
            raise ValueError(f"unexpected data block at byte {offset}: the archive is corrupt")
        self.expected.discard(dump_id)
        found.append((dump_id, offset))
