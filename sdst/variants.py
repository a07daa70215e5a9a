"""What a configured model variant has beside its moments and saliency, for the workflow (common.smk) and
bench/comparison.py: refinement levels with their own moments (an SDST-family model, sdst.levels) and deformable
offsets (the paper's Fig. 4, sdst.diagnose). ``model`` is a resolved run's ``model`` section (sdst.config.resolve_run).
"""

from __future__ import annotations


def has_levels(model: dict) -> bool:
    """An SDST-family model: K refinement levels, each with its own moments."""
    return model["arch"] == "sdst"


def has_offsets(model: dict) -> bool:
    """A model that reads the video through deformable attention (RDSA or deformable CA)."""
    params = model["params"]
    return (has_levels(model) and params["sparse_attention"] in ("rdsa", "deformable_ca")
            and "deform" in params["sparse_order"])
