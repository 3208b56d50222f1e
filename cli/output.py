"""What several commands print: figures as JSON or lines, training progress."""

from __future__ import annotations

import json
from typing import Any


def print_figures(figures: dict[str, Any], as_json: bool) -> int:
    """A benchmark's figures: one JSON line, or one ``key: value`` line each."""
    if as_json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


def training_progress(bar: Any) -> Any:
    """A progress callback (epoch, epochs, validation loss) drawing on a rich Progress."""
    task = bar.add_task("training", total=None)

    def progress(epoch: int, epochs: int, loss: float) -> None:
        bar.update(
            task,
            total=epochs,
            completed=epoch,
            description=f"training (validation loss {loss:.4f})",
        )

    return progress
