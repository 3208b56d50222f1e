"""A real RTSP server for the tests and the RTSP benchmark (GStreamer's gst-rtsp-server).

Runs under Debian's ``/usr/bin/python3``, where the GStreamer bindings load
(python3-gi, gir1.2-gst-rtsp-server-1.0; docs/pitfalls.md #14), never in the
project's virtual environment; ``roadsense.harness.rtsp`` starts it as a
subprocess. Standard library and GStreamer only.

    rtsp_server.py encode --input CLIP --output OUT.mkv --width 1920 --height 1080 \\
        --fps 25 --gop 25 [--preset veryfast] [--seconds S]
    rtsp_server.py serve --port P --mount /cam=OUT.mkv [--mount /resize=A.mkv,B.mkv] [--shared]

``encode`` makes H.264 once (scaled, at a fixed frame rate and a fixed GOP of
``--gop`` frames, no B-frames, as IP cameras send it), so that serving costs
no encoding. ``serve`` plays each mount's files one after the other, paced at
their own frame rate, to every client (TCP or UDP); a mount of several files
of different sizes is a stream that changes resolution mid-way. It prints
``ready PORT`` once it listens and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def encode(args: argparse.Namespace) -> int:
    """Encode the clip into Matroska H.264 at the asked size, rate and GOP."""
    line = (
        f'filesrc location="{args.input}" ! decodebin ! videoconvert ! videoscale ! videorate '
        f"! video/x-raw,format=I420,width={args.width},height={args.height},"
        f"framerate={args.fps}/1 "
        f"! x264enc speed-preset={args.preset} key-int-max={args.gop} bframes=0 "
        f"bitrate={args.bitrate} ! video/x-h264,profile=high "
        f'! h264parse ! matroskamux ! filesink location="{args.output}"'
    )
    pipeline = Gst.parse_launch(line)
    pipeline.set_state(Gst.State.PLAYING)
    bus = pipeline.get_bus()
    wanted = Gst.MessageType.EOS | Gst.MessageType.ERROR
    ending = False
    for _ in range(6000):  # 10 minutes at most
        message = bus.timed_pop_filtered(Gst.SECOND // 10, wanted)
        if message is not None:
            break
        ok, position = pipeline.query_position(Gst.Format.TIME)
        if args.seconds and not ending and ok and position >= args.seconds * Gst.SECOND:
            # Enough of the clip: end the stream so the muxer writes a whole file.
            pipeline.send_event(Gst.Event.new_eos())
            ending = True
    pipeline.set_state(Gst.State.NULL)
    if message is None or message.type != Gst.MessageType.EOS:
        detail = message.parse_error()[0].message if message else "timed out"
        print(f"encoding failed: {detail}", file=sys.stderr)
        return 1
    return 0


def _launch_line(files: list[str]) -> str:
    # config-interval=-1: SPS/PPS before every keyframe, so a client that joins
    # late, or a stream whose size changes, can always decode the next keyframe.
    payloader = "rtph264pay name=pay0 pt=96 config-interval=-1"
    if len(files) == 1:
        # One file needs no concat: concat before matroskademux now and then failed
        # to preroll (a not-linked error, or a stall that held every client of the
        # server; docs/limits.md), so it is kept to the mounts that change size.
        return f'( filesrc location="{files[0]}" ! matroskademux ! h264parse ! {payloader} )'
    demuxed = [f'filesrc location="{f}" ! matroskademux ! h264parse ! c.' for f in files]
    return f"( concat name=c ! {payloader} " + " ".join(demuxed) + " )"


def serve(args: argparse.Namespace) -> int:
    """Serve every mount until SIGTERM."""
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    server.set_backlog(256)  # many cameras connect at once (the default is 5)
    mounts = server.get_mount_points()
    for mount in args.mount:
        path, _, files = mount.partition("=")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(_launch_line(files.split(",")))
        factory.set_shared(args.shared)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"ready {args.port}", flush=True)
    loop.run()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    enc = commands.add_parser("encode", help="encode a clip to H.264 with a fixed GOP")
    enc.add_argument("--input", required=True)
    enc.add_argument("--output", required=True)
    enc.add_argument("--width", type=int, default=1920)
    enc.add_argument("--height", type=int, default=1080)
    enc.add_argument("--fps", type=int, default=25)
    enc.add_argument("--gop", type=int, default=25, help="frames between keyframes")
    enc.add_argument("--preset", default="veryfast", help="x264 speed preset")
    enc.add_argument("--bitrate", type=int, default=4000, help="kbit/s")
    enc.add_argument("--seconds", type=float, default=0.0, help="encode only this long")
    enc.set_defaults(handler=encode)
    srv = commands.add_parser("serve", help="serve encoded files over RTSP")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--mount", action="append", required=True, help="/path=FILE[,FILE...]")
    srv.add_argument("--shared", action="store_true", help="one pipeline for all clients")
    srv.set_defaults(handler=serve)
    args = parser.parse_args()
    Gst.init(None)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
