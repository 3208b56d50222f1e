"""Configuration of model rollouts (``[rollout]`` in the cloud TOML): window and thresholds."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from roadsense.core.config import ConfigModel


class RolloutThresholds(ConfigModel):
    """How far canary devices may fall behind the control devices before a rollback."""

    max_failure_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of canary devices that may refuse the model for a model fault "
        "(signature:, sha256:, load:, self_test:, latency:) before the rollout fails; 0: any.",
    )
    max_latency_ratio: float = Field(
        default=1.5,
        gt=1,
        description="Most canary inference p95 (health) as a multiple of the control's.",
    )
    min_report_rate_ratio: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Least canary report rate (reports per device and minute) as a share of "
        "the control's.",
    )
    max_uncertain_increase: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="Most the canary's share of uncertain frames may exceed the control's "
        "(absolute, e.g. 0.15 = 15 points).",
    )
    max_level_shift: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Most the canary's mean Jensen-Shannon divergence (base 2, 0..1) of each "
        "device's level distribution against its own history may exceed the control's.",
    )
    max_vehicle_shift: float = Field(
        default=0.25,
        ge=0,
        description="Detector rollouts: most the canary's mean relative change of vehicles in "
        "view (each device's window against its own history) may differ from the control's, "
        "either way (0.25 = 25 points).",
    )
    max_stopped_shift: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="Detector rollouts: most the canary's mean change of the stopped share "
        "(stopped vehicles over vehicles in view, each device's window against its own "
        "history) may differ from the control's, either way (absolute, 0.15 = 15 points).",
    )


class RolloutConfig(ConfigModel):
    """The rollout controller: canary window, promotion stages, re-sends, thresholds."""

    enabled: bool = Field(default=True, description="Run the rollout controller and its RPCs.")
    client_id: str | None = Field(
        default=None,
        min_length=1,
        description="MQTT client id of the controller (sends ModelUpdate, hears replies); "
        "default: the ingest's client id with '-rollout'.",
    )
    cert_file: Path | None = Field(
        default=None,
        description="Client certificate of the controller's own broker account; needed when "
        "[mqtt.tls] uses a client certificate (the ingest's would displace the ingest).",
    )
    key_file: Path | None = Field(default=None, description="Private key of cert_file.")
    tick_s: float = Field(
        default=5.0, gt=0, le=600, description="Seconds between the controller's checks."
    )
    window_s: float = Field(
        default=900.0,
        gt=0,
        description="Seconds canary and control devices are watched after the canaries run "
        "the new model, before the verdict.",
    )
    apply_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Seconds a stage's devices get to answer before the rollout moves on "
        "without them (offline ones get the model when they come back).",
    )
    resend_s: float = Field(
        default=120.0,
        gt=0,
        description="Seconds before the ModelUpdate is sent again to a device that does not "
        "yet show the wanted version (it may have been offline).",
    )
    history_s: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds of each device's reports before the rollout that form its own "
        "level history (the Jensen-Shannon baseline).",
    )
    min_reports: int = Field(
        default=10,
        ge=1,
        description="Fewest reports a device needs in the window (and in its history) to "
        "count towards report rate and level shift; of a detector rollout, fewest measured "
        "reports to count towards the vehicle and stopped shifts.",
    )
    stages_percent: list[float] = Field(
        default_factory=lambda: [100.0],
        min_length=1,
        description="Promotion stages after the canary: cumulative percent of the remaining "
        "devices each stage reaches, ascending, the last 100.",
    )
    thresholds: RolloutThresholds = Field(
        default_factory=RolloutThresholds, description="Canary-versus-control limits."
    )

    @model_validator(mode="after")
    def _stages_and_account(self) -> RolloutConfig:
        stages = self.stages_percent
        if any(not 0 < s <= 100 for s in stages) or stages != sorted(set(stages)):
            raise ValueError(
                f"stages_percent {stages}: give ascending percents in (0, 100], each once"
            )
        if stages[-1] != 100:
            raise ValueError(f"stages_percent {stages}: the last stage must be 100")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        return self
