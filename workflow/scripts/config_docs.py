"""config/README.md from the descriptions in workflow/schemas/config.schema.yaml and, for the training values,
from their one declaration (the dataclass fields of sdst/config.py, with the comment beside each), so neither can
drift:

    python workflow/scripts/config_docs.py > config/README.md

tests/test_conventions.py regenerates it and compares with the committed file.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
import typing
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
sys.path.insert(0, str(ROOT))  # sdst.config (torch-free) for the training values


def _resolve(node: dict, defs: dict) -> dict:
    """A node with its $ref merged in (the node's own keys win: a description beside a $ref)."""
    if "$ref" in node:
        return {**defs[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(node: dict, defs: dict) -> str:
    node = _resolve(node, defs)
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(_type(n, defs) for n in node["oneOf"])
    t = node.get("type", "")
    t = " or ".join(t) if isinstance(t, list) else t
    items = _resolve(node["items"], defs) if isinstance(node.get("items"), dict) else {}
    if t == "array" and items.get("type"):
        t = f"array of {items['type']}"
    bounds = [f"≥ {node['minimum']}" if "minimum" in node else "", f"> {node['exclusiveMinimum']}"
              if "exclusiveMinimum" in node else "", f"≤ {node['maximum']}" if "maximum" in node else "",
              f"< {node['exclusiveMaximum']}" if "exclusiveMaximum" in node else ""]
    return ", ".join([t] + [b for b in bounds if b]) if t else ", ".join(b for b in bounds if b)


def rows(node: dict, path: str, defs: dict, required=()):
    """(key, type, default, description) of every property below ``node``, depth first."""
    for key, child in node.get("properties", {}).items():
        child = _resolve(child, defs)
        dotted = f"{path}.{key}" if path else key
        default = f"`{json.dumps(child['default'])}`" if "default" in child else ("required" if key in required else "")
        yield dotted, _type(child, defs), default, " ".join(str(child.get("description", "")).split())
        yield from rows(child, dotted, defs, child.get("required", ()))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and (extra.get("properties") or extra.get("description")):
        extra = _resolve(extra, defs)
        if extra.get("properties"):
            yield from rows(extra, f"{path}.<name>", defs, extra.get("required", ()))


def field_comments(cls) -> dict[str, str]:
    """The comment written beside each field of a dataclass (and on the comment lines that continue it)."""
    comments: dict[str, str] = {}
    last = None
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+= value\(.*?\)\s*(?:#\s*(.*))?$", line)
        if m:
            last = m.group(1)
            comments[last] = (m.group(2) or "").strip()
        elif last and re.match(r"\s+#", line):
            comments[last] += " " + line.strip().lstrip("#").strip()
    return comments


def training_rows():
    """(key, type, default, description) of every training value: TrainConfig, its loss and matcher sections."""
    from sdst.config import LossConfig, MatcherConfig, TrainConfig
    from sdst.values import LIMITS, field_default, type_name

    for prefix, cls in (("train", TrainConfig), ("train.loss", LossConfig), ("train.matcher", MatcherConfig)):
        comments, hints = field_comments(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = field_default(cls, f.name)
            lim = {k: v for k, v in f.metadata.get(LIMITS, {}).items() if k != "of"}
            bounds = ", ".join(f"{ {'ge': '≥', 'gt': '>', 'le': '≤', 'lt': '<'}.get(k, k)} {v}" for k, v in lim.items())
            typ = type_name(hints[f.name]).removeprefix("an ").removeprefix("a ") + (f", {bounds}" if bounds else "")
            yield f"{prefix}.{f.name}", typ, f"`{json.dumps(default)}`", comments.get(f.name, "")


def render() -> str:
    schema = yaml.safe_load(SCHEMA.read_text())
    defs = schema.get("$defs", {})
    lines = ["# Configuration", "",
             "<!-- generated from workflow/schemas/config.schema.yaml by "
             "`python workflow/scripts/config_docs.py > config/README.md`; edit the schema, not this file -->", "",
             "The workflow reads `config.yaml` at the project root (`snakemake --configfile FILE` for another one). "
             + " ".join(str(schema.get("description", "")).split()), "",
             "`<name>` stands for a key you choose (a dataset, a variant, a report folder). Required keys without a "
             "default must be set; the values of `model.variants`, `model.datasets`, `train` and `train.datasets` "
             "are checked against their dataclasses when the workflow loads (sdst/config.py).", "",
             "| key | type | default | description |", "|---|---|---|---|"]
    for key, typ, default, desc in rows(schema, "", defs, schema.get("required", ())):
        desc = desc.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")  # a table cell, not HTML
        lines.append(f"| `{key}` | {typ} | {default} | {desc} |")
    lines += ["", "## Training values", "",
              "Declared once, with the table or section of the paper they come from, as the fields of "
              "`sdst/config.py` (`TrainConfig`, `LossConfig`, `MatcherConfig`); `config.yaml` writes only what "
              "differs, under `train` or `train.datasets.<name>` (`train.loss` and `train.matcher` merge key by "
              "key). [decided] marks a value the paper leaves open.", "",
              "| key | type | default | from |", "|---|---|---|---|"]
    for key, typ, default, desc in training_rows():
        desc = desc.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")
        lines.append(f"| `{key}` | {typ.replace('|', chr(92) + '|')} | {default} | {desc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
