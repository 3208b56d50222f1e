"""Commands an operator sends a device, and the device's replies.

``config`` changes the settings in force (``RemoteSettings``, persisted in the outbox file
so that they survive a restart); ``snapshot`` publishes a still of one camera, its privacy
regions pixelated; ``model`` goes to the model updater, which answers on its own. Every
command is answered on the device's reply topic, a refusal with the reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from roadsense.core.errors import CommandError
from roadsense.core.publisher import Publisher
from roadsense.core.timeutil import now_ms
from roadsense.edge.capture.camera import CapturedFrame
from roadsense.edge.commands.remote import (
    Overrides,
    apply_overrides,
    merge_overrides,
    parse_config_command,
    settings_summary,
)
from roadsense.edge.commands.snapshot import (
    SnapshotRequest,
    encode_snapshot,
    parse_snapshot_command,
)
from roadsense.edge.config import EdgeConfig
from roadsense.edge.outbox import Outbox
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.topics import parse_command_topic, reply_topic, snapshot_topic
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)

OVERRIDES_SETTING = "remote_config"


class RemoteSettings:
    """The configuration in force: the file's, with the operator's remote overrides."""

    def __init__(self, file_config: EdgeConfig, outbox: Outbox) -> None:
        self.file_config = file_config
        self._outbox = outbox
        self._lock = threading.Lock()
        self._overrides: Overrides = outbox.load_setting(OVERRIDES_SETTING) or {}
        try:
            self._current = apply_overrides(file_config, self._overrides)
        except CommandError as err:
            logger.warning("persisted remote settings no longer fit the config, ignored: %s", err)
            self._overrides = {}
            self._current = file_config

    @property
    def current(self) -> EdgeConfig:
        """The configuration in force now (a new object after each change)."""
        with self._lock:
            return self._current

    def apply(self, overrides: Overrides) -> None:
        """Merge ``overrides`` into those in force, persist them and put them in force."""
        with self._lock:
            merged = merge_overrides(self._overrides, overrides)
            new_config = apply_overrides(self.file_config, merged)
            self._outbox.save_setting(OVERRIDES_SETTING, merged)
            self._overrides = merged
            self._current = new_config

    def summary(self) -> str:
        """The settings in force, as a reply carries them."""
        return settings_summary(self.current)


class CommandHandler:
    """Acts on the commands of one device and answers each."""

    def __init__(
        self,
        settings: RemoteSettings,
        publisher: Publisher,
        still: Callable[[str], tuple[CapturedFrame | None, str]],
        submit_model: Callable[[bytes], None],
    ) -> None:
        self._settings = settings
        self._publisher = publisher
        self._still = still
        self._submit_model = submit_model
        self.snapshots_sent = 0

    @property
    def device_id(self) -> str:
        """This device's id."""
        return self._settings.file_config.device_id

    def on_command(self, topic: str, payload: bytes) -> None:
        """Act on one command message (the MQTT client's thread)."""
        parsed = parse_command_topic(topic)
        # Under cmd/# a deeper topic is no command of the contract: refused by its last level.
        name = parsed.name if parsed is not None else topic.rsplit("/", 1)[-1]
        request_id = ""
        try:
            if name == "snapshot":
                request = parse_snapshot_command(payload)
                request_id = request.request_id
                self._send_snapshot(request)
                self.reply(name, request_id, ok=True)
                return
            if name == "model":
                self._submit_model(payload)  # downloads and self-tests take their time
                return
            if name != "config":
                raise CommandError(f"unknown command {name!r}")
            request_id, overrides = parse_config_command(payload)
            self._settings.apply(overrides)
            logger.info("remote config %s applied: %s", request_id, overrides)
            self.reply(name, request_id, ok=True)
        except CommandError as err:
            logger.warning("command %s (%s) refused: %s", name, request_id, err)
            self.reply(name, request_id, ok=False, error=str(err))

    def _send_snapshot(self, request: SnapshotRequest) -> None:
        """Publish a still of one camera, its blur regions pixelated (privacy permitting)."""
        config = self._settings.current
        if not config.privacy.allow_snapshots:
            raise CommandError(
                "snapshots are off on this device ([privacy] allow_snapshots = false); "
                "frames do not leave it"
            )
        camera = next((c for c in config.cameras if c.id == request.camera_id), None)
        if camera is None:
            known = ", ".join(c.id for c in config.cameras)
            raise CommandError(f"unknown camera {request.camera_id!r} (this device has {known})")
        frame, state = self._still(camera.id)
        if frame is None:
            raise CommandError(f"camera {camera.id!r} has no frame to send (state {state})")
        limit = config.privacy.snapshot_max_width
        jpeg, width, height = encode_snapshot(
            frame.image,
            camera.blur,
            min(limit, request.max_width or limit),
            config.privacy.jpeg_quality,
        )
        still = telemetry_pb2.Snapshot(
            schema_version=SCHEMA_VERSION,
            device_id=self.device_id,
            camera_id=camera.id,
            request_id=request.request_id,
            capture_time_ms=frame.capture_time_ms,
            jpeg=jpeg,
            width=width,
            height=height,
            blurred_regions=len(camera.blur),
        )
        if camera.roi is not None:
            x, y, w, h = camera.roi
            still.roi.CopyFrom(telemetry_pb2.Roi(x=x, y=y, width=w, height=h))
        if not self._publisher.publish(
            snapshot_topic(self.device_id, camera.id), still.SerializeToString()
        ):
            raise CommandError("not connected to the broker; snapshot not sent")
        self.snapshots_sent += 1
        logger.info(
            "snapshot %s of %s sent: %dx%d, %d bytes, %d regions pixelated",
            request.request_id,
            camera.id,
            width,
            height,
            len(jpeg),
            len(camera.blur),
        )

    def reply(
        self, command: str, request_id: str, *, ok: bool, error: str = "", settings: str = ""
    ) -> None:
        """Answer ``command`` on the reply topic (with the settings in force by default)."""
        reply = telemetry_pb2.CommandReply(
            schema_version=SCHEMA_VERSION,
            device_id=self.device_id,
            request_id=request_id,
            command=command,
            ok=ok,
            error=error,
            time_ms=now_ms(),
            settings_json=settings or self._settings.summary(),
        )
        self._publisher.publish(reply_topic(self.device_id, command), reply.SerializeToString())
