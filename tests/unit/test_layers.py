"""The layer rules of Bicycle's code, checked on every import (read with ast).

Bicycle's code is bicycle.py, model.py, files.py and the packages cli/,
master/, remote/, scheduler/ and store/. (sandbox/, bench/ and tests/ are
tools around it and may import anything.) Dependencies point one way,
bicycle.py -> master -> scheduler, store, remote -> model, and:

- scheduler/ imports only model (and the standard library): its decisions are pure;
- store/ and remote/ never import each other, nor master/;
- only remote/ imports paramiko or fabric (SSH) and the docker SDK;
- only store/ imports tinydb;
- only the master/api/ package imports bottle;
- files.py (the private-file helpers every layer uses) and model.py import
  nothing of Bicycle's.

Every import counts: at the top of a module or inside a function, plain or
relative. An import made by name at run time (importlib) is not seen.
"""
import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODE = ("bicycle.py", "model.py", "files.py", "cli", "master", "remote", "scheduler", "store")
OURS = {"bicycle", "model", "files", "cli", "master", "remote", "scheduler", "store", "sandbox", "bench", "tests"}


def module_of(path):
    """master/api/__init__.py -> master.api, store/state.py -> store.state."""
    parts = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def code_files():
    for entry in CODE:
        path = os.path.join(ROOT, entry)
        if entry.endswith(".py"):
            yield path
            continue
        for folder, _, names in os.walk(path):
            yield from (os.path.join(folder, n) for n in sorted(names) if n.endswith(".py"))


def imports(path):
    """[(imported module, line)] of one file; `from a import b` counts as a and a.b."""
    module = module_of(path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"]
    return found


GRAPH = {module_of(path): imports(path) for path in code_files()}


def top(name):
    return name.split(".")[0]


def within(module, package):
    return module == package or module.startswith(package + ".")


def breaking(rule):
    """'importer imports imported (line N)' for every import for which rule(importer, imported) is True."""
    return [f"{importer} imports {imported} (line {line})"
            for importer, found in sorted(GRAPH.items()) for imported, line in found if rule(importer, imported)]


def test_the_walk_sees_the_code_and_its_imports():
    """The rules below cannot hold by finding nothing."""
    assert {"bicycle", "model", "files", "master.api", "master.daemon", "remote.transport", "scheduler.reconcile",
            "store.state"} <= set(GRAPH)
    assert ("master.api.desired", "store.state.Missing") in {(m, i) for m, found in GRAPH.items() for i, _ in found}
    assert any(i == "paramiko" for i, _ in GRAPH["remote.transport"])
    assert any(i == "remote.hostkeys" for i, _ in GRAPH["bicycle"])       # an import inside a function


def test_scheduler_imports_only_model_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"model", "scheduler"}
    assert breaking(lambda m, i: within(m, "scheduler") and top(i) not in allowed) == []


@pytest.mark.parametrize("layer, others", [("store", ("remote", "master")), ("remote", ("store", "master"))])
def test_store_and_remote_never_import_each_other_or_master(layer, others):
    assert breaking(lambda m, i: within(m, layer) and top(i) in others) == []


@pytest.mark.parametrize("library, owner", [("paramiko", "remote"), ("fabric", "remote"), ("docker", "remote"),
                                            ("tinydb", "store"), ("bottle", "master.api")])
def test_only_its_layer_imports_a_library(library, owner):
    assert breaking(lambda m, i: top(i) == library and not within(m, owner)) == []


@pytest.mark.parametrize("leaf", ["files", "model"])
def test_leaves_import_nothing_of_bicycles(leaf):
    assert breaking(lambda m, i: m == leaf and top(i) in OURS) == []
