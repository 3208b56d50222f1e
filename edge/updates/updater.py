"""The device's side of a model rollout: act on ``ModelUpdate`` commands, one at a time.

One updater per model the device runs (``ModelSlot``: the congestion classifier, and the
vehicle detector of a measuring device); the agent hands each command to the updater of
the kind it names. A command is taken off the MQTT network thread into a queue; a worker
thread checks the signature first (with the fleet's public key), then uses the release
when the device already holds those bytes (no byte downloaded: this is how the cloud rolls
a device back) or downloads it over gRPC as this device (mutual TLS), resuming after the
bytes a cut or a SIGKILL left. The new model is loaded beside the running one (a TensorRT
engine is built then, under its cache key), self-tested on recent frames, and handed to
the inference loop, which swaps it in between two batches. Only then does the slot's
``state.json`` name it current, with the model it replaced as previous. Every command is
answered on ``reply/model`` with ok or a reason whose prefix says which check failed.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from roadsense.core.errors import ModelLoadError, ModelSignatureError, ModelUpdateError
from roadsense.core.mqtt import TlsConfig
from roadsense.edge.config import EdgeConfig
from roadsense.edge.updates.download import (
    DownloadedModel,
    ModelOffer,
    ModelUpdateCommand,
    check_room,
    download_for_update,
    read_model_update,
)
from roadsense.edge.updates.selftest import SelfTestResult
from roadsense.edge.updates.slots import ModelSlot, Reply, UpdatableModel
from roadsense.edge.updates.state import (
    HeldModel,
    ModelState,
    discard_release,
    held_release,
    load_state,
    prune_releases,
    remove_leftovers,
    save_state,
)
from roadsense.models.signing import verify_model
from roadsense.proto.client import ClientTls, open_channel
from roadsense.proto.model_kinds import CONGESTION
from roadsense.proto.refusals import Refusal
from roadsense.proto.v1 import fleet_pb2_grpc

logger = logging.getLogger(__name__)

UPDATE_NICENESS = 10
"""Added to the update thread's niceness (Linux: per thread)."""


class ModelUpdater:
    """Applies ModelUpdate commands in a worker thread, one after the other."""

    def __init__(self, config: EdgeConfig, slot: ModelSlot, reply: Reply) -> None:
        self._settings = config.models
        self._mqtt_tls = config.mqtt.tls
        self._slot = slot
        self._folder = slot.folder
        self._reply = reply
        remove_leftovers(self._folder)
        self._state = load_state(self._folder)
        self._in_force = self._model_in_force(slot.running)
        self._queue: queue.Queue[ModelUpdateCommand | None] = queue.Queue()
        self._stopping = threading.Event()
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"{slot.kind}-updates-{config.device_id}", daemon=True
        )
        self.last_error = ""
        """The reply error of the last update; empty when it was applied."""
        self.bytes_downloaded = 0
        """Model bytes received from the cloud by this run."""
        self._public_key = b""

    @property
    def kind(self) -> str:
        """The model kind this updater replaces (``proto/model_kinds.py``)."""
        return self._slot.kind

    @property
    def previous_version(self) -> str:
        """The version kept for rollback; empty when there is none."""
        return self._state.previous.version if self._state.previous else ""

    def start(self) -> None:
        """Start the worker; an update a restart cut short is taken up again first."""
        if self._state.pending:
            logger.info("resuming the model update cut short by the last stop")
            self._queue.put(read_model_update(self._state.pending))
        self._thread.start()

    def submit(self, update: ModelUpdateCommand) -> None:
        """Queue a ModelUpdate of this updater's kind, decoded once by the caller (called on
        the MQTT network thread: returns at once)."""
        self._queue.put(update)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the worker; a download in progress is cut (its bytes stay for next time)."""
        self._stopping.set()
        self._queue.put(None)
        with self._lock:
            if self._channel is not None:
                self._channel.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until every queued command was handled; False on timeout (tests, bench)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.05)
        return self._queue.unfinished_tasks == 0

    # Worker ----------------------------------------------------------------

    def _run(self) -> None:
        _lower_priority()
        while True:
            batch = [self._queue.get()]
            while True:  # what queued up meanwhile (e.g. for a device that was offline)
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if None in batch or self._stopping.is_set():
                    return
                self._handle_batch([update for update in batch if update is not None])
            except Exception:  # a bug: keep taking commands, and say so loudly
                logger.exception("model update worker failed on a command")
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _handle_batch(self, updates: list[ModelUpdateCommand]) -> None:
        """Apply only the last valid update of a batch (the state the cloud asked for
        last: on a metered link, a model it replaced is not worth fetching). Earlier ones
        of the same release share its outcome (a resent command); the others are answered
        'superseded'."""
        valid = [u for u in updates if u.offer is not None]
        for update in updates:
            if update.offer is None:
                self._handle(update)  # the reply says what is malformed
        if not valid:
            return
        *earlier, latest = valid
        outcome = self._handle(latest)
        for update in earlier:
            if outcome is not None and update.release == latest.release:
                ok, error, details = outcome
                settings = self._summary(update.rollout_id, update.version, details)
                self._reply(update.request_id, ok, error, settings)
            elif not self._stopping.is_set():
                self._supersede(update, latest)

    def _supersede(self, update: ModelUpdateCommand, latest: ModelUpdateCommand) -> None:
        error = ModelUpdateError(
            Refusal.SUPERSEDED,
            f"update {latest.request_id!r} (model {latest.version}) came after it; only that "
            "one is applied",
        )
        logger.info("model update %s (%s) %s", update.request_id, update.version, error)
        self._reply(
            update.request_id,
            False,
            str(error),
            self._summary(update.rollout_id, update.version, {}),
        )

    def _summary(self, rollout_id: str, requested: str, details: dict[str, Any]) -> dict[str, Any]:
        """The reply's settings_json: the model in force and what the update measured."""
        return {
            "model_version": self._in_force.version,
            "previous_version": self.previous_version or None,
            "rollout_id": rollout_id or None,
            "requested_version": requested or None,
            **details,
        }

    def _handle(self, update: ModelUpdateCommand) -> tuple[bool, str, dict[str, Any]] | None:
        """Apply one update and answer it; (ok, error, details), None when cut by a stop."""
        request_id, rollout_id, requested = update.request_id, update.rollout_id, update.version
        details: dict[str, Any] = {}
        error: ModelUpdateError | None = None
        try:
            if update.offer is None:
                raise ModelUpdateError(Refusal.COMMAND, update.problem)
            if update.offer.kind != self.kind:
                raise ModelUpdateError(
                    Refusal.COMMAND, f"a {update.offer.kind} update reached the {self.kind} updater"
                )
            self._verify(update.offer)
            self._save(self._state.with_changes(pending=update.payload))
            details = self._apply(update.offer, update.grpc_address)
        except ModelUpdateError as err:
            error = err
        if self._stopping.is_set():
            return None  # cut by the stop: the pending update is taken up at the next start
        self.last_error = str(error) if error else ""
        if error:
            logger.warning("model update %s (%s) refused: %s", request_id, requested, error)
        settings = self._summary(rollout_id, requested, details)
        self._reply(request_id, error is None, str(error or ""), settings)
        # A cut download stays pending: the next start resumes it after the bytes held.
        if (error is None or error.reason is not Refusal.DOWNLOAD) and self._state.pending:
            try:
                self._save(self._state.with_changes(pending=b""))
            except ModelUpdateError as err:
                logger.warning("the answered update stays recorded as pending: %s", err)
        return error is None, str(error or ""), details

    def _verify(self, offer: ModelOffer) -> None:
        key_file = self._settings.public_key_file
        if key_file is None:
            raise ModelUpdateError(
                Refusal.CONFIG, "no [models] public_key_file: this device cannot verify models"
            )
        try:
            public_key = key_file.read_bytes()
        except OSError as err:
            raise ModelUpdateError(
                Refusal.CONFIG, f"{key_file}: cannot read: {err.strerror}"
            ) from err
        try:
            verify_model(
                offer.signature, public_key, offer.sha256, offer.size, offer.version,
                offer.card_sha256,
            )  # fmt: skip
        except ModelSignatureError as err:
            if "public key" in str(err):
                raise ModelUpdateError(Refusal.CONFIG, f"{key_file}: {err}") from err
            raise ModelUpdateError(Refusal.SIGNATURE, str(err)) from err
        self._public_key = public_key

    def _apply(self, offer: ModelOffer, address: str) -> dict[str, Any]:
        in_force = self._in_force
        if offer.version == in_force.version:
            if offer.sha256 != in_force.sha256:
                raise ModelUpdateError(
                    Refusal.VERSION, f"model {offer.version} is in force with other bytes"
                )
            logger.info("model %s is already in force", offer.version)
            return {"bytes_downloaded": 0, "already_in_force": True}
        known = self._known_models(in_force)
        held = held_release(self._folder, offer.version, offer.sha256, known)
        details: dict[str, Any] = {"bytes_downloaded": 0, "already_held": held is not None}
        if held is None:
            downloaded = self._download(offer, address)
            held = HeldModel(offer.version, downloaded.onnx, offer.sha256)
            details["bytes_downloaded"] = downloaded.fetched
            details["resumed_from"] = downloaded.resumed_from
        # A model that ran here before (a rollback) is not held to the latency budget of
        # the one it replaces, which may be the faster, bad one.
        returning = (held.version, held.sha256) in {(m.version, m.sha256) for m in known}
        try:
            details.update(self._try_model(held, returning))
        except ModelUpdateError as err:
            if err.reason in (Refusal.LOAD, Refusal.SELF_TEST, Refusal.LATENCY) and not returning:
                discard_release(self._folder, held.version)  # not worth its disk
            raise
        self._in_force = held
        self._save(self._state.with_changes(current=held, previous=in_force))
        removed = prune_releases(self._folder, {held.version, in_force.version})
        logger.info(
            "model %s in force (previous %s kept for rollback%s)",
            held.version,
            in_force.version,
            f"; removed {', '.join(removed)}" if removed else "",
        )
        return details

    def _known_models(self, in_force: HeldModel) -> list[HeldModel]:
        """The models that ran on this device and may still be on its disk."""
        candidates = (
            self._state.current,
            self._state.previous,
            self._configured_model(),
            in_force,
        )
        return [m for m in candidates if m is not None]

    def _try_model(self, held: HeldModel, returning: bool) -> dict[str, Any]:
        """Load, self-test and swap in ``held``; what was measured."""
        candidate = self._load(held.onnx)
        try:
            result = self._self_test(candidate, returning)
            if self._stopping.is_set():  # taken up again at the next start
                raise ModelUpdateError(Refusal.SWAP, "the device is stopping")
            pause_ms = self._slot.swap(candidate)
        except BaseException:
            candidate.close()
            raise
        return {"self_test": result.as_json(), "swap_pause_ms": round(pause_ms, 3)}

    def _download(self, offer: ModelOffer, address: str) -> DownloadedModel:
        check_room(self._folder, offer, self._settings.min_free_bytes)
        channel = self._open_channel(address)
        try:
            downloaded = download_for_update(channel, offer, self._public_key, self._folder)
        finally:
            with self._lock:
                self._channel = None
            channel.close()
        self.bytes_downloaded += downloaded.fetched
        return downloaded

    def _open_channel(self, address: str) -> grpc.Channel:
        target = address or self._settings.grpc_address
        if not target:
            raise ModelUpdateError(
                Refusal.CONFIG,
                "the update names no gRPC address and [models] grpc_address is unset",
            )
        tls = self._settings.grpc_tls or self._mqtt_tls
        channel = _channel(target, tls)
        # Register the service's methods on the channel now, in this thread: grpcio
        # crashes (SIGSEGV) when a method is first registered on a channel that another
        # thread closes at that moment, and stop() closes it to cut a download. Later
        # stubs of the same channel reuse these registrations.
        fleet_pb2_grpc.FleetServiceStub(channel)
        with self._lock:
            self._channel = channel
        if self._stopping.is_set():
            channel.close()
            raise ModelUpdateError(Refusal.DOWNLOAD, "the device is stopping")
        return channel

    def _load(self, onnx: Path) -> UpdatableModel:
        try:
            return self._slot.load(onnx)
        except ModelLoadError as err:
            raise ModelUpdateError(Refusal.LOAD, str(err)) from err

    def _self_test(self, candidate: UpdatableModel, returning: bool) -> SelfTestResult:
        running = self._slot.running
        # A second instance of the running model, timed beside the new one on this thread
        # (a TensorRT context is not shared between threads).
        try:
            baseline = self._slot.load(running.model_path)
        except ModelLoadError as err:
            raise ModelUpdateError(
                Refusal.SELF_TEST, f"the running model cannot be loaded to compare with: {err}"
            ) from err
        try:
            frames = self._slot.recent_frames(
                self._settings.self_test_frames, self._settings.frames_wait_s
            )
            return self._slot.test(
                candidate,
                baseline,
                frames,
                latency_factor=None if returning else self._settings.latency_factor,
                rounds=self._settings.self_test_rounds,
            )
        finally:
            baseline.close()

    def _save(self, state: ModelState) -> None:
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            save_state(self._folder, state)
        except OSError as err:
            raise ModelUpdateError(
                Refusal.DISK, f"{self._folder}: cannot record the model state: {err.strerror}"
            ) from err
        self._state = state

    def _model_in_force(self, model: UpdatableModel) -> HeldModel:
        for held in (self._state.current, self._state.previous):
            if held is not None and held.onnx == model.model_path:
                return held
        version, sha256 = self._slot.card_of(model.model_path)  # checked when it was loaded
        return HeldModel(version, model.model_path, sha256)

    def _configured_model(self) -> HeldModel | None:
        """The model the configuration names (or the shipped one): held on every device."""
        onnx = self._slot.configured_onnx
        try:
            version, sha256 = self._slot.card_of(onnx)
        except ModelLoadError as err:
            logger.warning("the configured %s model cannot serve a rollback: %s", self.kind, err)
            return None
        return HeldModel(version, onnx, sha256)


def _lower_priority() -> None:
    """Run this thread (and the runtime threads it starts for the self-test) at a lower CPU
    priority, so the inference loop keeps its pace during a download and a self-test."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), UPDATE_NICENESS)
    except (AttributeError, OSError) as err:  # not Linux, or not allowed
        logger.info("model updates run at normal priority: %s", err)


def _channel(target: str, tls: TlsConfig | None) -> grpc.Channel:
    if tls is None:
        return open_channel(target)
    try:
        return open_channel(target, ClientTls.read(tls.ca_file, tls.cert_file, tls.key_file))
    except OSError as err:
        raise ModelUpdateError(
            Refusal.CONFIG, f"{err.filename}: cannot read the TLS file: {err.strerror}"
        ) from err


def route_update(payload: bytes, updaters: Mapping[str, ModelUpdater], reply: Reply) -> None:
    """Decode a ModelUpdate once and queue it with the updater of its kind (a malformed one
    with the classifier's, which answers what is wrong); a kind this device does not run is
    refused at once (``config``)."""
    update = read_model_update(payload)
    kind = update.offer.kind if update.offer is not None else CONGESTION
    updater = updaters.get(kind)
    if updater is not None:
        updater.submit(update)
        return
    error = ModelUpdateError(Refusal.CONFIG, f"this device runs no {kind} model")
    settings = {"rollout_id": update.rollout_id or None, "requested_version": update.version}
    reply(update.request_id, False, str(error), settings)
