import io

import pytest

from sessions_mgmt import backup_store
from sessions_mgmt.backup_store import MAGIC, BackupCorrupt


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(backup_store, "CHUNK_SIZE", 1000)
    monkeypatch.setattr(backup_store.rechunk, "__defaults__", (1000,))


def _frames(blob):
    """Split a framed file into (header, [frame bytes])."""
    body = blob[len(MAGIC) :]
    frames = []
    while body:
        n = int.from_bytes(body[:4], "big")
        frames.append(body[: 4 + n])
        body = body[4 + n :]
    return blob[: len(MAGIC)], frames


def test_round_trip_in_many_chunks(small_chunks):
    data = bytes(range(256)) * 40  # 10 KiB
    blob = b"".join(backup_store.encrypt_stream([data[:3000], data[3000:]]))
    _, frames = _frames(blob)
    assert len(frames) == 11
    assert b"".join(backup_store.decrypt_stream(io.BytesIO(blob))) == data


def test_an_empty_stream_still_has_a_final_chunk():
    blob = b"".join(backup_store.encrypt_stream([]))
    assert b"".join(backup_store.decrypt_stream(io.BytesIO(blob))) == b""


@pytest.mark.parametrize("tamper", ["swap", "truncate", "drop_last", "flip"])
def test_tampering_is_refused(small_chunks, tamper):
    blob = b"".join(backup_store.encrypt_stream([b"x" * 5000]))
    head, frames = _frames(blob)
    if tamper == "swap":
        frames[0], frames[1] = frames[1], frames[0]
        blob = head + b"".join(frames)
    elif tamper == "truncate":
        blob = blob[:-10]
    elif tamper == "drop_last":
        blob = head + b"".join(frames[:-1])
    else:
        blob = blob[:100] + bytes([blob[100] ^ 1]) + blob[101:]
    with pytest.raises(BackupCorrupt):
        b"".join(backup_store.decrypt_stream(io.BytesIO(blob)))


def test_written_file_checksum_is_of_the_stored_bytes_and_a_changed_file_is_refused(settings):
    written = backup_store.write_encrypted("org-1/x/test.cfbk", [b"hello archive"])
    storage = backup_store.backup_storage()
    with storage.open(written.name, "rb") as fh:
        stored = fh.read()
    import hashlib

    assert hashlib.sha256(stored).hexdigest() == written.sha256
    assert b"hello archive" not in stored  # encrypted at rest
    backup_store.verify_checksum(written.name, written.sha256)
    assert b"".join(backup_store.open_plaintext(written.name)) == b"hello archive"
    path = storage.path(written.name)
    with open(path, "r+b") as fh:
        fh.seek(20)
        fh.write(b"\x00")
    with pytest.raises(BackupCorrupt):
        backup_store.verify_checksum(written.name, written.sha256)


def test_gzip_round_trip():
    data = b"state " * 10000
    packed = b"".join(backup_store.gzip_stream([data[:7], data[7:]]))
    assert backup_store.is_gzip(packed)
    assert b"".join(backup_store.gunzip_stream([packed[:50], packed[50:]])) == data
