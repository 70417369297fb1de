"""The tree stays the pipeline: unique module names, few loose modules, imports at the top of modules.

The import contracts and the type checker run in ``make lint``; these are the rules they cannot express.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import trace_summaries

PACKAGE = Path(trace_summaries.__file__).parent
# Per-package entry points of a sub-command may share a name (`trace-summaries seed`, `embedding-worker`).
SHARED_NAMES = {"__init__.py", "command.py"}
# Imports of our own modules inside a function, each deferring a heavy dependency on purpose.
DEFERRED_IMPORTS = {("cli.py", "trace_summaries.defs.partition_sets")}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_two_modules_share_a_file_name() -> None:
    names = Counter(path.name for path in modules() if path.name not in SHARED_NAMES)
    assert len(names) > 50, "the scan must see the package"
    assert [name for name, count in names.items() if count > 1] == []


def test_at_most_six_loose_modules_at_the_top_of_the_package() -> None:
    loose = sorted(path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    assert len(loose) <= 6, loose


def test_our_modules_are_imported_at_the_top_of_a_module_unless_deferred_on_purpose() -> None:
    inside_functions: set[tuple[str, str]] = set()
    for path in modules():
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trace_summaries"):
                    inside_functions.add((str(path.relative_to(PACKAGE)), node.module or ""))
    assert inside_functions == DEFERRED_IMPORTS
