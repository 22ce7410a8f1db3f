"""Backup files: encryption in chunks, checksums, and the storage they live in.

File format (".cfbk", version 1), so a large archive never has to sit in memory at once:

    b"CFBK1\\n"                                   magic, 6 bytes
    repeated: 4-byte big-endian length N, then N bytes of one Fernet token

Each token encrypts `struct(">QB", index, last) + chunk` (chunks of CHUNK_SIZE plaintext bytes):
the index and the "last" flag inside the authenticated plaintext make a reordered, dropped or
truncated file fail to decrypt, not restore half an archive. Fernet with the backups' own keys
(BACKUP_ENCRYPTION_KEYS: the first encrypts, all decrypt) authenticates every chunk; a file
written before backups had their own keys (with FIELD_ENCRYPTION_KEYS) still decrypts.

Incremental points (".cfpt", see `write_point`): the same archive cut into blocks (SQLite
databases as chunks of their rows, point_rows; 64 KiB blocks for other files; format 1, still
read, held databases as pages), each block compressed and sealed with AES-256-GCM under a key
derived from the first backup key; a point stores only the blocks no earlier point of the
instance holds (one "pack" object), plus an index naming every block of the state. Each index is
self-contained: a point restores from its index and the packs it names, never from another index.

`sha256` in the Backup row is the SHA-256 of the stored file bytes (what is on disk or in S3), so a
restore checks the file before it decrypts anything; the manifest also records the SHA-256 of
the plaintext archive.

Storage: FileSystemStorage at settings.FLEET_BACKUP_DIR, or S3-compatible storage through
django-storages when FLEET_BACKUP_S3_BUCKET is set (docs/backups.md lists the variables).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage

from . import point_rows

log = logging.getLogger(__name__)

MAGIC = b"CFBK1\n"
CHUNK_SIZE = 4 * 1024 * 1024
_HEAD = struct.Struct(">QB")
_LEN = struct.Struct(">I")


class BackupCorrupt(Exception):
    """The stored file does not match its checksum or does not decrypt."""


class StoreUnavailable(Exception):
    """The backup storage did not answer (down, unreachable, refusing): the backup is retried."""


# --- keys -----------------------------------------------------------------------------------


def _backup_keys() -> list[str]:
    keys = [k for k in getattr(settings, "BACKUP_ENCRYPTION_KEYS", []) if k]
    if not keys:
        raise RuntimeError("BACKUP_ENCRYPTION_KEYS is empty: backups cannot be encrypted")
    return keys


def key_id(key: str) -> str:
    """A short public fingerprint of a key (which key sealed a backup), never the key."""
    return hashlib.sha256(b"clawfleet-backup-key-id:" + key.encode()).hexdigest()[:16]


def current_key_id() -> str:
    return key_id(_backup_keys()[0])


def _fernet_encrypt() -> Fernet:
    return Fernet(_backup_keys()[0].encode())


def _fernet_decrypt() -> MultiFernet:
    """Every backup key, then the field keys (backups written before backups had their own)."""
    keys = list(dict.fromkeys([*_backup_keys(), *settings.FIELD_ENCRYPTION_KEYS]))
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt_bytes(data: bytes) -> bytes:
    return _fernet_encrypt().encrypt(data)


def decrypt_bytes(token: bytes) -> bytes:
    return _fernet_decrypt().decrypt(token)


@lru_cache(maxsize=16)
def _aead(key: str) -> AESGCM:
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"clawfleet-backup-blocks-v1"
    ).derive(key.encode())
    return AESGCM(raw)


def _aead_for(kid: str) -> AESGCM:
    for key in _backup_keys():
        if key_id(key) == kid:
            return _aead(key)
    raise BackupCorrupt("the key that sealed this backup is not among BACKUP_ENCRYPTION_KEYS")


def seal(data: bytes, aad: bytes = b"") -> bytes:
    """AES-256-GCM under the first backup key: key id (8 bytes), nonce (12), ciphertext+tag."""
    kid = current_key_id()
    nonce = os.urandom(12)
    return bytes.fromhex(kid) + nonce + _aead(_backup_keys()[0]).encrypt(nonce, data, aad)


def unseal(blob: bytes, aad: bytes = b"") -> bytes:
    if len(blob) < 8 + 12 + 16:
        raise BackupCorrupt("sealed block is truncated")
    try:
        return _aead_for(blob[:8].hex()).decrypt(blob[8:20], blob[20:], aad)
    except InvalidTag as exc:
        raise BackupCorrupt("backup block does not decrypt") from exc


# --- storage --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def backup_storage() -> Storage:
    bucket = settings.FLEET_BACKUP_S3_BUCKET
    if bucket:
        from botocore.config import Config
        from storages.backends.s3 import S3Storage

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
            # A store that is down fails the backup within seconds (it is retried by the next
            # run), instead of hanging a worker.
            client_config=Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
    return FileSystemStorage(location=settings.FLEET_BACKUP_DIR, file_permissions_mode=0o600)


def is_off_machine() -> bool:
    return bool(settings.FLEET_BACKUP_S3_BUCKET)


def storage_description() -> str:
    """Where backups are kept, in words for the dashboard and admin (no credentials)."""
    if is_off_machine():
        endpoint = settings.FLEET_BACKUP_S3_ENDPOINT_URL
        where = f"s3://{settings.FLEET_BACKUP_S3_BUCKET}/{settings.FLEET_BACKUP_S3_PREFIX}"
        return f"Object storage {where}" + (" (S3-compatible)" if endpoint else " (AWS S3)")
    return "This machine's disk (development default)"


def instance_location(organization_id, instance_hex: str) -> str:
    """The prefix an instance's backups live under, as a URL-like string for staff."""
    rel = f"org-{organization_id}/{instance_hex}/"
    if is_off_machine():
        return f"s3://{settings.FLEET_BACKUP_S3_BUCKET}/{settings.FLEET_BACKUP_S3_PREFIX}/{rel}"
    return os.path.join(settings.FLEET_BACKUP_DIR, rel)


def object_location(name: str) -> str:
    """Where one stored object is, as a URL-like string for staff."""
    if is_off_machine():
        return f"s3://{settings.FLEET_BACKUP_S3_BUCKET}/{settings.FLEET_BACKUP_S3_PREFIX}/{name}"
    return os.path.join(settings.FLEET_BACKUP_DIR, name)


def _unavailable(exc: Exception) -> bool:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a requirement
        return False
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code not in ("NoSuchKey", "404")
    return isinstance(exc, BotoCoreError | ConnectionError)


def store_errors(fn):
    """Storage failures (the object store down or refusing) become StoreUnavailable."""
    from functools import wraps

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (BackupCorrupt, StoreUnavailable):
            raise
        except Exception as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"backup storage unavailable: {type(exc).__name__}") from exc
            raise

    return wrapper


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


@store_errors
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


@store_errors
def file_sha256(name: str) -> str:
    digest = hashlib.sha256()
    with backup_storage().open(name, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


@store_errors
def verify_checksum(name: str, sha256: str) -> None:
    storage = backup_storage()
    if not name or not storage.exists(name):
        raise BackupCorrupt("the backup file is missing")
    if not sha256 or file_sha256(name) != sha256:
        raise BackupCorrupt("the backup file does not match its checksum")


def open_plaintext(name: str) -> Iterator[bytes]:
    """Decrypted chunks of a stored backup (check the checksum first)."""
    try:
        with backup_storage().open(name, "rb") as fh:
            yield from decrypt_stream(fh)
    except (BackupCorrupt, StoreUnavailable):
        raise
    except Exception as exc:
        if _unavailable(exc):
            raise StoreUnavailable(f"backup storage unavailable: {type(exc).__name__}") from exc
        raise


@store_errors
def delete(name: str) -> None:
    if name:
        storage = backup_storage()
        if storage.exists(name):
            storage.delete(name)


# --- incremental points: deduplicated blocks ---------------------------------------------------

POINT_MAGIC = b"CFPT1\n"  # format 1: SQLite databases as page blocks (still read)
POINT_MAGIC_V2 = b"CFPT2\n"  # format 2: SQLite databases as row chunks (point_rows), compact index
PACK_MAGIC = b"CFPK1\n"
FILE_BLOCK = 64 * 1024
ID_LEN = 12
_LOC = struct.Struct(">HQI")
_SQLITE_HEAD = b"SQLite format 3\x00"
ROWS = "rows"  # member kind: an SQLite database stored as row chunks, rebuilt on restore


def _block_size(head: bytes) -> int:
    """SQLite databases stored as pages are cut at their page size (an unchanged page is the
    same block wherever it lands); everything else in 64 KiB blocks."""
    if head.startswith(_SQLITE_HEAD) and len(head) >= 18:
        page = int.from_bytes(head[16:18], "big")
        page = 65536 if page == 1 else page
        if 512 <= page <= 65536:
            return page
    return FILE_BLOCK


def _varints(raw: bytes, pos: int, count: int) -> tuple[list[int], int]:
    values = []
    for _ in range(count):
        value, pos = point_rows.read_varint(raw, pos)
        values.append(value)
    return values, pos


def _zz(n: int) -> int:
    return n * 2 if n >= 0 else -n * 2 - 1


def _unzz(z: int) -> int:
    return z // 2 if not z & 1 else -(z + 1) // 2


class PointIndex:
    """What one point holds: the tar members of the state in order, each file as a list of block
    ids (a database stored as rows: its row chunks), and where each block lives (pack object,
    offset, length)."""

    def __init__(self, members: list[dict], ids: list[bytes], locs: dict, packs: list[dict]):
        self.members = members
        self.ids = ids
        self.locs = locs  # id -> (pack index, offset, length)
        self.packs = packs  # [{"name", "sha256", "size", "key"}]

    def pack_names(self) -> list[str]:
        return [p["name"] for p in self.packs]

    def block_locations(self) -> dict:
        """id -> (pack dict, offset, length)."""
        return {bid: (self.packs[pi], off, ln) for bid, (pi, off, ln) in self.locs.items()}

    def to_bytes(self) -> bytes:
        """Format 2: the members as JSON, the unique block ids, their locations as varints (the
        offset as the distance from where the pack's previous block ended: mostly 0), then every
        reference as a varint delta into the unique list (mostly +1). ~16 bytes a unique block."""
        order: dict[bytes, int] = {}
        for bid in self.ids:
            if bid not in order:
                order[bid] = len(order)
        head = json.dumps(
            {"v": 2, "members": self.members, "packs": self.packs, "unique": len(order)},
            separators=(",", ":"),
        ).encode()
        var = bytearray()
        ends: dict[int, int] = {}
        for bid in order:
            pi, off, ln = self.locs[bid]
            point_rows.put_varint(pi, var)
            point_rows.put_varint(_zz(off - ends.get(pi, len(PACK_MAGIC) + _LEN.size)), var)
            point_rows.put_varint(ln, var)
            ends[pi] = off + ln + _LEN.size
        prev = -1
        for bid in self.ids:
            u = order[bid]
            point_rows.put_varint(_zz(u - prev - 1), var)
            prev = u
        body = _LEN.pack(len(head)) + head + b"".join(order) + bytes(var)
        return zlib.compress(body, 9)

    @classmethod
    def from_bytes(cls, data: bytes, version: int = 2) -> PointIndex:
        try:
            raw = zlib.decompress(data)
            (n,) = _LEN.unpack(raw[: _LEN.size])
            head = json.loads(raw[_LEN.size : _LEN.size + n])
            pos = _LEN.size + n
            count = sum(m.get("b", 0) for m in head["members"])
            unique = head["unique"]
            if version == 1:
                ids = [raw[pos + i * ID_LEN : pos + (i + 1) * ID_LEN] for i in range(count)]
                pos += count * ID_LEN
                step = ID_LEN + _LOC.size
                locs = {}
                for i in range(unique):
                    rec = raw[pos + i * step : pos + (i + 1) * step]
                    locs[rec[:ID_LEN]] = _LOC.unpack(rec[ID_LEN:])
            else:
                order = [raw[pos + i * ID_LEN : pos + (i + 1) * ID_LEN] for i in range(unique)]
                pos += unique * ID_LEN
                values, pos = _varints(raw, pos, 3 * unique)
                locs, ends = {}, {}
                for i, bid in enumerate(order):
                    pi, gap, ln = values[3 * i : 3 * i + 3]
                    off = ends.get(pi, len(PACK_MAGIC) + _LEN.size) + _unzz(gap)
                    locs[bid] = (pi, off, ln)
                    ends[pi] = off + ln + _LEN.size
                refs, pos = _varints(raw, pos, count)
                ids, prev = [], -1
                for z in refs:
                    prev = prev + 1 + _unzz(z)
                    ids.append(order[prev])
                if len(order) != unique or pos != len(raw):
                    raise ValueError("index length")
        except (zlib.error, ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
            raise BackupCorrupt("the point's index is unreadable") from exc
        if len(locs) != unique or any(b not in locs for b in ids):
            raise BackupCorrupt("the point's index is incomplete")
        if any(pi >= len(head["packs"]) for pi, _, _ in locs.values()):
            raise BackupCorrupt("the point's index names a pack it does not list")
        return cls(head["members"], ids, locs, head["packs"])

    def has_config(self) -> bool:
        return any(m["n"].endswith("openclaw.json") and m["t"] == "0" for m in self.members)

    def file_count(self) -> int:
        return sum(1 for m in self.members if m["t"] == "0")


class WrittenPoint:
    def __init__(self, *, index_name, index_sha256, index_size, pack, index, stats):
        self.index_name = index_name
        self.index_sha256 = index_sha256
        self.index_size = index_size
        self.pack = pack  # {"name", "sha256", "size", "key"} or None
        self.index = index
        self.stats = stats

    @property
    def new_bytes(self) -> int:
        return self.index_size + (self.pack["size"] if self.pack else 0)

    @property
    def names(self) -> list[str]:
        return [self.index_name] + ([self.pack["name"]] if self.pack else [])


def _blocks(data: bytes, fh, size: int) -> Iterator[bytes]:
    while True:
        while len(data) >= size:
            yield data[:size]
            data = data[size:]
        more = fh.read(max(size, FILE_BLOCK)) if fh else b""
        if not more:
            break
        data += more
    if data:
        yield data


_MEMBER_TYPES = {
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
}


class _PackWriter:
    """The new pack of a point (in local scratch until it is saved) and the block locations."""

    def __init__(self, tmp, previous: PointIndex | None):
        kid = current_key_id()
        self.known: dict[bytes, tuple[dict, int, int]] = {}
        if previous is not None:
            for bid, (pack, off, ln) in previous.block_locations().items():
                if pack.get("key") == kid:  # blocks of a retiring key are stored again
                    self.known[bid] = (pack, off, ln)
        self.tmp = tmp
        self.new_pack = {"name": "", "sha256": "", "size": 0, "key": kid}
        self.packs: list[dict] = []
        self.pack_index: dict[str, int] = {}
        self.locs: dict[bytes, tuple[int, int, int]] = {}
        self.hash = hashlib.sha256(PACK_MAGIC)
        tmp.write(PACK_MAGIC)
        self.offset = len(PACK_MAGIC)
        self.stats = {"blocks": 0, "new_blocks": 0, "state_bytes": 0, "new_plain_bytes": 0}

    def _pack_no(self, pack: dict) -> int:
        key = pack["name"] or "\0new"
        if key not in self.pack_index:
            self.pack_index[key] = len(self.packs)
            self.packs.append(pack)
        return self.pack_index[key]

    def add(self, block: bytes) -> bytes:
        bid = hashlib.sha256(block).digest()[:ID_LEN]
        self.stats["blocks"] += 1
        if bid in self.locs:
            return bid
        if bid in self.known:
            pack, off, ln = self.known[bid]
            self.locs[bid] = (self._pack_no(pack), off, ln)
            return bid
        blob = seal(zlib.compress(block, 9), aad=bid)
        framed = _LEN.pack(len(blob)) + blob
        self.tmp.write(framed)
        self.hash.update(framed)
        self.locs[bid] = (self._pack_no(self.new_pack), self.offset + _LEN.size, len(blob))
        self.offset += len(framed)
        self.stats["new_blocks"] += 1
        self.stats["new_plain_bytes"] += len(block)
        return bid


def _entry(m: tarfile.TarInfo) -> dict:
    return {
        "n": m.name,
        "t": "0" if m.isfile() else m.type.decode(),
        "m": m.mode,
        "u": m.uid,
        "g": m.gid,
        "un": m.uname,
        "gn": m.gname,
        "mt": int(m.mtime),
        "l": m.linkname,
        "s": m.size if m.isfile() else 0,
        "b": 0,
    }


def _database_ids(path: str, writer: _PackWriter) -> list[bytes] | None:
    """A database's row chunks as blocks, or None when it cannot be stored as rows (it is then
    stored as pages; blocks already added stay in the pack unused)."""
    ids: list[bytes] = []
    blocks = writer.stats["blocks"]
    try:
        for chunk in point_rows.chunks(point_rows.dump(path)):
            ids.append(writer.add(chunk))
    except point_rows.NotDumpable as exc:
        log.warning("a database of the state is stored as pages: %s", exc)
        writer.stats["blocks"] = blocks
        return None
    return ids


@store_errors
def write_point(
    base: str, archive_gz: Iterable[bytes], previous: PointIndex | None, *, rows: bool = True
) -> WrittenPoint:
    """Cut a gzipped tar (OpenClaw's consistent archive) into blocks; store the blocks that
    `previous` (the instance's last point) does not hold in one pack `<base>.pack`, then the
    index `<base>.cfpt`. SQLite databases are stored as row chunks (point_rows; with `rows`
    off, or a database rows cannot represent, as pages), other files in 64 KiB blocks. Blocks
    sealed by another key than the current first key are not reused (after a rotation the next
    point stores them again, so old keys can retire with retention)."""
    members: list[dict] = []
    per_member: list[list[bytes]] = []
    databases: list[tuple[int, str]] = []  # (member number, spooled copy)
    storage = backup_storage()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryFile(dir=scratch_dir()))
        spool = stack.enter_context(tempfile.TemporaryDirectory(dir=scratch_dir()))
        writer = _PackWriter(tmp, previous)
        reader = IterReader(gunzip_stream(archive_gz))
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for m in tar:
                if m.type not in _MEMBER_TYPES:
                    continue
                entry = _entry(m)
                ids: list[bytes] = []
                if m.isfile():
                    writer.stats["state_bytes"] += m.size
                    fh = tar.extractfile(m)
                    first = fh.read(min(FILE_BLOCK, m.size)) if fh else b""
                    if rows and m.size >= 100 and first.startswith(_SQLITE_HEAD):
                        # Spooled: whether it can be rows is known once the whole tar is read
                        # (a database beside a live -wal or -journal is stored as pages).
                        path = os.path.join(spool, f"{len(members)}.sqlite")
                        with open(path, "wb") as out:
                            out.write(first)
                            for more in iter(lambda fh=fh: fh.read(1024 * 1024), b""):
                                out.write(more)
                        databases.append((len(members), path))
                    else:
                        ids = [writer.add(b) for b in _blocks(first, fh, _block_size(first))]
                members.append(entry)
                per_member.append(ids)
        sizes = {e["n"]: e["s"] for e in members}
        for no, path in databases:
            name = members[no]["n"]
            journal = sizes.get(name + "-wal", 0) or sizes.get(name + "-journal", 0)
            ids = None if journal else _database_ids(path, writer)
            if ids is None:
                with open(path, "rb") as fh:
                    first = fh.read(FILE_BLOCK)
                    ids = [writer.add(b) for b in _blocks(first, fh, _block_size(first))]
            else:
                members[no]["k"] = ROWS
            per_member[no] = ids
            os.unlink(path)
        all_ids: list[bytes] = []
        for entry, ids in zip(members, per_member, strict=True):
            entry["b"] = len(ids)
            all_ids.extend(ids)
        new_pack = writer.new_pack
        if writer.stats["new_blocks"]:
            tmp.flush()
            tmp.seek(0)
            new_pack["name"] = storage.save(f"{base}.pack", File(tmp, name="pack"))
            new_pack["sha256"] = writer.hash.hexdigest()
            new_pack["size"] = writer.offset
    index = PointIndex(members, all_ids, writer.locs, writer.packs)
    try:
        sealed = POINT_MAGIC_V2 + seal(index.to_bytes(), aad=POINT_MAGIC_V2)
        index_name = storage.save(f"{base}.cfpt", ContentFile(sealed, name="index"))
    except Exception:
        if new_pack["name"]:
            _quiet_delete(new_pack["name"])
        raise
    return WrittenPoint(
        index_name=index_name,
        index_sha256=hashlib.sha256(sealed).hexdigest(),
        index_size=len(sealed),
        pack=new_pack if new_pack["name"] else None,
        index=index,
        stats=writer.stats,
    )


def _quiet_delete(name: str) -> None:
    with contextlib.suppress(Exception):  # best effort; the retention job sweeps leftovers
        backup_storage().delete(name)


@store_errors
def read_point(name: str, sha256: str) -> PointIndex:
    """The index of a point (format 1 or 2), after its checksum (raises BackupCorrupt,
    StoreUnavailable)."""
    storage = backup_storage()
    if not name or not storage.exists(name):
        raise BackupCorrupt("the backup index is missing")
    with storage.open(name, "rb") as fh:
        data = fh.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise BackupCorrupt("the backup index does not match its checksum")
    for version, magic in ((2, POINT_MAGIC_V2), (1, POINT_MAGIC)):
        if data.startswith(magic):
            return PointIndex.from_bytes(unseal(data[len(magic) :], aad=magic), version)
    raise BackupCorrupt("not a Clawfleet point index")


@store_errors
def verify_packs(index: PointIndex, full: list[str] | None = None) -> None:
    """Every pack the point needs is there with its checksum (a restore reads them all). With
    `full`, only those packs are read through; the others must exist with their size (a new
    point checks its own pack; the older ones were checked when written and by the proofs)."""
    storage = backup_storage()
    for pack in index.packs:
        if not storage.exists(pack["name"]):
            raise BackupCorrupt("a block pack of the backup is missing")
        if full is not None and pack["name"] not in full:
            if storage.size(pack["name"]) != pack["size"]:
                raise BackupCorrupt("a block pack of the backup has the wrong size")
            continue
        digest = hashlib.sha256()
        with storage.open(pack["name"], "rb") as fh:
            for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                digest.update(chunk)
        if digest.hexdigest() != pack["sha256"]:
            raise BackupCorrupt("a block pack of the backup does not match its checksum")


class _TarPipe:
    def __init__(self):
        self.chunks: list[bytes] = []

    def write(self, b):
        self.chunks.append(bytes(b))
        return len(b)

    def drain(self):
        chunks, self.chunks = self.chunks, []
        return chunks


def _read_blocks(ids, locs, files) -> Iterator[bytes]:
    """The blocks `ids`, read from the local copies of their packs, each checked against its id."""
    for bid in ids:
        pi, off, ln = locs[bid]
        fh = files[pi]
        fh.seek(off)
        blob = fh.read(ln)
        if len(blob) != ln:
            raise BackupCorrupt("a block pack is truncated")
        try:
            block = zlib.decompress(unseal(blob, aad=bid))
        except zlib.error as exc:
            raise BackupCorrupt("a backup block does not decompress") from exc
        if hashlib.sha256(block).digest()[:ID_LEN] != bid:
            raise BackupCorrupt("a backup block does not match its id")
        yield block


@store_errors
def point_tar(index: PointIndex) -> Iterator[bytes]:
    """The point's state as an (uncompressed) tar stream, as OpenClaw's archive held it (a
    database stored as rows is rebuilt in local scratch: the same schema and rows, its own
    pages). Its packs are copied to local scratch first, checked against their checksums."""
    storage = backup_storage()
    with contextlib.ExitStack() as stack:
        files = []
        for pack in index.packs:
            tmp = stack.enter_context(tempfile.TemporaryFile(dir=scratch_dir()))
            digest = hashlib.sha256()
            with storage.open(pack["name"], "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1024 * 1024), b""):
                    digest.update(chunk)
                    tmp.write(chunk)
            if digest.hexdigest() != pack["sha256"]:
                raise BackupCorrupt("a block pack of the backup does not match its checksum")
            files.append(tmp)
        spool = stack.enter_context(tempfile.TemporaryDirectory(dir=scratch_dir()))
        out = _TarPipe()
        pos = 0
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as dst:
            for m in index.members:
                info = tarfile.TarInfo(m["n"])
                info.type = tarfile.REGTYPE if m["t"] == "0" else m["t"].encode()
                info.mode, info.uid, info.gid = m["m"], m["u"], m["g"]
                info.uname, info.gname, info.mtime = m["un"], m["gn"], m["mt"]
                info.linkname = m["l"]
                info.size = m["s"]
                ids = index.ids[pos : pos + m["b"]]
                pos += m["b"]
                if m.get("k") == ROWS:
                    path = os.path.join(spool, "db.sqlite")
                    try:
                        point_rows.rebuild(_read_blocks(ids, index.locs, files), path)
                    except point_rows.BadStream as exc:
                        raise BackupCorrupt(
                            f"a database of the backup does not rebuild: {exc}"
                        ) from exc
                    info.size = os.path.getsize(path)
                    with open(path, "rb") as fh:
                        dst.addfile(info, fh)
                    os.unlink(path)
                else:
                    body = IterReader(_read_blocks(ids, index.locs, files))
                    dst.addfile(info, body if m["t"] == "0" else None)
                yield from out.drain()
        yield from out.drain()


def delete_names(names: Iterable[str]) -> list[str]:
    """Delete these objects; returns the ones that could not be deleted (store down)."""
    left = []
    for name in names:
        if not name:
            continue
        try:
            delete(name)
        except StoreUnavailable:
            left.append(name)
    return left


__all__ = [
    "BackupCorrupt",
    "PointIndex",
    "StoreUnavailable",
    "point_tar",
    "read_point",
    "storage_description",
    "verify_packs",
    "write_point",
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
