"""amfmedit.stats is a leaf: it imports only numpy/scipy/sklearn/scikit-survival/matplotlib and amfmedit.errors/io."""

import ast
import sys
from pathlib import Path

import amfmedit.stats

ALLOWED_THIRD_PARTY = {"numpy", "scipy", "sklearn", "matplotlib", "sksurv"}  # sksurv: scikit-learn's survival metrics
ALLOWED_OWN = {"amfmedit.errors", "amfmedit.io", "amfmedit.stats"}


def test_stats_imports_stay_within_the_leaf_contract():
    root = Path(amfmedit.stats.__file__).parent
    bad = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                names = names[:1] if not node.module.startswith("amfmedit") else [node.module]
            for name in names:
                top = name.split(".")[0]
                if top == "amfmedit":
                    if not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED_OWN):
                        bad.append(f"{path.name}: {name}")
                elif top not in ALLOWED_THIRD_PARTY and top not in sys.stdlib_module_names and top != "__future__":
                    bad.append(f"{path.name}: {name}")
    assert bad == []
