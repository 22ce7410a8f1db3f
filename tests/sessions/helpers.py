"""Fakes for unit tests: an OpenClaw client over an in-memory session store."""

from __future__ import annotations

import itertools
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
