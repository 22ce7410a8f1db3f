"""SQLite databases as logical rows, for incremental points (backup_store.write_point).

OpenClaw's `backup create` VACUUMs its snapshot, which lays every b-tree out densely again: one
inserted row shifts every later page, so page-level dedup re-stores a third of a database after
one conversation (decision 74). Rows do not move: a database is dumped as a deterministic record
stream (header pragmas and schema, then every table's rows in b-tree order), cut into chunks at
row boundaries chosen by the rows' own content, so an unchanged run of rows is the same chunk
point after point and a new conversation changes a few chunks.

Record stream: each record is a varint length, then a one-byte kind and its payload:
    H  JSON: page_size, auto_vacuum, encoding, user_version, application_id, wal, schema rows
    T  JSON: a table, its columns in dump order, the rowid alias used (or null: WITHOUT ROWID)
    R  one row: each value as a tag byte (0 NULL, 1 integer, 2 real, 3 text, 4 blob) + payload
    E  end of the database (a truncated stream fails instead of restoring half a database)

Every table is stored as rows, the shadow tables of virtual tables (FTS5's index) included, so
the rebuilt database holds exactly the original rows without needing the virtual table's module;
index b-trees are rebuilt from their CREATE INDEX on restore.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import zlib
from collections.abc import Iterable, Iterator

# Chunk sizes (plain bytes), measured on a 1,000-session state (decision in the lead's list):
# smaller chunks re-store less around a changed row, larger ones keep the index small.
TARGET = 2 * 1024
MIN_CHUNK = 512
MAX_CHUNK = 16 * 1024
_DOUBLE = struct.Struct(">d")
_SQLITE_HEAD = b"SQLite format 3\x00"


class NotDumpable(Exception):
    """This file cannot be represented as rows faithfully (it is stored as pages instead)."""


class BadStream(Exception):
    """The record stream is damaged or incomplete."""


# --- varints and values ---------------------------------------------------------------------


def put_varint(n: int, out: bytearray) -> None:
    """LEB128, as SQLite and protobuf write it (also the point index's, backup_store)."""
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def read_varint(buf, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise BadStream("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise BadStream("varint too long")


def _encode_row(row, out: bytearray) -> None:
    for v in row:
        if v is None:
            out.append(0)
        elif type(v) is int:
            out.append(1)
            put_varint((v << 1) ^ (v >> 63), out)  # zigzag: SQLite integers are 64-bit
        elif type(v) is float:
            out.append(2)
            out += _DOUBLE.pack(v)
        elif type(v) is str:
            b = v.encode()
            out.append(3)
            put_varint(len(b), out)
            out += b
        else:
            b = bytes(v)
            out.append(4)
            put_varint(len(b), out)
            out += b


def _decode_row(buf, pos: int, end: int) -> list:
    row = []
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag == 0:
            row.append(None)
        elif tag == 1:
            z, pos = read_varint(buf, pos)
            row.append((z >> 1) ^ -(z & 1))
        elif tag == 2:
            row.append(_DOUBLE.unpack_from(buf, pos)[0])
            pos += 8
        elif tag in (3, 4):
            n, pos = read_varint(buf, pos)
            if pos + n > end:
                raise BadStream("truncated value")
            raw = bytes(buf[pos : pos + n])
            pos += n
            row.append(raw.decode() if tag == 3 else raw)
        else:
            raise BadStream("unknown value tag")
    return row


def _record(kind: bytes, payload: bytes) -> bytes:
    out = bytearray()
    put_varint(len(payload) + 1, out)
    return bytes(out) + kind + payload


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- dump -----------------------------------------------------------------------------------


def is_sqlite(head: bytes) -> bool:
    return head.startswith(_SQLITE_HEAD)


def _header(path: str) -> dict:
    with open(path, "rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not is_sqlite(head):
        raise NotDumpable("not an SQLite database")
    if head[20] != 0:
        raise NotDumpable("reserved bytes per page (page checksums or encryption)")
    return {"wal": head[18] == 2 or head[19] == 2}


def dump(path: str) -> Iterator[bytes]:
    """The database at `path` (a snapshot nobody writes) as records. Raises NotDumpable before
    the first record when the file cannot be represented as rows."""
    info = _header(path)
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, isolation_level=None)
    try:
        try:
            for pragma in ("page_size", "auto_vacuum", "encoding", "user_version"):
                info[pragma] = con.execute(f"PRAGMA {pragma}").fetchone()[0]
            info["application_id"] = con.execute("PRAGMA application_id").fetchone()[0]
            schema = con.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
            ).fetchall()
            kinds = {r[1]: (r[2], r[4]) for r in con.execute("PRAGMA table_list")}
            tables = []
            for type_, name, _tbl, sql in schema:
                if type_ != "table" or (sql or "").upper().startswith("CREATE VIRTUAL"):
                    continue
                kind, without_rowid = kinds.get(name, ("table", 0))
                cols = [
                    c[1]
                    for c in con.execute(f"PRAGMA table_xinfo({_q(name)})")
                    if c[6] in (0, 1)  # 2, 3: generated columns (computed, never inserted)
                ]
                rowid = None
                if not without_rowid:
                    free = [r for r in ("_rowid_", "rowid", "oid") if r not in cols]
                    if not free:
                        raise NotDumpable(f"table {name} hides its rowid")
                    rowid = free[0]
                tables.append((name, cols, rowid))
        except sqlite3.Error as exc:
            raise NotDumpable(f"unreadable: {exc}") from exc
        info["schema"] = schema
        yield _record(b"H", json.dumps(info, separators=(",", ":")).encode())
        for name, cols, rowid in tables:
            head = {"t": name, "c": cols, "r": rowid}
            yield _record(b"T", json.dumps(head, separators=(",", ":")).encode())
            sel = ", ".join(_q(c) for c in ([rowid] if rowid else []) + cols) or "1"
            order = f" ORDER BY {rowid}" if rowid else ""
            cur = con.execute(f"SELECT {sel} FROM {_q(name)} NOT INDEXED{order}")  # noqa: S608
            while batch := cur.fetchmany(512):
                for row in batch:
                    out = bytearray()
                    _encode_row(row, out)
                    yield _record(b"R", bytes(out))
        yield _record(b"E", b"")
    except sqlite3.Error as exc:  # e.g. text that is not UTF-8
        raise NotDumpable(f"unreadable: {exc}") from exc
    finally:
        con.close()


def chunks(records: Iterable[bytes]) -> Iterator[bytes]:
    """Records cut into chunks at record boundaries chosen by content: a chunk ends after a record
    whose CRC falls below its length (so about every TARGET bytes, big records always), at least
    MIN_CHUNK and at most MAX_CHUNK bytes (a record larger than that is a chunk of its own).
    An unchanged run of rows therefore cuts the same wherever it lies in the stream."""
    cur = bytearray()
    for rec in records:
        cur += rec
        n = len(cur)
        if n >= MAX_CHUNK or (n >= MIN_CHUNK and zlib.crc32(rec) % TARGET < len(rec)):
            yield bytes(cur)
            cur = bytearray()
    if cur:
        yield bytes(cur)


# --- rebuild --------------------------------------------------------------------------------


def _records(stream: Iterable[bytes]) -> Iterator[tuple[bytes, memoryview]]:
    buf = bytearray()
    pos = 0
    for chunk in stream:
        if pos:
            del buf[:pos]
            pos = 0
        buf += chunk
        while True:
            try:
                n, start = read_varint(buf, pos)
            except BadStream:
                break
            if start + n > len(buf):
                break
            if n < 1:
                raise BadStream("empty record")
            yield bytes(buf[start : start + 1]), memoryview(bytes(buf[start + 1 : start + n]))
            pos = start + n
    if pos != len(buf):
        raise BadStream("the record stream ends inside a record")


def rebuild(stream: Iterable[bytes], path: str) -> None:
    """Write a new database at `path` from a record stream: the same schema, pragmas and rows;
    indexes, views and triggers created after the rows; virtual tables entered into the schema
    over their stored shadow tables (no module needed). Raises BadStream."""
    records = _records(stream)
    try:
        kind, payload = next(records)
    except StopIteration:
        raise BadStream("empty record stream") from None
    if kind != b"H":
        raise BadStream("the record stream has no header")
    info = json.loads(bytes(payload))
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute(f"PRAGMA page_size={int(info['page_size'])}")
        con.execute(f"PRAGMA auto_vacuum={int(info['auto_vacuum'])}")
        encoding = str(info["encoding"])
        if encoding not in ("UTF-8", "UTF-16le", "UTF-16be"):
            raise BadStream("unknown text encoding")
        con.execute(f"PRAGMA encoding='{encoding}'")
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        # The rows came from a database that held them: its CHECKs held. The functions a newer
        # SQLite has and this one lacks (OpenClaw's schema uses octet_length) still parse.
        con.execute("PRAGMA ignore_check_constraints=ON")
        _shim_functions(con)
        con.execute("BEGIN")
        later, virtual, specials = [], [], {}
        for type_, name, tbl, sql in info["schema"]:
            if type_ == "table" and (sql or "").upper().startswith("CREATE VIRTUAL"):
                virtual.append((name, tbl, sql))
            elif type_ == "table" and name.startswith("sqlite_"):
                continue  # sqlite_sequence, sqlite_stat*: made by SQLite itself, filled below
            elif type_ == "table":
                con.execute(sql)
            elif sql:  # index, view, trigger (automatic indexes have no SQL)
                later.append(sql)
        ended = False
        table: dict | None = None
        rows: list = []
        sql = ""

        def flush():
            if rows and table is not None:
                if table["t"].startswith("sqlite_"):
                    skip = 1 if table["r"] else 0
                    specials.setdefault(table["t"], (table["c"], []))[1].extend(
                        r[skip:] for r in rows
                    )
                else:
                    con.executemany(sql, rows)
            rows.clear()

        for kind, payload in records:
            if ended:
                raise BadStream("data after the end record")
            if kind == b"R":
                if table is None:
                    raise BadStream("a row before its table")
                rows.append(_decode_row(payload, 0, len(payload)))
                if len(rows) >= 1000:
                    flush()
                continue
            flush()
            if kind == b"T":
                table = json.loads(bytes(payload))
                cols = ([table["r"]] if table["r"] else []) + table["c"]
                marks = ", ".join("?" * len(cols))
                names = ", ".join(map(_q, cols))
                sql = f"INSERT INTO {_q(table['t'])} ({names}) VALUES ({marks})"  # noqa: S608
            elif kind == b"E":
                ended = True
            else:
                raise BadStream("unknown record kind")
        if not ended:
            raise BadStream("the record stream is incomplete")
        for sql in later:
            con.execute(sql)
        _specials(con, specials)
        if virtual:
            con.execute("PRAGMA writable_schema=ON")
            for name, tbl, sql in virtual:
                con.execute(
                    "INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) "
                    "VALUES ('table', ?, ?, 0, ?)",
                    (name, tbl, sql),
                )
            con.execute("PRAGMA writable_schema=OFF")
        con.execute(f"PRAGMA user_version={int(info['user_version'])}")
        con.execute(f"PRAGMA application_id={int(info['application_id'])}")
        con.execute("COMMIT")
    except sqlite3.Error as exc:
        raise BadStream(f"the rows do not rebuild: {exc}") from exc
    finally:
        con.close()
    if info.get("wal"):
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()


def _octet_length(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return len(value)
    return len(str(value).encode())


def _shim_functions(con) -> None:
    """SQL functions of newer SQLite versions that OpenClaw's schema names (CHECK constraints),
    for an older library here: same results for the values they are given."""
    have = {r[0] for r in con.execute("PRAGMA function_list")}
    if "octet_length" not in have:
        con.create_function("octet_length", 1, _octet_length, deterministic=True)


def _specials(con, specials: dict) -> None:
    """sqlite_sequence (AUTOINCREMENT counters) and sqlite_stat* (planner statistics) as stored."""
    seq = specials.get("sqlite_sequence")
    if seq and seq[1]:
        con.execute("DELETE FROM sqlite_sequence")
        con.executemany("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", seq[1])
    stats = {k: v for k, v in specials.items() if k.startswith("sqlite_stat")}
    if stats:
        con.execute("ANALYZE")
        have = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for name, (cols, rows) in stats.items():
            if name not in have:
                continue  # this SQLite does not keep that statistic; the planner does without
            con.execute(f"DELETE FROM {_q(name)}")  # noqa: S608
            if rows:
                marks = ", ".join("?" * len(cols))
                names = ", ".join(map(_q, cols))
                con.executemany(
                    f"INSERT INTO {_q(name)} ({names}) VALUES ({marks})",  # noqa: S608
                    rows,
                )
