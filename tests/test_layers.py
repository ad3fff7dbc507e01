"""The seam between doors and layers, checked on the source: doors (the CLI and the HTTP service)
import only what a layer exports from its package (``__all__``), and layers never import upward."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "faceatlas"
# Layers, lowest first; a layer may import those before it. `errors` and `db` are shared infrastructure.
LAYERS = ["faceatlas.engine", "faceatlas.gallery", "faceatlas.batch", "faceatlas.video", "faceatlas.apps.drive",
          "faceatlas.apps.kyc",
          "faceatlas.apps.retail",
          "faceatlas.apps.albums",
          "faceatlas.apps.ar"]
SHARED = {"faceatlas.errors", "faceatlas.db", "faceatlas.settings"}
DOORS = ["faceatlas.cli", "faceatlas.service"]
# The Python client is shipped on its own: no module of the package imports anything else of faceatlas.
STANDALONE = {"faceatlas.client"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every ``from faceatlas... import`` and ``import faceatlas...`` in a file;
    a relative import (``from .x import y``, ``from .. import z``) as the absolute module it names."""
    found = []
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
            found.append((module, [alias.name for alias in node.names], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("faceatlas"):
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("faceatlas")]
    return found


def _files(package: str) -> list[Path]:
    folder = PACKAGE.parent.joinpath(*package.split("."))
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("door", DOORS)
def test_doors_import_only_what_layers_export(door: str) -> None:
    wrong = []
    for path in _files(door):
        for module, names, line in _imports(path):
            if any(_within(module, d) for d in DOORS) or module in SHARED or module in STANDALONE:
                continue
            layer = next((p for p in LAYERS if _within(module, p)), None)
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if layer is None or module != layer:
                wrong.append(f"{where}: from {module} import {', '.join(names)} (import it from the layer package)")
                continue
            exported = set(importlib.import_module(layer).__all__)
            wrong += [f"{where}: {layer}.{n} is not in its __all__" for n in names if n not in exported]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_never_import_upward(layer: str) -> None:
    position = LAYERS.index(layer)
    allowed = set(LAYERS[: position + 1]) | SHARED
    if layer.startswith("faceatlas.apps."):  # the apps are siblings
        allowed -= {p for p in LAYERS if p.startswith("faceatlas.apps.") and p != layer}
    if layer in ("faceatlas.apps.ar", "faceatlas.apps.kyc"):
        allowed.add("faceatlas.apps.drive")  # AR and KYC build on drive's Face Mesh; no other sibling
    wrong = []
    for path in _files(layer):
        for module, _, line in _imports(path):
            if not any(_within(module, p) for p in allowed):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}")
    assert not wrong, "\n".join(wrong)


def test_shared_modules_and_the_client_import_no_layer() -> None:
    """A shared module imports no layer (other shared modules at most); the client, every module of
    its package, imports nothing of faceatlas but its own modules."""
    for module in [*SHARED, *STANDALONE]:
        allowed = set() if module in STANDALONE else SHARED - {module}
        for path in _files(module):
            imported = {m for m, _, _ in _imports(path) if not (module in STANDALONE and _within(m, module))}
            where = path.relative_to(PACKAGE.parent)
            assert imported <= allowed, f"{where} ({module}) must import no layer, imports {imported - allowed}"


def test_every_layer_declares_its_exports() -> None:
    for layer in LAYERS:
        package = importlib.import_module(layer)
        assert package.__doc__ and package.__all__, f"{layer} needs a docstring and __all__"
        missing = [n for n in package.__all__ if not hasattr(package, n)]
        assert not missing, f"{layer}.__all__ names what it does not define: {missing}"


def _module_graph() -> dict[str, set[str]]:
    """Module -> the faceatlas modules (not packages) it imports, wherever the import statement is."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for module, names, _ in _imports(path):
            targets |= {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
            if module in modules:
                targets.add(module)
        graph[name] = targets - {name}
    return graph


def test_no_import_cycles_between_modules() -> None:
    graph, cycles = _module_graph(), []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_central_types_docs_architecture_md_names_are_exported() -> None:
    """docs/architecture.md's seam table named `VectorIndex` among what `faceatlas.gallery` exports
    to the doors; it lives in faceatlas.gallery.index.base. Every central type of the table is in
    its layer's ``__all__``."""
    import re

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    table = doc.split("## The seam", 1)[1].split("\n\n", 2)[1]
    wrong = []
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        layer = f"faceatlas.{cells[0].strip('`')}"
        exported = set(importlib.import_module(layer).__all__)
        for name in re.findall(r"`([A-Za-z_]+)`", cells[2]):
            if name not in exported:
                wrong.append(f"{layer}: {name}")
    assert not wrong, f"central types not in their layer's __all__: {', '.join(wrong)}"
