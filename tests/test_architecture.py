"""The apps form a chain and every import points down it (docs/architecture.md):

    accounts <- billing <- instances <- sessions_mgmt <- channels <- notifications

An app imports only itself, apps below it, and fleet's infrastructure (fleet.hooks, fleet.fields,
fleet.api): a lower app that needs a higher one to act runs a hook (fleet.hooks) that the higher
app registers. Every import is counted: module level, inside functions, and importlib strings.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAIN = ["accounts", "billing", "instances", "sessions_mgmt", "channels", "notifications"]
INFRASTRUCTURE = ["fleet/hooks.py", "fleet/fields.py"]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(app: str) -> list[str]:
    higher = CHAIN[CHAIN.index(app) + 1 :]
    bad = []
    for path in sorted((ROOT / app).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top in higher:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
            elif top == "fleet" and module.split(".")[1:2] in (["urls"], ["admin"]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module} (the project top)")
    return bad


@pytest.mark.parametrize("app", CHAIN)
def test_each_app_imports_only_apps_below_it(app):
    assert violations(app) == []


def test_fleet_infrastructure_imports_no_app():
    for rel in INFRASTRUCTURE:
        modules = [m for _, m in imported_modules(ROOT / rel)]
        assert not [m for m in modules if m.split(".")[0] in CHAIN], rel


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: an instances module importing sessions_mgmt is caught."""
    fake_root = tmp_path
    (fake_root / "instances").mkdir()
    (fake_root / "instances" / "x.py").write_text(
        "def f():\n    from sessions_mgmt.models import Session\n"
    )
    (fake_root / "billing").mkdir()
    (fake_root / "billing" / "y.py").write_text(
        "import importlib\nimportlib.import_module('sessions_mgmt.services')\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", fake_root)
    assert violations("instances") == ["instances/x.py:2 imports sessions_mgmt.models"]
    assert violations("billing") == ["billing/y.py:2 imports sessions_mgmt.services"]
