"""Learnable parameter count of a configured model, without features or a GPU.

``python -m sdst.params --config config.yaml --dataset qvh [--model sdst] [--set KEY=VALUE ...]`` prints JSON:
the resolved model parameters, the feature dims used (from the dataset's backbone and pooling), and the
count in both conventions ("M" = 10^6 and "Mi" = 2^20, which some peers print as "M").
"""

from __future__ import annotations

import argparse
import json
import sys

from extract.cli import exits_on_bad_input
from sdst.config import BACKBONE_DIMS, load_config, parse_set, resolve_run


def count(config: dict, dataset: str, model: str | None = None, sets: dict | None = None) -> dict:
    model = model or config["model"]["default"]
    run = resolve_run(config, dataset, model, 0, sets)
    backbone = config["datasets"][dataset]["backbone"]
    dims = {"video": BACKBONE_DIMS[backbone][config["extract"]["pooling"]], "text": BACKBONE_DIMS[backbone]["text"],
            "layers": len(config["extract"]["vision_layers"])}
    from sdst.model import build_model

    net = build_model(run["model"]["arch"], run["model"]["params"], dims["video"], dims["text"], dims["layers"])
    n = net.num_params()
    return {"dataset": dataset, "model": model, "arch": run["model"]["arch"], "dims": dims,
            "params": run["model"]["params"], "learnable_parameters": n,
            "millions": round(n / 1e6, 3), "mebi": round(n / 2**20, 3)}


@exits_on_bad_input
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.params", description=__doc__)
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default=None, help="variant name (default: model.default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override, e.g. share_weights=false or model.hidden_dim=128")
    args = p.parse_args(argv)
    result = count(load_config(args.config), args.dataset, args.model, parse_set(args.set))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
