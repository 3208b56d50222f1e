"""``roadsense measure TARGET``: the edge's measurement on a video file, an RTSP URL or a
folder of images.

The same detector, road zone, tracker, stopped rule and level rule as a roadside agent
(``roadsense.edge.measure``), and for video the edge's own PyAV reader. With ``--json``
it prints one JSON object per line, for other tools: per sample of a video
``{"frame", "t_s", "vehicles", "stopped", "occupancy", "level", "boxes"}``, per image of a
folder ``{"image", "vehicles", "boxes"}``, then ``{"summary": ...}``. A box is
``[x1, y1, x2, y2, class, score, track_id, stopped]`` in pixels of the original frame.
A target that is not a video or image, a folder without images or an unreachable URL
ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadsense.cli.output import print_figures
from roadsense.core.errors import CaptureError, ModelLoadError, RoadSenseError
from roadsense.models.shipped import DEFAULT_DETECTOR

if TYPE_CHECKING:  # the measuring stack loads only when the command runs
    from roadsense.edge.backends.detector import Detector
    from roadsense.edge.measure.window import Sample
    from roadsense.models.detection.zone import Polygon
    from roadsense.models.preprocess import Frame

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
URL_SECONDS = 30.0


class MeasureInputError(RoadSenseError):
    """A measure target or option that cannot be used."""


def _zone(args: argparse.Namespace) -> tuple[Polygon | None, Polygon | None]:
    """(zone, counting line) from --roi or --zone, as fractions of the frame."""
    if args.roi:
        try:
            x, y, w, h = (float(v) for v in args.roi.split(","))
        except ValueError as err:
            raise MeasureInputError(f"--roi {args.roi!r}: give x,y,w,h as fractions") from err
        if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 - x and 0 < h <= 1 - y):
            raise MeasureInputError(f"--roi {args.roi}: the region must lie inside the frame")
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)], None
    if args.zone is None:
        return None, None
    try:
        data = json.loads(args.zone.read_text(encoding="utf-8"))
        zone = [(float(px), float(py)) for px, py in data["zone"]]
        line = data.get("counting_line")
        counting = [(float(px), float(py)) for px, py in line] if line else None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MeasureInputError(
            f'--zone {args.zone}: expected JSON {{"zone": [[x, y], ...], '
            f'"counting_line": [[x, y], [x, y]]}} in fractions of the frame ({err})'
        ) from err
    if len(zone) < 3 or any(not (0 <= v <= 1) for point in zone for v in point):
        raise MeasureInputError(f"--zone {args.zone}: a zone needs 3 or more points within 0..1")
    return zone, counting


def _video(
    target: str, sample_hz: float, seconds: float | None
) -> Iterator[tuple[int, float, Frame]]:
    """(decoded frame index, seconds from the first frame, frame) at ``sample_hz``."""
    from roadsense.edge.capture.pyav import PyAvReader
    from roadsense.edge.config import CameraConfig

    camera = CameraConfig.model_validate(
        {
            "id": "measure",
            "source": target,
            "segment_id": "measure",
            "sample_hz": sample_hz,
            "capture": {"type": "pyav", "keyframes": "never"},
        }
    )
    try:
        reader = PyAvReader(camera, target)
    except CaptureError as err:
        raise MeasureInputError(str(err)) from err
    next_due = 0.0
    index = -1
    try:
        while (frame := reader.read()) is not None:
            index += 1
            t_s = frame.stream_time_s
            if seconds is not None and t_s > seconds:
                break
            if t_s + 1e-6 >= next_due:
                next_due = (int(t_s * sample_hz + 1e-6) + 1) / sample_hz
                yield index, t_s, frame.image()
    except CaptureError as err:
        raise MeasureInputError(f"{target}: {err}") from err
    finally:
        reader.close()


def _boxes(sample: Sample, tracked: bool) -> list[list[Any]]:
    return [
        [
            round(float(b[0]), 1),
            round(float(b[1]), 1),
            round(float(b[2]), 1),
            round(float(b[3]), 1),
            name,
            round(float(score), 3),
            int(track) if tracked and track >= 0 else None,
            bool(stopped) if tracked else False,
        ]
        for b, name, score, track, stopped in zip(
            sample.xyxy,
            sample.classes,
            sample.scores,
            sample.track_ids,
            sample.stopped,
            strict=True,
        )
    ]


class _Run:
    """One measurement run: detector, meter, output and what the summary needs."""

    def __init__(self, args: argparse.Namespace, detector: Detector) -> None:
        from roadsense.edge.measure.window import CameraMeter

        self.args = args
        self.detector = detector
        zone, line = _zone(args)
        self.meter = CameraMeter(args.sample_hz, zone, line, support=detector.card.thresholds)
        self.samples: list[Sample] = []
        self.shape: tuple[int, int] | None = None

    def measure(self, frames: list[Frame], times: list[float]) -> list[Sample]:
        found = self.detector.detect(frames)
        out = []
        for frame, t_s, detections in zip(frames, times, found, strict=True):
            self.shape = frame.shape[:2]
            out.append(self.meter.observe(t_s, detections, frame.shape[:2]))
        self.samples += out
        return out

    def still(self, name: str, frame: Frame, sample: Sample) -> None:
        import cv2

        from roadsense.edge.measure.still import draw_evidence

        if self.args.stills is not None:
            self.args.stills.mkdir(parents=True, exist_ok=True)
            still = draw_evidence(frame, sample, self.meter.zone)
            cv2.imwrite(str(self.args.stills / f"{name}.png"), still)


def _emit(args: argparse.Namespace, record: dict[str, Any], line: str) -> None:
    print(json.dumps(record) if args.json else line, flush=True)


def _measure_video(run: _Run, target: str) -> None:
    args = run.args
    seconds = args.seconds if args.seconds else (URL_SECONDS if _is_url(target) else None)
    batch: list[tuple[int, float, Frame]] = []

    def flush() -> None:
        samples = run.measure([f for _, _, f in batch], [t for _, t, _ in batch])
        for (index, t_s, frame), sample in zip(batch, samples, strict=True):
            record = {
                "frame": index,
                "t_s": round(t_s, 3),
                "vehicles": sample.vehicles,
                "stopped": int(sample.stopped.sum()),
                "occupancy": round(sample.occupancy, 4),
                "level": sample.level,
                "boxes": _boxes(sample, tracked=True),
            }
            _emit(args, record, f"frame {index:6d}  t {t_s:7.2f} s  {sample.vehicles:3d} "
                  f"vehicles  {int(sample.stopped.sum()):3d} stopped  occupancy "
                  f"{sample.occupancy:.2f}  {sample.level}")  # fmt: skip
            run.still(f"frame-{index:06d}", frame, sample)
        batch.clear()

    # A live stream goes one sample at a time: the tracker needs each before the next.
    size = 1 if _is_url(target) else run.detector.max_batch
    for item in _video(target, args.sample_hz, seconds):
        batch.append(item)
        if len(batch) >= size:
            flush()
    if batch:
        flush()
    if not run.samples:
        raise MeasureInputError(f"{target}: no frame decoded")


def _measure_folder(run: _Run, folder: Path) -> None:
    import cv2
    import numpy as np

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MeasureInputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    for start in range(0, len(files), run.detector.max_batch):
        chunk = files[start : start + run.detector.max_batch]
        frames: list[Frame] = []
        for path in chunk:
            image = cv2.imread(str(path))
            if image is None:
                raise MeasureInputError(f"{path}: not an image that can be read")
            frames.append(image.astype(np.uint8, copy=False))
        # Images of a folder are unrelated: no tracking or support, each its own time far apart.
        samples = run.measure(frames, [1e6 * (start + i) for i in range(len(frames))])
        for path, frame, sample in zip(chunk, frames, samples, strict=True):
            record = {"image": path.name, "vehicles": sample.vehicles,
                      "boxes": _boxes(sample, tracked=False)}  # fmt: skip
            _emit(run.args, record, f"{path.name}: {sample.vehicles} vehicles")
            run.still(path.stem, frame, sample)


def _levels(samples: list[Sample]) -> list[str]:
    return sorted({s.level for s in samples})


def _is_url(target: str) -> bool:
    from roadsense.edge.capture.video import NETWORK_SCHEMES

    return target.lower().startswith(NETWORK_SCHEMES)


def run_measure(args: argparse.Namespace) -> int:
    """The ``measure`` command."""
    from roadsense.edge.backends.detector import create_detector
    from roadsense.models.detection.zone import learn_zone

    if args.sample_hz <= 0:
        raise MeasureInputError(f"--sample-hz must be positive, not {args.sample_hz}")
    target = args.target
    path = Path(target)
    if not _is_url(target) and not path.exists():
        raise MeasureInputError(f"{target}: no such file or folder")
    options = {"intra_op_threads": args.threads} if args.threads else {}
    try:
        detector = create_detector(args.backend, args.model, options)
    except ModelLoadError as err:
        raise MeasureInputError(str(err)) from err
    started = time.perf_counter()
    run = _Run(args, detector)
    try:
        if path.is_dir():
            _measure_folder(run, path)
        else:
            _measure_video(run, target)
    finally:
        detector.close()
    seconds = time.perf_counter() - started
    samples = run.samples
    summary: dict[str, Any] = {
        "samples": len(samples),
        "vehicles_mean": round(sum(s.vehicles for s in samples) / len(samples), 3),
        "vehicles_max": max(s.vehicles for s in samples),
        "detector": detector.version,
        "seconds": round(seconds, 2),
        "samples_per_s": round(len(samples) / seconds, 2) if seconds else None,
    }
    if not path.is_dir():
        stopped = [int(s.stopped.sum()) for s in samples]
        summary |= {
            "stopped_mean": round(sum(stopped) / len(samples), 3),
            "occupancy_mean": round(sum(s.occupancy for s in samples) / len(samples), 4),
            "tracks": len({int(i) for s in samples for i in s.track_ids if i >= 0}),
            "levels": {
                lv: [s.level for s in samples].count(lv) for lv in {s.level for s in samples}
            },
        }
    if args.learn_zone and run.shape is not None:
        summary["learned_zone"] = learn_zone([s.xyxy for s in samples], run.shape)
    if args.json:
        print(json.dumps({"summary": summary}))
        return 0
    return print_figures(summary, False)


def measure_command(args: argparse.Namespace) -> int:
    """Run ``measure``; a target or option it cannot use is one line and exit status 2."""
    try:
        return run_measure(args)
    except MeasureInputError as err:
        print(f"roadsense: measure: {err}", file=sys.stderr)
        return 2


def add_measure_command(commands: Any) -> None:
    """``roadsense measure``."""
    measure = commands.add_parser(
        "measure",
        help="measure vehicles in a video, an RTSP stream or a folder of images",
        description="Detect vehicles, follow them and tell stopped from moving, in the road "
        "zone, as a roadside agent does; one JSON object per sample with --json.",
    )
    measure.add_argument("target", help="a video file, an rtsp:// or http(s):// URL, or a folder")
    measure.add_argument(
        "--sample-hz", type=float, default=1.0, help="samples per second of video (default 1)"
    )
    region = measure.add_mutually_exclusive_group()
    region.add_argument("--roi", help="road zone as a rectangle x,y,w,h (fractions of the frame)")
    region.add_argument(
        "--zone", type=Path, help="JSON file: zone polygon and optional counting line (fractions)"
    )
    measure.add_argument("--model", type=Path, default=DEFAULT_DETECTOR, help="detector ONNX")
    measure.add_argument("--backend", default="onnxruntime", help="onnxruntime, tensorrt or auto")
    measure.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all)")
    measure.add_argument(
        "--seconds", type=float, help=f"stop after this much video (URLs: {URL_SECONDS:g} s)"
    )
    measure.add_argument("--stills", type=Path, help="write each sample's evidence PNG here")
    measure.add_argument(
        "--learn-zone", action="store_true", help="propose a road zone from the vehicles seen"
    )
    measure.add_argument("--json", action="store_true", help="one JSON object per line")
    measure.set_defaults(handler=measure_command)
