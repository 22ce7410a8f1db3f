"""SQLite databases as row chunks (point_rows): a rebuilt database holds the same schema, pragmas
and rows; a new row changes a few chunks, not the database."""

import os
import sqlite3

import pytest

from sessions_mgmt import point_rows


def _make(path, rows: int) -> None:
    if os.path.exists(path):
        os.unlink(path)
    db = sqlite3.connect(path)
    db.executescript(
        """
        pragma page_size=8192; pragma user_version=7; pragma application_id=1234;
        create table t(id integer primary key autoincrement, body text, n real, b blob,
                       g int generated always as (length(body)) virtual,
                       check (length(body) >= 0));
        create table w(k text primary key, v) without rowid;
        create table plain(a, b);
        create index ti on t(body);
        create view vv as select id, body from t;
        create virtual table f using fts5(body);
        create trigger tr after insert on t
          begin insert into f(rowid, body) values (new.id, new.body); end;
        pragma journal_mode=wal;
        """
    )
    for i in range(rows):
        db.execute(
            "insert into t(body, n, b) values (?, ?, ?)",
            (f"hello world {i} " + "x" * (i % 300), i / 3, bytes([i % 256]) * (i % 20)),
        )
    db.executemany("insert into w values (?, ?)", [(f"k{i}", i) for i in range(rows // 4)])
    db.executemany("insert into plain values (?, ?)", [(None, -i) for i in range(50)])
    db.execute("delete from t where id > ?", (rows - 10,))
    db.execute("analyze")
    db.commit()
    db.close()


def _canonical(path) -> list:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = [sorted(db.execute("select type, name, tbl_name, sql from sqlite_master"))]
        for pragma in ("page_size", "user_version", "application_id", "journal_mode", "encoding"):
            out.append(db.execute(f"pragma {pragma}").fetchone())
        tables = db.execute(
            "select name from sqlite_master where type='table' and sql not like 'CREATE VIRTUAL%'"
        ).fetchall()
        for (name,) in tables:
            out.append((name, db.execute(f'select * from "{name}"').fetchall()))  # noqa: S608
        out.append(
            db.execute("select rowid from f where f match 'world' order by rowid").fetchall()
        )
        out.append(db.execute("pragma integrity_check").fetchall())
        return out
    finally:
        db.close()


def test_a_rebuilt_database_has_the_same_schema_pragmas_rows_and_a_working_full_text_index(
    tmp_path,
):
    src, dst = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    _make(src, 3000)
    point_rows.rebuild(point_rows.chunks(point_rows.dump(str(src))), str(dst))
    assert _canonical(dst) == _canonical(src)
    db = sqlite3.connect(dst)
    db.execute("insert into f(f) values ('integrity-check')")  # FTS5's own check of its index
    # AUTOINCREMENT goes on from the stored counter, not from the rows left.
    db.execute("insert into t(body) values ('next')")
    assert db.execute("select max(id) from t").fetchone()[0] == 3001
    db.close()


def test_one_new_row_changes_a_few_chunks_of_many(tmp_path):
    path = tmp_path / "a.sqlite"
    _make(path, 3000)
    before = set(point_rows.chunks(point_rows.dump(str(path))))
    db = sqlite3.connect(path)
    db.execute("insert into t(body) values ('one more conversation')")
    db.commit()
    db.execute("vacuum")  # as OpenClaw's snapshot: every page laid out again
    db.close()
    after = list(point_rows.chunks(point_rows.dump(str(path))))
    new = [c for c in after if c not in before]
    assert len(after) > 100
    assert len(new) <= 8, len(new)


def test_a_truncated_stream_is_refused(tmp_path):
    src = tmp_path / "a.sqlite"
    _make(src, 200)
    chunks = list(point_rows.chunks(point_rows.dump(str(src))))
    with pytest.raises(point_rows.BadStream):
        point_rows.rebuild(chunks[:-1], str(tmp_path / "b.sqlite"))


def test_a_file_that_is_not_a_database_is_not_dumpable(tmp_path):
    path = tmp_path / "x.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(point_rows.NotDumpable):
        list(point_rows.dump(str(path)))
