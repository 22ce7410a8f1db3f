"""Chargeback exports: an organization's costs over a period, grouped by client, instance,
session, model or channel, as CSV or JSON, streamed row by row.

The numbers come from the same ledger the usage endpoint reads, so the totals agree to the cent:

- compute: `UsageDay.compute_cost_usd` and `running_seconds` (per instance per day);
- LLM: for client and instance, `UsageDay.llm_cost_usd` and the token columns; for session,
  model and channel, the per-session-per-day rows (`SessionUsageDay`) of the instance-days the
  ledger holds (UsageDay's LLM columns are exactly their sums, see services.usage).

Compute time belongs to an instance, not to a conversation: grouped by session, model or
channel, each row has a `kind`, "llm" for the conversations' tokens and "compute" for the
instances' running time (one compute row per instance grouped by session, one row in all
grouped by model or channel), so that summing a column gives the period's total.

A "client" is the instance's `client_name` (an agency names the client it resells the instance
to; docs/decisions.md 75); instances without one are grouped under the empty client.

Nothing is loaded whole: every query is a `.values()` aggregate read with `.iterator()`, and the
writers yield one line (CSV) or one object (JSON) at a time. docs/billing.md lists the columns.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Exists, F, OuterRef, Sum

from ..models import SessionUsageDay, UsageDay

ROW_KINDS = ("llm", "compute")  # grouped by session, model or channel
GROUPS = ("client", "instance", "session", "model", "channel")
FORMATS = ("csv", "json")
CHUNK = 2000

KEY_COLUMNS = {
    "client": ["client"],
    "instance": ["client", "instance_id", "instance_name"],
    "session": [
        "kind",
        "client",
        "instance_id",
        "instance_name",
        "session_key",
        "channel",
        "model",
    ],
    "model": ["kind", "provider", "model"],
    "channel": ["kind", "channel"],
}
TOKEN_COLUMNS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]
MEASURE_COLUMNS = ["running_seconds", *TOKEN_COLUMNS, "compute_usd", "llm_usd", "total_usd"]
MONEY_COLUMNS = ("compute_usd", "llm_usd", "total_usd")
SIX = Decimal("0.000001")
ZERO = Decimal(0)


def columns(group_by: str) -> list[str]:
    return [*KEY_COLUMNS[group_by], *MEASURE_COLUMNS]


@dataclass
class Totals:
    """Sums of the measure columns over the rows written so far."""

    values: dict = field(default_factory=lambda: dict.fromkeys(MEASURE_COLUMNS, 0))

    def add(self, row: dict) -> None:
        for name in MEASURE_COLUMNS:
            self.values[name] += row[name]

    def as_dict(self) -> dict:
        return {k: _plain(k, v) for k, v in self.values.items()}


def _plain(name: str, value):
    if name in MONEY_COLUMNS:
        return str(Decimal(value or 0).quantize(SIX))
    return int(value or 0)


def _measures(r: dict, *, compute: bool, llm: bool) -> dict:
    c = (r.get("compute") or ZERO) if compute else ZERO
    cost = (r.get("llm") or ZERO) if llm else ZERO
    out = {"running_seconds": int(r.get("seconds") or 0) if compute else 0}
    for name in TOKEN_COLUMNS:
        out[name] = int(r.get(name) or 0) if llm else 0
    out.update(compute_usd=c, llm_usd=cost, total_usd=c + cost)
    return out


_SUMS_LEDGER = {
    "seconds": Sum("running_seconds"),
    "compute": Sum("compute_cost_usd"),
    "llm": Sum("llm_cost_usd"),
    **{name: Sum(name) for name in TOKEN_COLUMNS},
}
_SUMS_SESSIONS = {"llm": Sum("llm_cost_usd"), **{name: Sum(name) for name in TOKEN_COLUMNS}}


def _ledger(organization, start: dt.date, end: dt.date):
    return UsageDay.objects.filter(organization=organization, day__range=(start, end))


def _session_days(organization, start: dt.date, end: dt.date):
    """The per-session rows of the instance-days the ledger holds (so their sums are exactly
    the ledger's LLM columns)."""
    in_ledger = UsageDay.objects.filter(instance_id=OuterRef("instance_id"), day=OuterRef("day"))
    return SessionUsageDay.objects.filter(
        organization=organization, day__range=(start, end)
    ).filter(Exists(in_ledger))


def rows(*, organization, start: dt.date, end: dt.date, group_by: str) -> Iterator[dict]:
    """The export's rows as dicts of `columns(group_by)`, money as Decimal."""
    ledger = _ledger(organization, start, end)
    if group_by == "client":
        qs = (
            ledger.values(client=F("instance__client_name"))
            .annotate(**_SUMS_LEDGER)
            .order_by("client")
        )
        for r in qs.iterator(chunk_size=CHUNK):
            yield {"client": r["client"], **_measures(r, compute=True, llm=True)}
        return
    if group_by == "instance":
        qs = (
            ledger.values(
                "instance_id",
                instance_name=F("instance__name"),
                client=F("instance__client_name"),
            )
            .annotate(**_SUMS_LEDGER)
            .order_by("client", "instance_name", "instance_id")
        )
        for r in qs.iterator(chunk_size=CHUNK):
            yield {
                "client": r["client"],
                "instance_id": str(r["instance_id"]),
                "instance_name": r["instance_name"],
                **_measures(r, compute=True, llm=True),
            }
        return

    sessions = _session_days(organization, start, end)
    if group_by == "session":
        qs = (
            sessions.values(
                "instance_id",
                "session_id",
                instance_name=F("instance__name"),
                client=F("instance__client_name"),
                session_key=F("session__session_key"),
                channel=F("session__channel"),
                model=F("session__model"),
            )
            .annotate(**_SUMS_SESSIONS)
            .order_by("client", "instance_name", "instance_id", "session_key", "session_id")
        )
        for r in qs.iterator(chunk_size=CHUNK):
            yield {
                "kind": "llm",
                "client": r["client"],
                "instance_id": str(r["instance_id"]),
                "instance_name": r["instance_name"],
                "session_key": r["session_key"],
                "channel": r["channel"],
                "model": r["model"],
                **_measures(r, compute=False, llm=True),
            }
        compute = (
            ledger.values(
                "instance_id",
                instance_name=F("instance__name"),
                client=F("instance__client_name"),
            )
            .annotate(seconds=Sum("running_seconds"), compute=Sum("compute_cost_usd"))
            .order_by("client", "instance_name", "instance_id")
        )
        for r in compute.iterator(chunk_size=CHUNK):
            yield {
                "kind": "compute",
                "client": r["client"],
                "instance_id": str(r["instance_id"]),
                "instance_name": r["instance_name"],
                "session_key": "",
                "channel": "",
                "model": "",
                **_measures(r, compute=True, llm=False),
            }
        return

    if group_by == "model":
        qs = (
            sessions.values(provider=F("instance__provider"), model=F("session__model"))
            .annotate(**_SUMS_SESSIONS)
            .order_by("provider", "model")
        )
        keys = ("provider", "model")
    elif group_by == "channel":
        qs = sessions.values(channel=F("session__channel")).annotate(**_SUMS_SESSIONS)
        qs = qs.order_by("channel")
        keys = ("channel",)
    else:
        raise ValueError(f"unknown group_by {group_by!r}")
    for r in qs.iterator(chunk_size=CHUNK):
        yield {"kind": "llm", **{k: r[k] for k in keys}, **_measures(r, compute=False, llm=True)}
    total = ledger.aggregate(seconds=Sum("running_seconds"), compute=Sum("compute_cost_usd"))
    if total["seconds"] or total["compute"]:
        yield {
            "kind": "compute",
            **dict.fromkeys(keys, ""),
            **_measures(total, compute=True, llm=False),
        }


class _Line:
    """A file-like object whose write() returns what was written (csv.writer into a generator)."""

    def write(self, value):
        return value


def stream_csv(*, organization, start: dt.date, end: dt.date, group_by: str) -> Iterator[str]:
    names = columns(group_by)
    writer = csv.writer(_Line())
    yield writer.writerow(names)
    for row in rows(organization=organization, start=start, end=end, group_by=group_by):
        yield writer.writerow([_cell(n, row[n]) for n in names])


def _cell(name: str, value):
    if name in MONEY_COLUMNS:
        return str(Decimal(value).quantize(SIX))
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        # A spreadsheet would run it as a formula (CSV injection): keep it text.
        return "'" + value
    return value


def stream_json(*, organization, start: dt.date, end: dt.date, group_by: str) -> Iterator[str]:
    """{"from", "to", "group_by", "currency", "columns", "rows": [...], "totals": {...}}, written
    one row at a time; the totals are summed while the rows go out."""
    head = {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "group_by": group_by,
        "currency": "USD",
        "columns": columns(group_by),
    }
    yield json.dumps(head)[:-1] + ', "rows": ['
    totals = Totals()
    first = True
    for row in rows(organization=organization, start=start, end=end, group_by=group_by):
        totals.add(row)
        item = {k: (_plain(k, v) if k in MEASURE_COLUMNS else v) for k, v in row.items()}
        yield ("" if first else ",") + json.dumps(item)
        first = False
    yield '], "totals": ' + json.dumps(totals.as_dict()) + "}"


def filename(*, start: dt.date, end: dt.date, group_by: str, fmt: str) -> str:
    return f"clawfleet-costs-{start.isoformat()}-{end.isoformat()}-by-{group_by}.{fmt}"
