"""The conventions of the Snakemake workflow catalog: its YAML, snakefmt, `snakemake --lint`, a configuration
reference generated from the schema, and conda environments that agree with pyproject.toml."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from conftest import ROOT

BIN = Path(sys.executable).parent


def test_catalog_file_declares_conda_and_report():
    meta = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    assert set(meta) == {"usage"}
    assert set(meta["usage"]) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert meta["usage"]["software-stack-deployment"] == {"conda": True} and meta["usage"]["report"] is True
    # what it claims: every rule but `all` has a conda environment that exists, and rules mark report outputs
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    assert rules.count("conda:") == rules.count("\nrule ") + rules.count("\ncheckpoint ") + rules.count("\n    rule:")
    for env in set(line.split('"')[1] for line in rules.splitlines() if line.strip().startswith('"../../envs/')):
        assert (ROOT / "workflow" / "rules" / env).resolve().is_file(), env
    assert "report(" in rules


def test_rules_are_snakefmt_formatted():
    snakefmt = BIN / "snakefmt" if (BIN / "snakefmt").exists() else shutil.which("snakefmt")
    if snakefmt is None:
        pytest.skip("snakefmt is not installed (pip install -e .[test])")
    proc = subprocess.run([str(snakefmt), "--check", "Snakefile", "workflow/"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"run `snakefmt Snakefile workflow/`:\n{proc.stderr[-3000:]}"


def test_snakemake_lint_is_clean():
    proc = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition!" in out, out[-4000:]


def _config_docs():
    spec = importlib.util.spec_from_file_location("config_docs", ROOT / "workflow" / "scripts" / "config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_generated_from_the_schema_and_complete():
    docs = _config_docs()
    assert (ROOT / "config" / "README.md").read_text() == docs.render(), (
        "config/README.md is stale: python workflow/scripts/config_docs.py > config/README.md")
    schema = yaml.safe_load(docs.SCHEMA.read_text())
    undocumented = [key for key, _, _, desc in docs.rows(schema, "", schema["$defs"]) if not desc]
    assert undocumented == []
    # every top-level key of config.yaml is described
    keys = {key for key, *_ in docs.rows(schema, "", schema["$defs"])}
    assert set(yaml.safe_load((ROOT / "config.yaml").read_text())) <= keys


def _pyproject_requirements() -> dict[str, Requirement]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta["optional-dependencies"].values() for r in extra]
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


def _env_requirements(env: dict) -> list[tuple[str, SpecifierSet]]:
    out = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            out += [(Requirement(r).name.lower(), Requirement(r).specifier) for r in dep.get("pip", [])]
        elif not dep.startswith(("python", "pip")):  # conda spec: name>=x,<y (also name=x)
            name = dep.split("=")[0].split(">")[0].split("<")[0].strip()
            out.append((name.lower(), SpecifierSet(dep[len(name):].strip() or "")))
    return out


@pytest.mark.parametrize("env_file", sorted(p.name for p in (ROOT / "envs").glob("*.yaml")))
def test_conda_environments_match_pyproject(env_file):
    env = yaml.safe_load((ROOT / "envs" / env_file).read_text())
    reqs = _pyproject_requirements()
    for name, spec in _env_requirements(env):
        assert name in reqs, f"envs/{env_file}: {name} is not a dependency in pyproject.toml"
        assert spec == reqs[name].specifier, f"envs/{env_file}: {name}{spec} but pyproject.toml says {reqs[name]}"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    version = python.split("=", 1)[1]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(version), f"envs/{env_file}: {python} outside requires-python {requires}"


MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 80  # issue 20 point 4; a longer one says why ("long because ...")


def _long_without_reason() -> list[str]:
    import ast

    found = []
    for path in sorted([*ROOT.glob("sdst/**/*.py"), *ROOT.glob("extract/**/*.py"), *ROOT.glob("workflow/scripts/*.py")]):
        tree = ast.parse(path.read_text())
        rel = path.relative_to(ROOT)
        lines = path.read_text().count("\n")
        if lines > MAX_FILE_LINES and "long because" not in (ast.get_docstring(tree) or "").lower():
            found.append(f"{rel}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and "long because" not in (ast.get_docstring(node) or "").lower():
                    found.append(f"{rel}:{node.lineno} {node.name}(): {n} lines")
    return found


def test_no_file_or_function_is_long_without_saying_why():
    """Files by role, functions that do one thing: a module past 400 lines or a function past 80 says in its
    docstring why it stays long ("long because ...")."""
    assert _long_without_reason() == []
