"""The labelled multi-camera set: `dataset check`, `models evaluate-loco`, `models explain`."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from roadsense.cli.output import print_figures

SHIPPED_SET = Path("models/data/footage")


def _dataset_check(args: argparse.Namespace) -> int:
    from roadsense.models.footage.multicamera import read_labelled_set

    data = read_labelled_set(args.data)
    frames: Counter[str] = Counter()
    for item in data.ranges:
        frames[item.label] += item.last_frame - item.first_frame + 1
    return print_figures(
        {
            "folder": str(args.data),
            "cameras": len(data.cameras),
            "clips": len(data.clips),
            "ranges": len(data.ranges),
            "labelled_frames": dict(frames),
            "labelled_by": data.comments["labelled_by"],
        },
        args.json,
    )


def add_dataset_check(dataset_commands: Any) -> None:
    """`dataset check`."""
    check = dataset_commands.add_parser(
        "check",
        help="check a labelled multi-camera set (cameras.csv, clips.csv, labels.csv)",
        description="Read the cameras (each with its region of interest), the clips and the "
        "hand-labelled frame ranges, and refuse any problem with file:line: an unknown "
        "level, overlapping ranges, a range past the end of its clip, a clip whose camera "
        "has no region, a clip not listed, a labels file that does not say who made it.",
    )
    check.add_argument(
        "--data", type=Path, default=SHIPPED_SET, help=f"set folder (default {SHIPPED_SET})"
    )
    check.add_argument("--json", action="store_true", help="print one JSON line")
    check.set_defaults(handler=_dataset_check)
