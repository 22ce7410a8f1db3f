"""A real S3-compatible server on loopback for the backup tests: moto's server mode (the
`moto[server]` package), in this process on a free port. `stop()` takes it down (the port stops
answering: connection refused), `start()` brings it back on the same port with the same buckets
and objects (moto keeps its state in the process), so a test can hold an outage of the store."""

from __future__ import annotations

import socket
import time

import boto3


class S3Server:
    ACCESS_KEY = "clawfleet-test"
    SECRET_KEY = "clawfleet-test-secret"  # noqa: S105 - a local stand-in's credentials
    REGION = "us-east-1"

    def __init__(self):
        self.port = 0
        self._server = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        try:
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            server.start()
        except ImportError as exc:  # pragma: no cover - a clear message, never a silent skip
            raise RuntimeError("moto[server] is required for the S3 tests (make install)") from exc
        self._server = server
        self.port = server.get_host_and_port()[1]
        self._wait(up=True)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._wait(up=False)

    @property
    def running(self) -> bool:
        return self._server is not None

    def _wait(self, *, up: bool, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    if up:
                        return
            except OSError:
                if not up:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"moto S3 server did not come {'up' if up else 'down'}")

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            region_name=self.REGION,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out = []
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        for page in pages:
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def flip_byte(self, bucket: str, key: str, pos: int = -20) -> None:
        """Corrupt a stored object in place (bit rot, a bad disk in the provider)."""
        client = self.client()
        data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        data[pos] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(data))

    def settings_for(self, bucket: str) -> dict:
        """The Clawfleet settings (or environment) that point backups at this server."""
        return {
            "FLEET_BACKUP_S3_BUCKET": bucket,
            "FLEET_BACKUP_S3_PREFIX": "backups",
            "FLEET_BACKUP_S3_ENDPOINT_URL": self.endpoint,
            "FLEET_BACKUP_S3_REGION": self.REGION,
            "FLEET_BACKUP_S3_ACCESS_KEY_ID": self.ACCESS_KEY,
            "FLEET_BACKUP_S3_SECRET_ACCESS_KEY": self.SECRET_KEY,
        }
