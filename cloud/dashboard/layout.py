"""Where each segment is drawn on the dashboard's network view.

Segments with configured coordinates are drawn from them (an equirectangular
projection is plenty at city scale). The others are laid out schematically:
segments of a known adjacency (the SZ-taxi roads) by a force-directed layout,
the rest on a ring beside them. Positions are in a 0..1000 x 0..1000 box.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadsense.cloud.city.segments import SegmentConfig

BOX = 1000.0
Point = tuple[float, float]


@dataclass(frozen=True)
class NetworkLayout:
    """Drawing of the city: a polyline per segment and the links between segments."""

    shapes: dict[str, list[Point]]
    """Segment id → polyline (one point: drawn as a node)."""
    links: list[tuple[str, str]]
    """Pairs of adjacent segments (schematic layouts only)."""


def load_adjacency(matrix_path: Path, segment_ids: Sequence[str]) -> list[tuple[str, str]]:
    """Undirected links from a headerless 0/1 matrix whose rows follow ``segment_ids``."""
    with matrix_path.open(newline="") as handle:
        rows = [[float(v) for v in row] for row in csv.reader(handle) if row]
    if len(rows) != len(segment_ids) or any(len(r) != len(segment_ids) for r in rows):
        raise ValueError(
            f"{matrix_path}: expected a {len(segment_ids)} x {len(segment_ids)} matrix"
        )
    return sorted(
        {
            (segment_ids[min(i, j)], segment_ids[max(i, j)])
            for i, row in enumerate(rows)
            for j, value in enumerate(row)
            if value and i != j
        }
    )


def force_layout(
    nodes: Sequence[str], links: Iterable[tuple[str, str]], steps: int = 300
) -> dict[str, Point]:
    """Fruchterman-Reingold positions in the unit square, deterministic (fixed seed)."""
    count = len(nodes)
    if count == 0:
        return {}
    index = {n: i for i, n in enumerate(nodes)}
    edges = np.array([(index[a], index[b]) for a, b in links if a in index and b in index])
    rng = np.random.default_rng(8)
    pos = rng.random((count, 2))
    k = math.sqrt(1.0 / count)
    temperature = 0.1
    for _ in range(steps):
        delta = pos[:, None, :] - pos[None, :, :]
        distance = np.maximum(np.linalg.norm(delta, axis=2), 1e-3)
        force = (delta / distance[..., None] * (k * k / distance)[..., None]).sum(axis=1)
        if len(edges):
            d = pos[edges[:, 0]] - pos[edges[:, 1]]
            length = np.maximum(np.linalg.norm(d, axis=1), 1e-3)
            pull = d * (length / k)[:, None]
            np.add.at(force, edges[:, 0], -pull)
            np.add.at(force, edges[:, 1], pull)
        # A weak pull to the centre keeps unlinked roads from drifting off.
        force -= (pos - 0.5) * 0.05 * count
        size = np.maximum(np.linalg.norm(force, axis=1), 1e-9)
        pos += force / size[:, None] * np.minimum(size, temperature)[:, None]
        temperature = max(temperature * 0.985, 0.002)
    low, high = pos.min(axis=0), pos.max(axis=0)
    pos = (pos - low) / np.maximum(high - low, 1e-9)
    return {n: (float(pos[i, 0]), float(pos[i, 1])) for n, i in index.items()}


def _projected(city: Sequence[SegmentConfig]) -> dict[str, list[Point]]:
    points = [p for s in city for p in s.coordinates]
    if not points:
        return {}
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    scale_x = math.cos(math.radians(sum(lats) / len(lats)))
    span = max((max(lons) - min(lons)) * scale_x, max(lats) - min(lats), 1e-9)
    return {
        s.id: [
            ((lon - min(lons)) * scale_x / span, (max(lats) - lat) / span)
            for lat, lon in s.coordinates
        ]
        for s in city
        if s.coordinates
    }


def _ring(ids: Sequence[str]) -> dict[str, Point]:
    if len(ids) == 1:
        return {ids[0]: (0.5, 0.5)}
    return {
        s: (
            0.5 + 0.45 * math.cos(2 * math.pi * i / len(ids)),
            0.5 + 0.45 * math.sin(2 * math.pi * i / len(ids)),
        )
        for i, s in enumerate(ids)
    }


def _place(points: Mapping[str, list[Point]], left: float, width: float) -> dict[str, list[Point]]:
    """Fit unit-square drawings into the column [left, left + width] of the box."""
    margin = 40.0
    usable = width - 2 * margin
    side = min(usable, BOX - 2 * margin)
    return {
        s: [(left + margin + x * side, margin + y * side) for x, y in line]
        for s, line in points.items()
    }


def network_layout(
    segment_ids: Iterable[str],
    city: Mapping[str, SegmentConfig],
    adjacency: Sequence[tuple[str, str]] = (),
) -> NetworkLayout:
    """The drawing of these segments: coordinates first, then adjacency, then a ring."""
    ids = sorted(set(segment_ids) | set(city))
    geographic = _projected([city[s] for s in ids if s in city and city[s].coordinates])
    linked_ids = {s for link in adjacency for s in link}
    graph_ids = [s for s in ids if s in linked_ids and s not in geographic]
    rest = [s for s in ids if s not in geographic and s not in graph_ids]
    groups: list[dict[str, list[Point]]] = []
    if geographic:
        groups.append(geographic)
    if graph_ids:
        links = [link for link in adjacency if link[0] in graph_ids and link[1] in graph_ids]
        groups.append({s: [p] for s, p in force_layout(graph_ids, links).items()})
    if rest:
        groups.append({s: [p] for s, p in _ring(rest).items()})
    shapes: dict[str, list[Point]] = {}
    # The biggest group gets the most room: widths follow the square root of sizes.
    weights = [math.sqrt(len(g)) for g in groups]
    left = 0.0
    for group, weight in zip(groups, weights, strict=True):
        width = BOX * 1.6 * weight / sum(weights)
        shapes.update(_place(group, left, width))
        left += width
    placed = set(shapes)
    links = [link for link in adjacency if link[0] in placed and link[1] in placed]
    return NetworkLayout(
        shapes={s: [(round(x, 1), round(y, 1)) for x, y in line] for s, line in shapes.items()},
        links=links,
    )
