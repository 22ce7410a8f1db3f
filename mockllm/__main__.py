"""``python -m mockllm --host H [--host H2 ...] --port P``: serve the mock LLM until interrupted."""

import argparse
import contextlib
import signal
import sys
import threading

from .server import start_mock_llm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mockllm", description=__doc__)
    parser.add_argument(
        "--host",
        action="append",
        help="address to bind (repeat for several; default 127.0.0.1)",
    )
    parser.add_argument("--port", type=int, default=18999, help="port (0 = pick a free one)")
    parser.add_argument("--model", default="mock-model", help="model id listed by /v1/models")
    parser.add_argument(
        "--keep-bodies", action="store_true", help="also record full request bodies (debugging)"
    )
    parser.add_argument(
        "--log",
        help="also append every request record to this JSON-lines file (created 0600 in a 0700 "
        "directory; keep it outside anything a container mounts)",
    )
    args = parser.parse_args(argv)
    hosts = args.host or ["127.0.0.1"]
    mock = start_mock_llm(hosts, args.port, model_id=args.model, log_path=args.log)
    mock.keep_bodies = args.keep_bodies
    for url in mock.urls:
        print(f"mockllm listening on {url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
