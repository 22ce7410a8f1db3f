"""The grep the issue asks for: the client address is read in one place, accounts/client_ip.py
(the trusted-proxy rule). No other module reads REMOTE_ADDR or X-Forwarded-For itself; audit
rows, token last use and rate limits all go through accounts.client_ip / Actor.from_request."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", "node_modules", "tests", "migrations", ".git", "bench", "staticfiles"}
HEADERS = ("REMOTE_ADDR", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            ids.add(id(first.value))
    return ids


def test_only_accounts_client_ip_reads_the_peer_address_or_forwarding_headers():
    readers = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if SKIP & set(rel.parts):
            continue
        tree = ast.parse(path.read_text(), filename=str(rel))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) not in docs and any(h in node.value for h in HEADERS):
                    readers.append(f"{rel.as_posix()}:{node.lineno}")
            elif isinstance(node, ast.Attribute) and node.attr == "remote_addr":
                readers.append(f"{rel.as_posix()}:{node.lineno}")
    assert sorted({r.split(":")[0] for r in readers}) == ["accounts/client_ip.py"], readers
