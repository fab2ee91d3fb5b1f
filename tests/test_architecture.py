"""The architecture the code promises (docs/architecture.md), checked on the code itself.

- Layers only point down: cli -> stages -> {explain, train} -> {models, data} -> io / errors.
  Every import counts, module-level and function-level; ``explain`` knows models, not runs.
- Heavy packages are deferred from one declared list (:data:`amfmedit.deferred.DEFERRED`): a
  function-level import is of such a package (or of an amfmedit module that imports one at
  module level), and no module the CLI imports to build its help imports one at module level.
- No code outside a family's own module and registry branches on a member's name.

Each checker is a function over a package folder (or source texts), so the tests at the end
run the same function on a planted violation and see it fail.
"""

from __future__ import annotations

import ast
import sys
import collections
import dataclasses
import textwrap
from pathlib import Path

from amfmedit.deferred import DEFERRED

PKG = Path(__file__).resolve().parents[1] / "amfmedit"
HELP_PATH = ("amfmedit.cli", "amfmedit.__main__")  # what `amfmedit --help` and `python -m amfmedit` import

# Higher imports lower, never the other way; equal layers may import each other without cycles.
LAYERS = {"cli": 6, "__main__": 7, "stages": 5, "bench": 5, "explain": 4, "train": 4, "env": 4,
          "models": 3, "data": 3, "stats": 2, "io": 1, "figures": 1, "errors": 0, "paths": 1, "deferred": 0,
          "__init__": 0}
# explainers know models (and arrays), not runs or the training core
FORBIDDEN = {"explain": {"stages", "train", "cli", "bench"}, "train": {"explain", "stages", "cli"},
             "models": {"data", "train", "explain", "stages", "cli"}, "data": {"models", "train", "explain", "stages", "cli"}}


# ----------------------------------------------------------------------------------------------
# reading the imports of a package
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Import:
    target: str  # an own module ("amfmedit.models.fusion") or an outside top-level package ("torch")
    own: bool
    line: int
    in_function: bool
    text: str


def package_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the package folder ``root`` (``root.name`` is the package)."""
    out = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_face(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:`` (never executed)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for part in node.body for n in ast.walk(part))
    return out


def _bound_at_module_level(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _lazy_face(face: str, modules: dict[str, Path]):
    """(names bound at the face's module level, nodes imported by its ``__getattr__``) or None
    when the package face serves no attributes lazily (PEP 562)."""
    tree = ast.parse(modules[face].read_text(encoding="utf-8"))
    getattr_fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"), None)
    if getattr_fn is None:
        return None
    return _bound_at_module_level(tree), [n for n in ast.walk(getattr_fn) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _targets(node: ast.AST, name: str, path: Path, modules: dict[str, Path], package: str):
    """(target, own) pairs one import statement of module ``name`` reaches."""
    if isinstance(node, ast.Import):
        raw = [(a.name, None) for a in node.names]
    else:
        if node.module == "__future__":
            return []
        if node.level:
            base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        raw = [(mod, None)] + [(f"{mod}.{a.name}", a.name) for a in node.names]
    out = []
    for dotted, attribute in raw:
        top = dotted.split(".")[0]
        if top != package:
            out.append((top, False))
            continue
        t = dotted
        while t and t not in modules:
            t = t.rpartition(".")[0]
        if not t:
            continue
        out.append((t, True))
        # ``from face import NAME`` where the face serves NAME from ``__getattr__``: what that imports
        if attribute is not None and t != dotted and _is_face(t, modules):
            lazy = _lazy_face(t, modules)
            if lazy is not None and attribute not in lazy[0]:
                for inner in lazy[1]:
                    out.extend(_targets(inner, t, modules[t], modules, package))
    return out


def imports_of(name: str, modules: dict[str, Path]) -> list[Import]:
    """Every import module ``name`` makes (own targets resolved to modules, outside ones to their package)."""
    path = modules[name]
    package = name.split(".")[0]
    src = path.read_text(encoding="utf-8")
    tree = ast.parse(src)
    lines = src.splitlines()
    in_function, never = set(), _type_checking_only(tree)
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in never:
            continue
        seen = set()
        for target, own in _targets(node, name, path, modules, package):
            if target != name and target not in seen:
                seen.add(target)
                out.append(Import(target, own, node.lineno, id(node) in in_function, lines[node.lineno - 1].strip()))
    return out


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def loaded_at_import(start: tuple[str, ...], modules: dict[str, Path], imports: dict | None = None) -> dict[str, list[str]]:
    """Own modules that importing ``start`` runs (module-level imports, parent packages included),
    each with the chain of modules that leads to it (``imports``: :func:`imports_of` of each module, if known)."""
    imports = imports if imports is not None else {m: imports_of(m, modules) for m in modules}
    chains: dict[str, list[str]] = {}
    queue = collections.deque()
    for s in start:
        for m in [*_parents(s), s]:
            if m in modules and m not in chains:
                chains[m] = [m]
                queue.append(m)
    while queue:
        m = queue.popleft()
        for imp in imports[m]:
            if not imp.own or imp.in_function:
                continue
            for t in [*_parents(imp.target), imp.target]:
                if t in modules and t not in chains:
                    chains[t] = chains[m] + [t]
                    queue.append(t)
    return chains


# ----------------------------------------------------------------------------------------------
# the deferred-import rules
# ----------------------------------------------------------------------------------------------


def deferred_import_problems(root: Path, deferred: dict[str, str], help_path: tuple[str, ...]) -> list[str]:
    """What breaks the two rules of :mod:`amfmedit.deferred` in the package folder ``root``."""
    modules = package_modules(root)
    imports = {m: imports_of(m, modules) for m in modules}
    heavy_here = {m: [i for i in imports[m] if not i.own and not i.in_function and i.target in deferred] for m in modules}

    def needs_deferred(module: str) -> bool:
        return any(heavy_here[m] for m in loaded_at_import((module,), modules, imports))

    def where(module: str, imp: Import) -> str:
        return f"{modules[module].relative_to(root.parent)}:{imp.line}: {imp.text}"

    problems = []
    for m in modules:
        statements = collections.defaultdict(list)
        for imp in imports[m]:
            if imp.in_function:
                statements[imp.line].append(imp)
        for imps in statements.values():
            for imp in imps:
                if not imp.own and imp.target not in deferred:
                    problems.append(f"{where(m, imp)}: {imp.target} is not a deferred package; import it at the top "
                                    "(or declare it in amfmedit.deferred.DEFERRED, saying what it costs)")
            own = [i for i in imps if i.own]
            if own and not any(i.target in deferred for i in imps if not i.own) \
                    and not any(needs_deferred(i.target) for i in own):
                problems.append(f"{where(m, own[-1])}: {own[-1].target} imports no deferred package; "
                                "import it at the top")
    imported = {i.target for m in modules for i in imports[m] if not i.own}
    problems += [f"{name}: declared deferred but imported nowhere; remove it from the list"
                 for name in deferred if name not in imported]
    for m, chain in loaded_at_import(help_path, modules, imports).items():
        for imp in heavy_here[m]:
            problems.append(f"{where(m, imp)}: {imp.target} at module level on the help path "
                            f"({' -> '.join(chain)}); import it inside the function that uses it")
    return problems


def test_heavy_packages_are_deferred_from_the_declared_list():
    problems = deferred_import_problems(PKG, DEFERRED, HELP_PATH)
    assert not problems, "\n".join(problems)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, src in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(src), encoding="utf-8")
    return root


PLANTED = {  # a package that keeps the rules: what the CLI imports at module level is light
    "__init__.py": "",
    "cli.py": """
        import json
        from pkg import light
        from pkg.lazy import LIGHT_NAME

        def run():
            import torch
            from pkg import heavy
            from pkg.lazy import NAME
            return json, light, LIGHT_NAME, torch, heavy, NAME
    """,
    "light.py": "from pkg import middle\n",
    "middle.py": "import numpy\n",
    "heavy.py": "import torch\n",
    "plain.py": "import json\n",
    "lazy/__init__.py": """
        LIGHT_NAME = 1

        def __getattr__(name):  # PEP 562: NAME comes from the heavy zoo on first use
            from pkg.lazy import zoo
            return getattr(zoo, name)
    """,
    "lazy/zoo.py": "import torch\nNAME = 1\n",
}
BROKEN_CLI = """
    import json
    from pkg import light
    from pkg.lazy import NAME

    def run():
        import torch
        import csv
        from pkg import plain
        return json, light, NAME, torch, csv, plain
"""


def test_the_deferred_check_passes_a_package_that_keeps_the_rules(tmp_path):
    assert deferred_import_problems(_package(tmp_path, PLANTED), {"torch": ""}, ("pkg.cli",)) == []


def test_the_deferred_check_fails_on_planted_violations(tmp_path):
    files = {**PLANTED, "middle.py": "import numpy\nimport torch\n", "cli.py": BROKEN_CLI}
    problems = deferred_import_problems(_package(tmp_path, files), {"torch": "", "pandas": ""}, ("pkg.cli",))
    assert sorted(problems) == sorted([
        "pandas: declared deferred but imported nowhere; remove it from the list",
        # torch reached from the CLI through two light modules, and through a face's __getattr__
        "pkg/middle.py:2: import torch: torch at module level on the help path (pkg.cli -> pkg.light -> pkg.middle);"
        " import it inside the function that uses it",
        "pkg/lazy/zoo.py:1: import torch: torch at module level on the help path (pkg.cli -> pkg.lazy.zoo);"
        " import it inside the function that uses it",
        # function-level imports of a package that is not deferred and of a module that needs nothing deferred
        "pkg/cli.py:8: import csv: csv is not a deferred package; import it at the top (or declare it in "
        "amfmedit.deferred.DEFERRED, saying what it costs)",
        "pkg/cli.py:9: from pkg import plain: pkg.plain imports no deferred package; import it at the top",
    ])


# ----------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_layers_point_down_and_there_is_no_import_cycle():
    modules = package_modules(PKG)
    assert set(map(_part, modules)) <= set(LAYERS), f"unknown top-level parts: {set(map(_part, modules)) - set(LAYERS)}"
    edges = collections.defaultdict(set)
    problems = []
    for name, path in modules.items():
        for imp in imports_of(name, modules):
            if not imp.own:
                continue
            target = imp.target
            a, b = _part(name), _part(target)
            if _is_face(name, modules) and target.startswith(name + "."):
                continue  # a package's __init__ re-exports its own modules
            if LAYERS[b] > LAYERS[a]:
                problems.append(f"{path.relative_to(PKG.parent)}:{imp.line}: {name} ({a}) imports {target} ({b}), "
                                "a higher layer")
            if b in FORBIDDEN.get(a, ()):
                problems.append(f"{path.relative_to(PKG.parent)}:{imp.line}: {a} may not import {b} ({name} -> {target})")
            edges[name].add(target)
    # cycles between modules (package faces excluded: they only gather their children)
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if _is_face(w, modules):
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
        if v not in index and not _is_face(v, modules):
            visit(v)
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles]
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------
# families
# ----------------------------------------------------------------------------------------------


def _member_names() -> dict[str, set[str]]:
    from amfmedit.models import FUSIONS, IMAGE_ENCODERS, TABULAR_ENCODERS
    from amfmedit.stages.kinds import PREDICTION_KINDS

    return {"fusion": set(FUSIONS), "tabular encoder": set(TABULAR_ENCODERS), "image encoder": set(IMAGE_ENCODERS),
            "prediction kind": set(PREDICTION_KINDS)}


# A family's own module and its registry may name its members; so may ``amfmedit bench``, which
# reproduces the paper's Table 3 for the named members it reports (AMF vs cross-attention, FT-Mamba
# vs FT-Transformer) and is no caller of the families.
FAMILY_HOMES = {"amfmedit/models/fusion.py", "amfmedit/models/tabular.py", "amfmedit/models/specs.py",
                "amfmedit/models/registry.py", "amfmedit/models/image.py", "amfmedit/bench.py",
                "amfmedit/stages/kinds/__init__.py", "amfmedit/stages/kinds/base.py",
                "amfmedit/stages/kinds/classification.py"}


def _string_constants(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def branching_problems(sources: dict[str, str], members: set[str]) -> list[str]:
    """``file:line`` of every comparison (``==``, ``in``, ``match``) with a member's name in ``sources``."""
    problems = []
    for rel, src in sources.items():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Compare):
                named, line = [s for part in [node.left, *node.comparators] for s in _string_constants(part)], node.lineno
            elif isinstance(node, ast.match_case) and isinstance(node.pattern, ast.MatchValue):
                named, line = _string_constants(node.pattern.value), node.pattern.lineno  # a case has no line of its own
            else:
                continue
            hit = sorted(set(named) & members)
            if hit:
                problems.append(f"{rel}:{line}: compares with member name(s) {hit}")
    return problems


def test_no_code_branches_on_a_family_members_name():
    members = set().union(*_member_names().values())
    sources = {str(p.relative_to(PKG.parent)): p.read_text(encoding="utf-8") for p in sorted(PKG.rglob("*.py"))}
    problems = branching_problems({k: v for k, v in sources.items() if k not in FAMILY_HOMES}, members)
    assert not problems, ("declare it on the member (class attribute) instead of branching on its name:\n"
                          + "\n".join(problems))


def test_the_branching_check_sees_a_comparison():
    """The check above, run on planted code: each branching form is flagged, other comparisons are not."""
    code = textwrap.dedent("""\
        if cfg.fusion == "amf": pass
        if kind in ("concat", "x"): pass
        match name:
            case "ft_mamba": pass
        if cfg.split == "test": pass
        if "amf" != other: pass
    """)
    members = set().union(*_member_names().values())
    assert branching_problems({"planted.py": code}, members) == [
        "planted.py:1: compares with member name(s) ['amf']",
        "planted.py:2: compares with member name(s) ['concat']",
        "planted.py:4: compares with member name(s) ['ft_mamba']",
        "planted.py:6: compares with member name(s) ['amf']",
    ]


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
STATS_THIRD_PARTY = {"numpy", "scipy", "sklearn", "sksurv", "matplotlib"}  # sksurv: survival metrics


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
