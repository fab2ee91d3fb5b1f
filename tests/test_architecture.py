"""The architecture the code promises (docs/architecture.md), checked on the code itself.

- Layers only point down: cli -> stages -> {explain, train} -> {models, data} -> io / errors.
  Every import counts, module-level and function-level; ``explain`` knows models, not runs.
- Function-level imports only where they buy start-up time, with a comment saying so.
- No code outside a family's own module and registry branches on a member's name.
"""

from __future__ import annotations

import ast
import sys
import collections
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "amfmedit"

# Higher imports lower, never the other way; equal layers may import each other without cycles.
LAYERS = {"cli": 6, "__main__": 7, "stages": 5, "bench": 5, "explain": 4, "train": 4, "env": 4,
          "models": 3, "data": 3, "stats": 2, "io": 1, "figures": 1, "errors": 0, "paths": 1, "__init__": 0}
# explainers know models (and arrays), not runs or the training core
FORBIDDEN = {"explain": {"stages", "train", "cli", "bench"}, "train": {"explain", "stages", "cli"},
             "models": {"data", "train", "explain", "stages", "cli"}, "data": {"models", "train", "explain", "stages", "cli"}}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """(target module, line, function-level?, source line) for every amfmedit import of ``name``."""
    src = path.read_text(encoding="utf-8")
    tree = ast.parse(src)
    lines = src.splitlines()
    in_function = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            if node.level:
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        seen = set()
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("amfmedit") and t not in seen:
                seen.add(t)
                yield t, node.lineno, id(node) in in_function, lines[node.lineno - 1]


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_package_face(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def test_layers_point_down_and_there_is_no_import_cycle():
    modules = _modules()
    assert set(map(_part, modules)) <= set(LAYERS), f"unknown top-level parts: {set(map(_part, modules)) - set(LAYERS)}"
    edges = collections.defaultdict(set)
    problems = []
    for name, path in modules.items():
        for target, line, _, _ in _imports(name, path, modules):
            a, b = _part(name), _part(target)
            if _is_package_face(name, modules) and target.startswith(name + "."):
                continue  # a package's __init__ re-exports its own modules
            if LAYERS[b] > LAYERS[a]:
                problems.append(f"{path.relative_to(PKG.parent)}:{line}: {name} ({a}) imports {target} ({b}), a higher layer")
            if b in FORBIDDEN.get(a, ()):
                problems.append(f"{path.relative_to(PKG.parent)}:{line}: {a} may not import {b} ({name} -> {target})")
            edges[name].add(target)
    # cycles between modules (package faces excluded: they only gather their children)
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if _is_package_face(w, modules):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in modules:
        if v not in index and not _is_package_face(v, modules):
            visit(v)
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles]
    assert not problems, "\n".join(problems)


def test_function_level_imports_say_why():
    """A function-level import is there to keep start-up fast (and says so), never to hide a cycle."""
    modules = _modules()
    problems = []
    for name, path in modules.items():
        src = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(src))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    here = src[node.lineno - 1]
                    before = src[node.lineno - 2] if node.lineno > 1 else ""
                    if "start-up" not in here and "start-up" not in before:
                        problems.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: {here.strip()}")
    assert not problems, ("function-level imports without a start-up reason (move them to the top, or say on the "
                          "line or the line above what start-up time they save):\n" + "\n".join(sorted(set(problems))))


def _member_names() -> dict[str, set[str]]:
    from amfmedit.models import FUSIONS, IMAGE_ENCODERS, TABULAR_ENCODERS
    from amfmedit.stages.kinds import PREDICTION_KINDS

    return {"fusion": set(FUSIONS), "tabular encoder": set(TABULAR_ENCODERS), "image encoder": set(IMAGE_ENCODERS),
            "prediction kind": set(PREDICTION_KINDS)}


# A family's own module and its registry may name its members; so may ``amfmedit bench``, which
# reproduces the paper's Table 3 for the named members it reports (AMF vs cross-attention, FT-Mamba
# vs FT-Transformer) and is no caller of the families.
FAMILY_HOMES = {"amfmedit/models/fusion.py", "amfmedit/models/tabular.py", "amfmedit/models/__init__.py",
                "amfmedit/models/image.py", "amfmedit/bench.py", "amfmedit/stages/kinds/__init__.py",
                "amfmedit/stages/kinds/base.py", "amfmedit/stages/kinds/classification.py"}


def _string_constants(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def test_no_code_branches_on_a_family_members_name():
    members = set().union(*_member_names().values())
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG.parent))
        if rel in FAMILY_HOMES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                named = [s for part in [node.left, *node.comparators] for s in _string_constants(part)]
            elif isinstance(node, ast.match_case) and isinstance(node.pattern, ast.MatchValue):
                named = _string_constants(node.pattern.value)
            else:
                continue
            hit = sorted(set(named) & members)
            if hit:
                problems.append(f"{rel}:{node.lineno}: compares with member name(s) {hit}")
    assert not problems, ("declare it on the member (class attribute) instead of branching on its name:\n"
                          + "\n".join(problems))


def test_the_branching_check_sees_a_comparison():
    """The check above is not vacuous: it flags the patterns it is meant to flag."""
    members = set().union(*_member_names().values())
    code = 'if cfg.fusion == "amf": pass\nif kind in ("concat", "x"): pass\n'
    hits = [node.lineno for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Compare)
            and set(s for p in [node.left, *node.comparators] for s in _string_constants(p)) & members]
    assert hits == [1, 2]


# Modules whose functions take probability arrays and dispatch on their width (two columns: the
# positive class's probability; more: one-vs-rest): a property of the array, not of a prediction kind.
ARRAY_HOMES = {"amfmedit/train/metrics.py"}


def _class_count_comparisons(source: str) -> list[int]:
    """Lines comparing a class count (``n_classes``, ``.n_classes``) with 2: a binary kind in disguise."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare) or len(node.ops) != 1:  # a range check (2 <= n <= K) is no kind
            continue
        parts = [node.left, *node.comparators]
        named = any((isinstance(p, ast.Name) and p.id == "n_classes") or
                    (isinstance(p, ast.Attribute) and p.attr == "n_classes") for p in parts)
        number = any(isinstance(p, ast.Constant) and p.value == 2 for p in parts)
        if named and number:
            hits.append(node.lineno)
    return hits


def test_no_code_outside_the_kind_family_compares_a_class_count():
    """``n_classes == 2`` is the binary kind by another name: ask the prediction kind instead."""
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG.parent))
        if rel in FAMILY_HOMES or rel in ARRAY_HOMES or rel.startswith("amfmedit/stats/"):
            continue
        problems += [f"{rel}:{line}" for line in _class_count_comparisons(path.read_text(encoding="utf-8"))]
    assert not problems, "ask the prediction kind (amfmedit.stages.kinds) instead:\n" + "\n".join(problems)
    assert _class_count_comparisons("if schema.n_classes == 2: pass\nok = n_classes > 2\nx = k == 2\n"
                                    "y = n_classes < 1\nz = 2 <= n_classes <= 9\n") == [1, 2]


# The statistics layer is a leaf of arrays: besides the standard library it may use only these.
STATS_THIRD_PARTY = {"numpy", "scipy", "sklearn", "matplotlib"}


def _third_party(source: str) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            tops.add(node.module.split(".")[0])
    return {t for t in tops if t not in sys.stdlib_module_names and t not in ("__future__", "amfmedit")}


def test_stats_uses_only_array_libraries():
    problems = [f"{p.relative_to(PKG.parent)}: {sorted(_third_party(p.read_text(encoding='utf-8')) - STATS_THIRD_PARTY)}"
                for p in sorted((PKG / "stats").glob("*.py"))
                if _third_party(p.read_text(encoding="utf-8")) - STATS_THIRD_PARTY]
    assert not problems, "amfmedit.stats is a leaf of array code:\n" + "\n".join(problems)
    assert _third_party("import torch\nfrom scipy import stats\nimport json\n") - STATS_THIRD_PARTY == {"torch"}
