"""The evidence of a reading: the frame with what the camera measured drawn on it
(``roadsense.models.detection.still``, which the cloud's MeasureImage shares)."""

from __future__ import annotations

from roadsense.edge.measure.window import Sample
from roadsense.models.detection.still import draw_vehicles
from roadsense.models.detection.zone import Polygon, to_pixels
from roadsense.models.preprocess import Frame


def draw_evidence(frame: Frame, sample: Sample, zone: Polygon | None) -> Frame:
    """A copy of ``frame`` with the sample's vehicles, the zone and the figures drawn."""
    stopped = int(sample.stopped.sum())
    return draw_vehicles(
        frame,
        sample.xyxy,
        sample.classes,
        stopped=[bool(s) for s in sample.stopped],
        track_ids=[int(i) for i in sample.track_ids],
        zone=to_pixels(zone, frame.shape[:2]) if zone else None,
        text=f"{sample.vehicles} vehicles, {stopped} stopped, "
        f"occupancy {sample.occupancy:.2f}, {sample.level}",
    )
