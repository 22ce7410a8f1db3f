"""Incremental points (backup_store.write_point): deduplicated, encrypted blocks; each point
restores on its own; keys rotate."""

import io
import os
import sqlite3
import tarfile

import pytest

from sessions_mgmt import backup_store


def _sqlite_bytes(tmp_path, rows: int) -> bytes:
    path = tmp_path / f"db-{rows}.sqlite"
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    db.execute("create table t (id integer primary key, body text)")
    db.executemany(
        "insert into t (body) values (?)", [(f"message {i} " + "x" * 200,) for i in range(rows)]
    )
    db.commit()
    db.execute("vacuum")
    db.close()
    return path.read_bytes()


def _canonical(tmp_path, data: bytes) -> list:
    path = tmp_path / "canonical.sqlite"
    path.write_bytes(data)
    db = sqlite3.connect(path)
    try:
        schema = sorted(db.execute("select type, name, tbl_name, sql from sqlite_master"))
        tables = [r[1] for r in schema if r[0] == "table"]
        return [
            schema,
            *(db.execute(f'select rowid, * from "{t}" order by rowid').fetchall() for t in tables),  # noqa: S608
        ]
    finally:
        db.close()
        path.unlink()


def _archive(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _files_of(chunks) -> dict[str, bytes]:
    data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_a_second_point_stores_only_what_changed_and_both_points_restore_whole(tmp_path):
    big = os.urandom(3 * 1024 * 1024)
    state1 = {
        "root/openclaw.json": b"{}",
        "root/agents/main/agent/openclaw-agent.sqlite": _sqlite_bytes(tmp_path, 5000),
        "root/workspace/big.bin": big,
    }
    p1 = backup_store.write_point("t/p1", [_archive(state1)], None)
    state2 = {**state1}
    state2["root/agents/main/agent/openclaw-agent.sqlite"] = _sqlite_bytes(tmp_path, 5010)
    p2 = backup_store.write_point("t/p2", [_archive(state2)], p1.index)
    assert p1.new_bytes > 3 * 1024 * 1024
    assert p2.new_bytes < 0.05 * p1.new_bytes, (p2.new_bytes, p1.new_bytes)

    db = "root/agents/main/agent/openclaw-agent.sqlite"
    for point, state in ((p1, state1), (p2, state2)):
        index = backup_store.read_point(point.index_name, point.index_sha256)
        files = _files_of(backup_store.point_tar(index))
        # The database comes back with the same schema and rows (rebuilt: its own pages).
        assert _canonical(tmp_path, files.pop(db)) == _canonical(tmp_path, state[db])
        assert files == {k: v for k, v in state.items() if k != db}
    # The second point names the first one's pack: it restores without any other index.
    assert p1.pack["name"] in p2.index.pack_names()


def _flip(path, pos: int) -> None:
    with open(path, "r+b") as fh:
        data = bytearray(fh.read())
        data[pos] ^= 1
        fh.seek(0)
        fh.write(bytes(data))


def test_a_flipped_byte_in_a_pack_or_the_index_is_refused(tmp_path, settings):
    p1 = backup_store.write_point("t/p1", [_archive({"r/openclaw.json": b"{}" * 5000})], None)
    _flip(os.path.join(settings.FLEET_BACKUP_DIR, p1.index_name), -5)
    with pytest.raises(backup_store.BackupCorrupt):
        backup_store.read_point(p1.index_name, p1.index_sha256)
    p2 = backup_store.write_point("t/p2", [_archive({"r/openclaw.json": b"[]" * 5000})], None)
    _flip(os.path.join(settings.FLEET_BACKUP_DIR, p2.pack["name"]), 40)
    index = backup_store.read_point(p2.index_name, p2.index_sha256)
    with pytest.raises(backup_store.BackupCorrupt):
        backup_store.verify_packs(index)
    with pytest.raises(backup_store.BackupCorrupt):
        b"".join(backup_store.point_tar(index))


def test_after_a_key_rotation_old_points_restore_and_new_points_use_the_new_key(settings):
    from cryptography.fernet import Fernet

    old, new = settings.BACKUP_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    state = {"r/openclaw.json": b"{}", "r/data": os.urandom(200_000)}
    p1 = backup_store.write_point("t/p1", [_archive(state)], None)
    settings.BACKUP_ENCRYPTION_KEYS = [new, old]
    index = backup_store.read_point(p1.index_name, p1.index_sha256)
    assert _files_of(backup_store.point_tar(index)) == state
    # The next point does not lean on blocks sealed by the retiring key.
    p2 = backup_store.write_point("t/p2", [_archive(state)], index)
    assert p2.pack is not None and p2.pack["key"] == backup_store.key_id(new)
    assert p2.index.pack_names() == [p2.pack["name"]]
    settings.BACKUP_ENCRYPTION_KEYS = [new]
    with pytest.raises(backup_store.BackupCorrupt):
        b"".join(backup_store.point_tar(index))
    again = backup_store.read_point(p2.index_name, p2.index_sha256)
    assert _files_of(backup_store.point_tar(again)) == state


def test_a_full_backup_sealed_with_the_old_field_keys_still_decrypts(settings):
    from cryptography.fernet import Fernet

    token = Fernet(settings.FIELD_ENCRYPTION_KEYS[0].encode()).encrypt(b"\0" * 9 + b"hi")
    assert backup_store.decrypt_bytes(token).endswith(b"hi")
    # New files are sealed with the backup key, which the field keys cannot open.
    sealed = backup_store.encrypt_bytes(b"x")
    from cryptography.fernet import InvalidToken, MultiFernet

    with pytest.raises(InvalidToken):
        MultiFernet([Fernet(k.encode()) for k in settings.FIELD_ENCRYPTION_KEYS]).decrypt(sealed)


def test_the_offline_session_list_is_found_among_log_lines_and_a_trailing_notice():
    from sessions_mgmt.services.backups import _sessions_document

    out = (
        b'[plugins] {loaded} 14\n{"sessions": [{"key": "agent:main:a"}], "count": 1}\nnotice {x}\n'
    )
    assert _sessions_document(out) == {"sessions": [{"key": "agent:main:a"}], "count": 1}
    assert _sessions_document(b"no json here") is None


def _write_v1_point(base: str, files: dict[str, bytes]) -> backup_store.WrittenPoint:
    """A point in format 1 as the code before row chunks wrote it: databases as page blocks,
    the index as fixed-width ids and locations."""
    import hashlib
    import json
    import zlib

    from django.core.files.base import ContentFile

    storage = backup_store.backup_storage()
    pack = bytearray(backup_store.PACK_MAGIC)
    members, ids, locs = [], [], {}
    for name, data in files.items():
        size = backup_store._block_size(data[:100])
        blocks = [data[i : i + size] for i in range(0, len(data), size)]
        for block in blocks:
            bid = hashlib.sha256(block).digest()[: backup_store.ID_LEN]
            ids.append(bid)
            if bid not in locs:
                blob = backup_store.seal(zlib.compress(block), aad=bid)
                locs[bid] = (0, len(pack) + 4, len(blob))
                pack += len(blob).to_bytes(4, "big") + blob
        members.append(
            {
                "n": name,
                "t": "0",
                "m": 0o600,
                "u": 0,
                "g": 0,
                "un": "",
                "gn": "",
                "mt": 0,
                "l": "",
                "s": len(data),
                "b": len(blocks),
            }
        )
    pack_name = storage.save(f"{base}.pack", ContentFile(bytes(pack), name="pack"))
    packs = [
        {
            "name": pack_name,
            "sha256": hashlib.sha256(pack).hexdigest(),
            "size": len(pack),
            "key": backup_store.current_key_id(),
        }
    ]
    head = json.dumps({"v": 1, "members": members, "packs": packs, "unique": len(locs)}).encode()
    raw = len(head).to_bytes(4, "big") + head + b"".join(ids)
    raw += b"".join(bid + backup_store._LOC.pack(*loc) for bid, loc in locs.items())
    sealed = backup_store.POINT_MAGIC + backup_store.seal(
        zlib.compress(raw), aad=backup_store.POINT_MAGIC
    )
    name = storage.save(f"{base}.cfpt", ContentFile(sealed, name="index"))
    return backup_store.WrittenPoint(
        index_name=name,
        index_sha256=hashlib.sha256(sealed).hexdigest(),
        index_size=len(sealed),
        pack=packs[0],
        index=None,
        stats={},
    )


def test_a_point_of_format_1_still_restores_byte_for_byte_and_feeds_the_next_point(tmp_path):
    state = {
        "r/openclaw.json": b"{}",
        "r/agents/main/agent/openclaw-agent.sqlite": _sqlite_bytes(tmp_path, 300),
        "r/workspace/big.bin": os.urandom(200_000),
    }
    old = _write_v1_point("t/v1", state)
    index = backup_store.read_point(old.index_name, old.index_sha256)
    assert _files_of(backup_store.point_tar(index)) == state
    # The next (format 2) point reuses the old point's file blocks, not its pages.
    new = backup_store.write_point("t/v2", [_archive(state)], index)
    assert old.pack["name"] in new.index.pack_names()
    assert new.stats["new_plain_bytes"] < 200_000
