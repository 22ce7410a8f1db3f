"""Bench: issue 15's backup figures for one instance holding 1,000 sessions, in one run.

    .venv/bin/python bench/backup.py   (DATABASE_URL defaults to .../clawfleet_bench_sessions)

Setup as bench/sessions.py (bench database, one instance on the mock LLM, deploy in this
process); backups go to a real S3-compatible server on loopback (moto's server mode, the one the
suite uses, tests/fakes/s3.py) unless BENCH_S3=0. Then, on the same state:
- sessions: BENCH_SESSIONS (default 1,000): BENCH_TURNS (default 50) real conversations on the
  HTTP API, the rest through the gateway's sessions.create (bench/sessions.py);
- bare: `openclaw backup create --verify --json` in the container, the archive read out to
  nothing here (what OpenClaw alone costs; the baseline of every ratio);
- full: our nightly-kind backup (backup_create_now kind manual: OpenClaw's archive, chunked
  encryption, checksum, upload, read back and verified): seconds, bytes stored;
- first point: the first incremental point (every block new);
- incremental: one new conversation, then the next point: seconds, bytes stored (goal: <= 5 % of
  the full's bytes, <= 10 s);
- restore: the restore Operation of that point from object storage, run in this process (verify,
  pre-restore backup, rebuild from blocks, unpack, check, swap, start, wait ready, compare):
  seconds (goal RTO <= 2 minutes), and its steps.
Removes the instance, its backups and the bucket's objects unless BENCH_KEEP=1.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sessions import Bench, create_sessions, setup_django  # noqa: E402


def start_s3():
    """moto's S3 server on a free loopback port; the backup settings point at a new bucket."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import logging

    from django.conf import settings

    from sessions_mgmt import backup_store
    from tests.fakes.s3 import S3Server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = S3Server().start()
    bucket = server.create_bucket(f"bench-{uuid.uuid4().hex[:8]}")
    for key, value in server.settings_for(bucket).items():
        setattr(settings, key, value)
    backup_store.backup_storage.cache_clear()
    server.bucket = bucket
    return server


def step_seconds(step: dict) -> str:
    from datetime import datetime

    try:
        a = datetime.fromisoformat(step["started_at"])
        b = datetime.fromisoformat(step["finished_at"])
    except (KeyError, TypeError, ValueError):
        return "?"
    return f"{(b - a).total_seconds():.1f}s"


def timed(fn):
    t = time.monotonic()
    result = fn()
    return result, time.monotonic() - t


def main() -> int:
    setup_django()
    from accounts.services import SYSTEM
    from instances.models import Operation
    from instances.operations import operation_request, run_operation
    from sessions_mgmt import backup_store, services, tasks
    from sessions_mgmt.models import Backup

    s3 = start_s3() if os.environ.get("BENCH_S3", "1") != "0" else None
    where = backup_store.storage_description()
    bench = Bench("bench-backup")
    from django.conf import settings

    from instances import egress

    # The mock LLM listens on a free port: let the instance reach it (as the suite's fixture does).
    settings.FLEET_EGRESS_ALLOW = [
        *settings.FLEET_EGRESS_ALLOW,
        *egress.mock_llm_allow(bench.mock.port),
    ]
    egress.install(settings.FLEET_NETWORK)  # as the suite's mock_llm fixture does
    # The instance reaches the mock on its network's gateway, where the mock always listens
    # (host.docker.internal needs a default bridge, which this engine may not have).
    from instances.runtime import DockerRuntime

    gateway = DockerRuntime(settings.FLEET_DOCKER_URL).network_gateway(settings.FLEET_NETWORK)
    bench.base_url = bench.mock.url_for(gateway)
    instance = bench.deploy()
    made: list[Backup] = []
    try:
        n = int(os.environ.get("BENCH_SESSIONS", "1000"))
        turns = min(n, int(os.environ.get("BENCH_TURNS", "50")))
        t = time.monotonic()

        def chat(i):
            for attempt in range(3):  # a loaded machine makes the gateway answer 408 now and then
                try:
                    return bench.chat(f"b-{i:04d}", f"hello {i}")
                except Exception:  # noqa: BLE001
                    if attempt == 2:
                        raise
                    time.sleep(5)

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(chat, range(turns)))
        if n > turns:
            create_sessions(bench, turns, n, int(os.environ.get("BENCH_CONCURRENCY", "16")))
        client = services.client_for(instance)
        count = len(client.list_sessions().rows)
        print(f"{count} sessions in {time.monotonic() - t:.0f} s; backups kept in: {where}")

        def bare():
            out = f"/tmp/bench-bare-{uuid.uuid4().hex[:6]}"  # noqa: S108 - in the container
            result = client.backup_create(out)
            size = sum(len(c) for c in client.stream_file(result["archivePath"], max_bytes=2**34))
            client.remove_path(out)
            return size

        bare_bytes, bare_s = timed(bare)
        print(f"bare openclaw backup create + read: {bare_bytes / 1e6:.2f} MB in {bare_s:.1f} s")
        full, full_s = timed(
            lambda: services.backup_create_now(instance=instance, kind=Backup.Kind.MANUAL)
        )
        made.append(full)
        print(
            f"full (ours): {full.size_bytes / 1e6:.2f} MB stored in {full_s:.1f} s "
            f"({full_s / bare_s:.2f}x bare's time, {full.size_bytes / bare_bytes:.2f}x its bytes)",
            flush=True,
        )

        def take_point():
            assert tasks.run_point_backup(str(instance.pk)) == "done"
            b = Backup.objects.filter(instance=instance, kind="incremental").latest("created_at")
            if b.state != "succeeded":
                raise SystemExit(f"point failed: {b.error}")
            return b

        first, first_s = timed(take_point)
        made.append(first)
        print(f"first point (all blocks new): {first.size_bytes / 1e6:.2f} MB in {first_s:.1f} s")
        bench.chat("b-new-conversation", "one new conversation after the last point")
        inc, inc_s = timed(take_point)
        made.append(inc)
        print(
            f"incremental after one new conversation: {inc.size_bytes / 1e3:.1f} kB in "
            f"{inc_s:.1f} s = {100 * inc.size_bytes / full.size_bytes:.2f} % of the full's bytes "
            f"(goal <= 5 %), {inc_s / bare_s:.2f}x bare's time (goal <= 10 s); "
            f"{inc.manifest['new_blocks']} of {inc.manifest['blocks']} blocks new",
            flush=True,
        )

        def do_restore():
            op = operation_request(
                actor=SYSTEM,
                instance=instance,
                kind=Operation.Kind.RESTORE,
                params={"backup_id": str(inc.pk)},
                enqueue=False,
            )
            op = run_operation(op.pk)
            if op.state != "succeeded":
                print(f"restore FAILED: {op.error} {op.error_detail}")
            return op

        op, restore_s = timed(do_restore)
        made.extend(Backup.objects.filter(operation=op))
        steps = ", ".join(f"{s['name']} {step_seconds(s)}" for s in op.steps)
        print(f"restore of that point from {where}: {restore_s:.1f} s (goal RTO <= 120 s)")
        print(f"  steps: {steps}")
        print(
            f"RESULT sessions={count} bare={bare_s:.1f}s/{bare_bytes}B "
            f"full={full_s:.1f}s/{full.size_bytes}B incremental={inc_s:.1f}s/{inc.size_bytes}B "
            f"({100 * inc.size_bytes / full.size_bytes:.2f}% of full) restore={restore_s:.1f}s"
        )
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            for b in Backup.objects.filter(instance=instance):
                for name in [b.storage_name, *(b.manifest or {}).get("packs", [])]:
                    if name:
                        try:
                            backup_store.delete(name)
                        except Exception:  # noqa: BLE001,S112
                            continue
        bench.cleanup()
        if s3 is not None:
            s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
