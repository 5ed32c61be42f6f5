"""The house rules, read off the source: layers import one way, and no module cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# top-level folder -> import name (pyproject's package-dir)
FOLDERS = {"toolkit": "edgecodec", "export": "edgecodec.export", "quantize": "edgecodec.quantize",
           "runtimes": "edgecodec.runtimes", "benchmarks": "edgecodec.benchmarks"}
LAYERS = ("export", "quantize", "runtimes", "benchmarks", "apps")
# what each layer may import besides itself and the core
# (benchmarks sits above export and quantize: the device check and the fuzzer build their own bundles)
ALLOWED = {"core": set(), "runtimes": set(), "export": {"runtimes"}, "benchmarks": {"runtimes", "export", "quantize"},
           "quantize": {"export", "runtimes"}, "apps": set(LAYERS)}


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every edgecodec module `module` imports, at the top or inside functions."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


def test_layers_import_one_way():
    bad = []
    for module, deps in graph().items():
        mine = layer(module)
        for dep in deps:
            other = layer(dep)
            if other not in ("core", mine) and other not in ALLOWED[mine]:
                bad.append(f"{module} ({mine}) imports {dep} ({other})")
            if mine == "core" and other != "core":
                bad.append(f"core module {module} imports {dep}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_no_module_import_cycles():
    g = graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if d.rsplit(".", 1)[0] == m or m.startswith(d + "."):
                continue  # a package and its own submodules
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_rules_see_imports():
    """The checker itself: it finds a known top-level and a known function-level import."""
    g = graph()
    assert "edgecodec.zoo" in g["edgecodec.families.diffo.codec"]
    assert "edgecodec.export.exporter" in g["edgecodec.apps.cli"]


def test_only_the_zoo_names_a_family():
    """Families are reached through the zoo (by module name in zoo.FAMILIES), so export, quantize, runtimes,
    benchmarks and the core never import one; a family may build on another (a student on its teacher's
    encoder side); only applications made for one family (its importer, its trainer) import it."""
    bad = []
    for module, deps in graph().items():
        if module.startswith("edgecodec.families") or module.startswith("edgecodec.apps."):
            continue
        bad += [f"{module} imports {d}" for d in deps if d.startswith("edgecodec.families")]
    assert not bad, "\n".join(sorted(bad))
    assert "edgecodec.families.onedc.nets" in graph()["edgecodec.apps.onedc_import"]
