"""Fakes for unit tests: an OpenClaw client over an in-memory session store, and one whose
store is a file in a volume of the fake runtime (backups and restores move it)."""

from __future__ import annotations

import io
import itertools
import json
import tarfile
import time
from decimal import Decimal

from instances.openclaw.client import SessionList, SessionRow, UsageRow, ms_to_dt

_ids = itertools.count(1)


class FakeOpenClaw:
    """What OpenClaw would answer for one instance, with call counters."""

    def __init__(self):
        self.sessions: dict[str, dict] = {}
        self.calls: list[str] = []
        self.usage_calls: list[list[str]] = []

    def add(
        self,
        key,
        *,
        input=100,
        output=10,
        model="mock-model",
        provider="custom",
        archived=False,
        age_days=0.0,
        messages=2,
        cost="0.000450",
    ):
        now_ms = int(time.time() * 1000) - int(age_days * 86400000)
        self.sessions[key] = {
            "updated_ms": now_ms + next(_ids),
            "input": input,
            "output": output,
            "model": model,
            "provider": provider,
            "archived": archived,
            "last_ms": now_ms,
            "messages": messages,
            "cost": Decimal(cost),
        }

    def touch(self, key, **changes):
        self.sessions[key].update(changes)
        self.sessions[key]["updated_ms"] = int(time.time() * 1000) + next(_ids)

    def _row(self, key, s):
        return SessionRow(
            key=key,
            session_id=f"sid-{key}",
            agent_id="main",
            channel="api",
            provider=s["provider"],
            model=f"{s['provider']}/{s['model']}",
            archived=s["archived"],
            updated_ms=s["updated_ms"],
            started_at=ms_to_dt(s["last_ms"] - 1000),
            last_activity_at=ms_to_dt(s["last_ms"]),
        )

    def list_sessions(self, *, since_ms=0, now_ms=None):
        self.calls.append(f"list:{since_ms}")
        rows = [
            self._row(k, s)
            for k, s in self.sessions.items()
            if not since_ms or s["updated_ms"] >= since_ms - 60000
        ]
        return SessionList(rows=rows, total_count=len(rows))

    def session_pages(self, *, since_ms=0, now_ms=None, page_size=1000):
        rows = self.list_sessions(since_ms=since_ms, now_ms=now_ms).rows
        rows.sort(key=lambda r: -r.updated_ms)
        for i in range(0, max(len(rows), 1), page_size):
            page = rows[i : i + page_size]
            yield SessionList(rows=page, total_count=len(rows), has_more=i + page_size < len(rows))

    def newest(self):
        self.calls.append("newest")
        newest = max((s["updated_ms"] for s in self.sessions.values()), default=0)
        return len(self.sessions), newest, False

    def count_sessions(self):
        self.calls.append("count")
        return len(self.sessions)

    def usage(self, keys):
        keys = list(keys)
        self.usage_calls.append(keys)
        out = {}
        for k in keys:
            s = self.sessions[k]
            out[k] = UsageRow(
                key=k,
                provider=s["provider"],
                model=s["model"],
                input=s["input"],
                output=s["output"],
                cost_usd=s["cost"],
                message_count=s["messages"],
                first_activity=ms_to_dt(s["last_ms"] - 1000),
                last_activity=ms_to_dt(s["last_ms"]),
                by_model=[(s["provider"], s["model"], s["input"], s["output"], 0, 0)],
            )
        return out

    def archive(self, keys):
        self.calls.append(f"archive:{len(keys)}")
        for k in keys:
            self.sessions[k]["archived"] = True
        return dict.fromkeys(keys, "archived")

    def delete(self, keys):
        self.calls.append(f"delete:{len(keys)}")
        for k in keys:
            self.sessions.pop(k, None)
        return dict.fromkeys(keys, "deleted")


# --- an OpenClaw whose session store lives in a volume of the fake runtime ---------------------

STORE = "agents/main/sessions/fake-store.json"  # the fake's stand-in for OpenClaw's store


class VolumeOpenClaw(FakeOpenClaw):
    """FakeOpenClaw whose sessions are a file in the instance's volume of the fake runtime, so
    a backup copies them and a restore brings the backed-up ones back, as with the real store.
    Hot backups (`backup_create` + `cat`) produce an archive in OpenClaw's own layout."""

    def __init__(self, runtime, volume: str):
        super().__init__()
        self.runtime, self.volume = runtime, volume
        self.scratch: dict[str, bytes] = {}

    def _load(self) -> None:
        raw = self.runtime.volumes[self.volume].files.get(STORE)
        data = json.loads(raw) if raw else {}
        for s in data.values():
            s["cost"] = Decimal(s["cost"])
        self.sessions = data

    def _save(self) -> None:
        data = {k: {**s, "cost": str(s["cost"])} for k, s in self.sessions.items()}
        self.runtime.volumes[self.volume].put(STORE, json.dumps(data).encode())

    def add(self, key, **kwargs):
        self._load()
        super().add(key, **kwargs)
        self._save()

    def touch(self, key, **changes):
        self._load()
        super().touch(key, **changes)
        self._save()

    def list_sessions(self, **kwargs):
        self._load()
        return super().list_sessions(**kwargs)

    def count_sessions(self):
        self._load()
        return super().count_sessions()

    def newest(self):
        self._load()
        return super().newest()

    def usage(self, keys):
        self._load()
        return super().usage(keys)

    def archive(self, keys):
        self._load()
        try:
            return super().archive(keys)
        finally:
            self._save()

    def delete(self, keys):
        self._load()
        try:
            return super().delete(keys)
        finally:
            self._save()

    # what a hot backup asks of OpenClaw
    def version(self):
        return "2026.9.6"

    def backup_create(self, out_dir: str) -> dict:
        self.calls.append("backup_create")
        root = "2026-11-25T17-21-03.433+00-00-openclaw-backup"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            entries = {"manifest.json": b"{}"}
            for rel, data in self.runtime.volumes[self.volume].files.items():
                entries[f"payload/posix/home/node/.openclaw/{rel}"] = data
            for name, data in entries.items():
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        path = f"{out_dir}/{root}.tar.gz"
        self.scratch[path] = buf.getvalue()
        return {"archivePath": path, "verified": True, "archiveRoot": root, "assets": []}

    def run(self, argv, *, timeout=None, env=None):
        if argv[:1] == ["cat"] and argv[1] in self.scratch:
            return 0, self.scratch[argv[1]], b""
        return 1, b"", b"no such file"

    def stream_file(self, path: str, *, max_bytes: int, timeout: int = 1800):
        from instances.openclaw.client import OpenClawError

        if path not in self.scratch:
            raise OpenClawError("reading the file failed (RuntimeErrorBase)")
        data = self.scratch[path]
        if len(data) > max_bytes:
            raise OpenClawError(f"the file is larger than {max_bytes} bytes", kind="too_large")
        yield data

    def remove_path(self, path: str) -> None:
        self.scratch = {k: v for k, v in self.scratch.items() if not k.startswith(path)}


def offline_sessions_program(argv, fs):
    """`openclaw sessions ... --json` in a helper container on a volume (the fake runtime's
    `programs["openclaw"]`): the keys of the volume's store."""
    from instances.runtime.types import STATE_DIR

    if argv[1:2] != ["sessions"]:
        raise NotImplementedError(f"fake openclaw cannot run {argv!r}")
    raw = fs.read(f"{STATE_DIR}/{STORE}")
    keys = sorted(json.loads(raw)) if raw else []
    return 0, json.dumps({"sessions": [{"key": k} for k in keys]}).encode(), b""
