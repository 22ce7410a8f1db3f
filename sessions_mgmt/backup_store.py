"""Backup files: encryption in chunks, checksums, and the storage they live in.

File format (".cfbk", version 1), so a large archive never has to sit in memory at once:

    b"CFBK1\\n"                                   magic, 6 bytes
    repeated: 4-byte big-endian length N, then N bytes of one Fernet token

Each token encrypts `struct(">QB", index, last) + chunk` (chunks of CHUNK_SIZE plaintext bytes):
the index and the "last" flag inside the authenticated plaintext make a reordered, dropped or
truncated file fail to decrypt, not restore half an archive. Fernet (fleet.fields, keys from
FIELD_ENCRYPTION_KEYS, the first encrypts, all decrypt) authenticates every chunk.

`sha256` in the Backup row is the SHA-256 of the stored file bytes (what is on disk or in S3), so a
restore checks the file before it decrypts anything; the manifest also records the SHA-256 of
the plaintext archive.

Storage: FileSystemStorage at settings.FLEET_BACKUP_DIR, or S3-compatible storage through
django-storages when FLEET_BACKUP_S3_BUCKET is set (docs/backups.md lists the variables).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from functools import lru_cache

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage

from fleet.fields import decrypt_bytes, encrypt_bytes

MAGIC = b"CFBK1\n"
CHUNK_SIZE = 4 * 1024 * 1024
_HEAD = struct.Struct(">QB")
_LEN = struct.Struct(">I")


class BackupCorrupt(Exception):
    """The stored file does not match its checksum or does not decrypt."""


# --- storage --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def backup_storage() -> Storage:
    bucket = settings.FLEET_BACKUP_S3_BUCKET
    if bucket:
        from storages.backends.s3 import S3Storage  # needs boto3 installed

        return S3Storage(
            bucket_name=bucket,
            location=settings.FLEET_BACKUP_S3_PREFIX,
            endpoint_url=settings.FLEET_BACKUP_S3_ENDPOINT_URL or None,
            region_name=settings.FLEET_BACKUP_S3_REGION or None,
            access_key=settings.FLEET_BACKUP_S3_ACCESS_KEY_ID or None,
            secret_key=settings.FLEET_BACKUP_S3_SECRET_ACCESS_KEY or None,
            default_acl="private",
            file_overwrite=False,
            querystring_auth=True,
        )
    return FileSystemStorage(location=settings.FLEET_BACKUP_DIR, file_permissions_mode=0o600)


def scratch_dir() -> str:
    """Local working space for a backup on its way to storage (never under /tmp's tmpfs)."""
    path = settings.FLEET_BACKUP_SCRATCH_DIR or os.path.join(settings.FLEET_BACKUP_DIR, ".scratch")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


# --- encryption -----------------------------------------------------------------------------


def rechunk(chunks: Iterable[bytes], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    buf = bytearray()
    for chunk in chunks:
        if not chunk:
            continue
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def encrypt_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Encrypt a byte stream into the framed format, one Fernet token per CHUNK_SIZE."""
    yield MAGIC
    index = 0
    pending: bytes | None = None
    for chunk in rechunk(chunks):
        if pending is not None:
            token = encrypt_bytes(_HEAD.pack(index, 0) + pending)
            yield _LEN.pack(len(token)) + token
            index += 1
        pending = chunk
    token = encrypt_bytes(_HEAD.pack(index, 1) + (pending or b""))
    yield _LEN.pack(len(token)) + token


def decrypt_stream(fh) -> Iterator[bytes]:
    """Plaintext chunks of a framed file; raises BackupCorrupt on any tampering."""
    if fh.read(len(MAGIC)) != MAGIC:
        raise BackupCorrupt("not a Clawfleet backup file")
    expected = 0
    while True:
        head = fh.read(_LEN.size)
        if not head:
            raise BackupCorrupt("backup file is truncated")
        if len(head) != _LEN.size:
            raise BackupCorrupt("backup file is truncated")
        (length,) = _LEN.unpack(head)
        token = fh.read(length)
        if len(token) != length:
            raise BackupCorrupt("backup file is truncated")
        try:
            plain = decrypt_bytes(token)
        except InvalidToken as exc:
            raise BackupCorrupt("backup chunk does not decrypt") from exc
        index, last = _HEAD.unpack(plain[: _HEAD.size])
        if index != expected:
            raise BackupCorrupt("backup chunks out of order")
        yield plain[_HEAD.size :]
        expected += 1
        if last:
            if fh.read(1):
                raise BackupCorrupt("data after the last chunk")
            return


# --- compression ----------------------------------------------------------------------------


def is_gzip(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b"


def gzip_stream(chunks: Iterable[bytes], level: int = 6) -> Iterator[bytes]:
    comp = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


def gunzip_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in chunks:
        out = dec.decompress(chunk)
        if out:
            yield out
    tail = dec.flush()
    if tail:
        yield tail


class IterReader:
    """A file-like object over an iterator of bytes (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


# --- write and read -------------------------------------------------------------------------


class WrittenFile:
    def __init__(self, name: str, size: int, sha256: str, plain_sha256: str, plain_size: int):
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.plain_sha256 = plain_sha256
        self.plain_size = plain_size


def write_encrypted(name: str, plaintext: Iterable[bytes]) -> WrittenFile:
    """Encrypt `plaintext` (an already compressed archive) into storage under `name`.

    Streams through a scratch file (one chunk in memory at a time), hashing both sides."""
    plain_hash, plain_size = hashlib.sha256(), 0

    def counted(chunks):
        nonlocal plain_size
        for c in chunks:
            plain_hash.update(c)
            plain_size += len(c)
            yield c

    file_hash, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=scratch_dir(), suffix=".cfbk") as tmp:
        for block in encrypt_stream(counted(plaintext)):
            file_hash.update(block)
            size += len(block)
            tmp.write(block)
        tmp.flush()
        tmp.seek(0)
        storage = backup_storage()
        saved = storage.save(name, File(tmp, name=os.path.basename(name)))
    return WrittenFile(saved, size, file_hash.hexdigest(), plain_hash.hexdigest(), plain_size)


def file_sha256(name: str) -> str:
    digest = hashlib.sha256()
    with backup_storage().open(name, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(name: str, sha256: str) -> None:
    storage = backup_storage()
    if not name or not storage.exists(name):
        raise BackupCorrupt("the backup file is missing")
    if not sha256 or file_sha256(name) != sha256:
        raise BackupCorrupt("the backup file does not match its checksum")


def open_plaintext(name: str) -> Iterator[bytes]:
    """Decrypted chunks of a stored backup (check the checksum first)."""
    with backup_storage().open(name, "rb") as fh:
        yield from decrypt_stream(fh)


def delete(name: str) -> None:
    if name:
        storage = backup_storage()
        if storage.exists(name):
            storage.delete(name)


__all__ = [
    "BackupCorrupt",
    "IterReader",
    "backup_storage",
    "decrypt_stream",
    "delete",
    "encrypt_stream",
    "gunzip_stream",
    "gzip",
    "gzip_stream",
    "is_gzip",
    "open_plaintext",
    "verify_checksum",
    "write_encrypted",
]
