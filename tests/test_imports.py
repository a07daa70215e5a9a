"""The code a rule runs is computed from imports, not listed (issue 20, points 1 and 2).

extract.imports reads import statements with ``ast``; the expected sets here come from the standard library's
``modulefinder``, which scans the compiled bytecode of every code object (functions included): two readings of
the same code that must agree. Stage 1 (extract/) never imports stage 2 (sdst/), and no module imports itself
through others.
"""

from __future__ import annotations

import modulefinder
import re
from pathlib import Path

import pytest

from conftest import ROOT
from extract.imports import closure

PACKAGES = ("extract", "sdst")
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def found_by_modulefinder(module: str) -> set[str]:
    finder = modulefinder.ModuleFinder(path=[str(ROOT)])
    finder.import_hook(module)
    return {name for name, m in finder.modules.items() if m.__file__ and Path(m.__file__).is_relative_to(ROOT)}


def names(files) -> set[str]:
    return {".".join(Path(f).relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for f in files}


@pytest.mark.parametrize("module", MODULES)
def test_closure_agrees_with_modulefinder(module):
    assert names(closure([module])) == found_by_modulefinder(module)


def _graph() -> dict[str, set[str]]:
    from extract.imports import _imports, module_file

    return {m: {i for i in _imports(module_file(m), m, ROOT) if i in MODULES and i != m} for m in MODULES}


def test_stage_1_does_not_import_stage_2():
    wrong = {m: sorted(i for i in deps if i.startswith("sdst")) for m, deps in _graph().items()
             if m.startswith("extract") and any(i.startswith("sdst") for i in deps)}
    assert wrong == {}


def test_no_import_cycles():
    graph = _graph()

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    packages = {m for m in MODULES if (ROOT / m.replace(".", "/") / "__init__.py").is_file()}
    # a package and its modules import each other by design (importing extract.x runs extract/__init__.py)
    cycles = sorted(m for m in MODULES if m in reach(m) and m not in packages)
    assert cycles == []


def test_every_rule_fingerprints_the_module_its_command_runs():
    """Each rule's `code` names the module its shell command runs (`python -m extract <command>` runs
    extract.__main__ and the command's module, `python -m sdst.x` runs sdst.x): no hand-kept list of files."""
    from extract.__main__ import COMMANDS

    text = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    blocks = re.split(r"\n(?=(?:rule|checkpoint) |    rule:)", text)
    checked = 0
    for block in blocks:
        shell = re.search(r'python -m ([\w.]+)(?: ([\w-]+))?', block)
        if not shell or "shell:" not in block:
            continue
        declared = re.search(r"code=(?:arch_)?code\(([^)]*)\)", block)
        assert declared, block[:200]
        entries = re.findall(r'"([\w.]+)"', declared.group(1))
        module, command = shell.groups()
        runs = ["extract.__main__", COMMANDS[command][0]] if module == "extract" else [module]
        assert set(runs) <= set(entries), (runs, entries)
        assert "/" not in declared.group(1)  # module names, never file lists
        checked += 1
    assert checked >= 14
