"""Command line of stage 1: ``python -m extract <command> ...``.

Each command lives in the module that owns it; this file only dispatches, so that
``python -m extract --help`` stays fast (heavy imports happen inside the command). Bad input (ValueError),
a file that cannot be read or written (OSError) and a damaged store (CacheError) end the command with
``error: <message>`` naming the file and exit status 2; ``SDST_TRACEBACK=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, function that adds arguments, function that runs)
COMMANDS = {
    "inspect-checkpoint": ("extract.backbone", "add_inspect_args", "inspect_main"),
    "check": ("extract.checks", "add_args", "main"),
    "demo-data": ("extract.demo", "add_args", "main"),
    "init-store": ("extract.stores", "add_init_args", "init_main"),
    "shard": ("extract.shard", "add_shard_args", "shard_main"),
    "summary": ("extract.stores", "add_summary_args", "summary_main"),
    "verify": ("extract.repair", "add_verify_args", "verify_main"),
    "videos": ("extract.videos", "add_args", "main"),
    "export": ("extract.export", "add_args", "main"),
    "import": ("extract.importer", "add_args", "main"),
    "compare": ("extract.compare", "add_args", "main"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extract", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, add_args, _) in COMMANDS.items():
        module = importlib.import_module(module_name)
        getattr(module, add_args)(sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0]))
    args = parser.parse_args(argv)
    module_name, _, run = COMMANDS[args.command]
    from extract.cli import exits_on_bad_input

    return int(exits_on_bad_input(getattr(importlib.import_module(module_name), run))(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
