"""Which of the project's source files a module runs: its import closure, read from the code (no import).

Snakemake does not track imported code, so every rule takes the fingerprint of the files its command imports as
a parameter (workflow/rules/common.smk ``code``) and the trainer resumes only under the same fingerprint
(sdst.train). Both come from :func:`closure`: every ``import`` and ``from ... import`` statement of a module,
inside functions too, followed through the project's packages (``extract``, ``sdst``), with the ``__init__.py``
of every package on the way (Python runs them on import). ``exclude`` names modules not to follow, e.g. the other
architectures' modules behind the model registry, so that editing one model never re-trains another.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("extract", "sdst")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of project module ``name`` (a package's ``__init__.py``), or None if it is not one."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=None)
def _imports(path: Path, name: str, root: Path) -> tuple[str, ...]:
    """Project modules named by the import statements of one file (``name``: its module name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: from its package upwards
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parts, base] if p)
            found.append(base)
            found += [f"{base}.{a.name}" for a in node.names]  # `from pkg import module`
    return tuple(m for m in found if module_file(m, root) is not None)


def closure(modules, exclude=(), root: Path = ROOT) -> list[Path]:
    """Sorted source files of ``modules`` and of every project module they import, directly or not (with the
    packages' ``__init__.py``), not following the modules in ``exclude``."""
    exclude = set(exclude)
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the packages above it run first
            sub = ".".join(parts[:i])
            if sub in seen or (sub in exclude and sub not in modules):
                continue
            path = module_file(sub, root)
            if path is None:
                if sub == name:
                    raise ValueError(f"{name}: not a module of this project (under {root})")
                continue
            seen[sub] = path
            todo += _imports(path, sub, root)
    return sorted(set(seen.values()))


def fingerprint(files, root: Path = ROOT) -> str:
    """'N files, sha256 …' over each file's path below ``root`` and its content (not its timestamp)."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(Path(f).relative_to(root).as_posix().encode() + bytes(1) + Path(f).read_bytes() + bytes(1))
    return f"{len(files)} files, sha256 {digest.hexdigest()[:16]}"
