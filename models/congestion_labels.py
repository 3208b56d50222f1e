"""The congestion classes, ordered from free flow to jammed: one constant for the project."""

from __future__ import annotations

CONGESTION_LABELS: tuple[str, ...] = ("free", "light", "moderate", "heavy", "jammed")
