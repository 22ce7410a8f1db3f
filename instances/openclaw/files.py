"""OpenClaw's config file in a state volume, composed from a runtime's generic primitives
(``read_file``, ``write_file``, ``run_in_volume``): JSON5 parsing with the image's own json5,
the owned-paths merge (``config.merge_owned``) and ``openclaw config validate`` before the
atomic rename. Any backend of ``instances.runtime.contract.Runtime`` works.

Why node + json5 and not ``openclaw config get``: ``config get`` is a full CLI boot per path and
may redact secrets; json5 is the exact parser OpenClaw uses (docs/openclaw-runtime.md §4).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..runtime.errors import ConfigInvalid, RuntimeErrorBase
from ..runtime.types import CONFIG_FILE, STATE_DIR, state_path
from .config import merge_owned

STAGED_CONFIG = f".{CONFIG_FILE}.clawfleet-new"
VALIDATE_TIMEOUT = 120

# node -e: print the JSON of a JSON5 file, with the json5 module the image ships.
JSON5_TO_JSON = (
    "const fs=require('fs');"
    "const tries=['/opt/openclaw/node_modules/json5','/app/node_modules/json5',"
    "'/usr/local/lib/node_modules/openclaw/node_modules/json5','json5'];"
    "let J=null;for(const t of tries){try{J=require(t);break}catch(e){}}"
    "if(!J){console.error('json5 module not found in image');process.exit(3)}"
    "const p=process.argv[1];"
    "try{process.stdout.write(JSON.stringify(J.parse(fs.readFileSync(p,'utf8'))))}"
    "catch(e){console.error('cannot parse '+p+': '+e.message.split('\\n')[0]);process.exit(2)}"
)

# sh -c: validate the staged file as the config OpenClaw would load, then rename it over the
# real one (a running gateway hot-reloads it); a refused file is removed, the old one kept.
VALIDATE_AND_SWAP = (
    'set -e; cd "$OPENCLAW_STATE_DIR"; '
    f'OPENCLAW_CONFIG_PATH="$PWD/{STAGED_CONFIG}" openclaw config validate --json '
    f'|| {{ rc=$?; rm -f "{STAGED_CONFIG}"; exit $rc; }}; '
    f'chmod 600 "{STAGED_CONFIG}"; mv -f "{STAGED_CONFIG}" {CONFIG_FILE}'
)


def parse_json5(runtime, volume_name: str, image: str, path: str) -> Any:
    """Parse a JSON5 file of the volume with the json5 module shipped in the OpenClaw image."""
    target = state_path(path)
    code, out, err = runtime.run_in_volume(
        volume_name, image, ["node", "-e", JSON5_TO_JSON, target], timeout=60
    )
    if code != 0:
        raise RuntimeErrorBase(f"cannot parse {path}: {err.decode(errors='replace')[-300:]}")
    return json.loads(out)


def render(config: dict) -> bytes:
    """The bytes we write: plain JSON (what OpenClaw's own `config set` writes too)."""
    return (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode()


def desired_file(existing: dict | None, config: dict, owned_paths) -> dict | None:
    """The config to write given what the volume holds (None: nothing to write)."""
    if existing is None:
        return config
    final = merge_owned(existing, config, owned_paths)
    return None if final == existing else final


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def write_config(
    runtime,
    volume_name: str,
    image: str,
    config: dict,
    owned_paths: list[str] | tuple[str, ...],
    *,
    validate: bool = True,
    secrets: Iterable[str] = (),
) -> bool:
    """Converge ``openclaw.json`` in the volume. Returns True if the file was (re)written.

    - absent: write ``config`` as is;
    - present: parse it (plain JSON first, else JSON5 with the image's node), set only the
      ``owned_paths`` from ``config`` (``config.merge_owned``), keep the rest; unchanged: no
      write.
    With ``validate`` the file is staged next to the real one, checked with ``openclaw config
    validate`` and renamed over it in one helper; otherwise ``runtime.write_file`` (staged and
    renamed too). Owned by 1000:1000, mode 600. ``secrets`` are scrubbed from error messages.
    """
    raw = runtime.read_file(volume_name, image, CONFIG_FILE)
    existing = None
    if raw is not None:
        try:
            existing = json.loads(raw)
        except ValueError:
            existing = parse_json5(runtime, volume_name, image, CONFIG_FILE)
    final = desired_file(existing, config, owned_paths)
    if final is None:
        return False
    data = render(final)
    if not validate:
        runtime.write_file(volume_name, image, CONFIG_FILE, data, mode=0o600)
        return True
    code, out, err = runtime.run_in_volume(
        volume_name,
        image,
        ["sh", "-c", VALIDATE_AND_SWAP],
        timeout=VALIDATE_TIMEOUT,
        files={f"{STATE_DIR}/{STAGED_CONFIG}": data},
    )
    if code != 0:
        text = scrub((out + b"\n" + err).decode(errors="replace"), secrets)
        raise ConfigInvalid(f"openclaw config validate rejected the config: {text[-1500:]}")
    return True
