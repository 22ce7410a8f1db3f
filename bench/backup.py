"""Bench: backup throughput of our pipeline beside a bare run of the same method, same data.

    .venv/bin/python bench/backup.py   (DATABASE_URL defaults to .../clawfleet_bench_backup)

Setup as bench/sessions.py (bench database, one instance on the mock LLM), then:
- fills the state: BENCH_SESSIONS conversations (default 200) plus BENCH_WORKSPACE_MB (default 64)
  of workspace files (half random, half text, so gzip has real work), written inside the container;
- bare: `openclaw backup create --verify --json` in the container, then `cat` of the archive to
  /dev/null here (the same method our hot backup uses, nothing else);
- ours: `sessions_mgmt.services.backup_create_now` (list sessions, the same OpenClaw backup, read
  out, chunked Fernet encryption, SHA-256, write to storage, read back and verify every entry);
- cold: the same service on the stopped instance (volume export, gzip, encrypt, verify).
MB/s = archive bytes / wall time. Runs BENCH_ROUNDS (default 2) rounds, reports the best of each.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sessions import Bench, setup_django  # noqa: E402


def fill_workspace(bench: Bench, mb: int) -> None:
    from sessions_mgmt.services import client_for

    client = client_for(bench.instance)
    script = (
        "set -e; d=$OPENCLAW_STATE_DIR/workspace/bench; mkdir -p $d; "
        f"head -c {mb // 2}M /dev/urandom > $d/random.bin; "
        f"i=0; while [ $i -lt {mb // 2} ]; do "
        "head -c 786432 /dev/urandom | base64 >> $d/text.txt; i=$((i+1)); done"
    )
    code, _out, err = client.run(["sh", "-c", script], timeout=600)
    if code != 0:
        raise SystemExit(f"fill failed: {err[-300:]!r}")


def main() -> int:
    setup_django()
    from sessions_mgmt import backup_store, services
    from sessions_mgmt.models import Backup

    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    bench = Bench("bench-backup")
    instance = bench.deploy()
    try:
        n = int(os.environ.get("BENCH_SESSIONS", "200"))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: bench.chat(f"b-{i:04d}", f"hello {i}"), range(n)))
        fill_workspace(bench, int(os.environ.get("BENCH_WORKSPACE_MB", "64")))
        client = services.client_for(instance)
        bare, ours, cold = [], [], []
        for r in range(rounds):
            t = time.monotonic()
            result = client.backup_create(f"/tmp/bench-bare-{r}")  # noqa: S108 - in container
            code, data, _ = client.run(["cat", result["archivePath"]], timeout=1800)
            bare_s = time.monotonic() - t
            client.remove_path(f"/tmp/bench-bare-{r}")  # noqa: S108
            size = len(data)
            del data
            bare.append((bare_s, size))
            print(f"round {r}: bare openclaw backup+read {size / 1e6:.1f} MB in {bare_s:.2f} s")

            t = time.monotonic()
            b = services.backup_create_now(instance=instance, kind=Backup.Kind.MANUAL)
            ours_s = time.monotonic() - t
            ours.append((ours_s, b.manifest["archive_size"]))
            print(
                f"round {r}: ours {b.manifest['archive_size'] / 1e6:.1f} MB archive "
                f"({b.size_bytes / 1e6:.1f} MB stored) in {ours_s:.2f} s"
            )
            backup_store.delete(b.storage_name)
        bench.runtime.stop(instance.container_name, timeout=30)
        from instances.models import Instance

        Instance.objects.filter(pk=instance.pk).update(status=Instance.Status.STOPPED)
        instance.refresh_from_db()
        t = time.monotonic()
        b = services.backup_create_now(instance=instance, kind=Backup.Kind.MANUAL)
        cold_s = time.monotonic() - t
        cold.append((cold_s, b.manifest["archive_size"]))
        backup_store.delete(b.storage_name)
        print(f"cold (stopped): {b.manifest['archive_size'] / 1e6:.1f} MB in {cold_s:.2f} s")

        def best(rows):
            s, size = min(rows)
            return size / 1e6 / s, s, size / 1e6

        bm, bs, bz = best(bare)
        om, os_, oz = best(ours)
        cm, cs, cz = best(cold)
        print(
            f"RESULT bare={bm:.1f}MB/s ({bz:.1f} MB, {bs:.2f} s) "
            f"ours_hot={om:.1f}MB/s ({oz:.1f} MB, {os_:.2f} s) "
            f"ours_cold={cm:.1f}MB/s ({cz:.1f} MB, {cs:.2f} s) overhead={os_ / bs:.2f}x"
        )
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
