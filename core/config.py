"""TOML configuration files validated by pydantic models.

Every configuration model derives from ``ConfigModel``: unknown keys are
errors and every field carries a description (a test walks them all). A bad
file becomes one ``ConfigError`` line naming the file, the key and what was
expected, which the CLI prints without a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from roadsense.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib


class ConfigModel(BaseModel):
    """Base of every configuration section: strict and self-describing."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ModelT = TypeVar("ModelT", bound=ConfigModel)


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts) or "(top level)"


def relative_to(base: Path, path: Path | None) -> Path | None:
    """``path`` resolved against ``base`` (a config file's folder) unless absolute."""
    return path if path is None or path.is_absolute() else base / path


def describe_validation_error(source: str, err: ValidationError) -> str:
    """Render a pydantic error as one line: file, key, what was expected."""
    problems = []
    for detail in err.errors(include_url=False):
        key = _key_path(tuple(detail["loc"]))
        if detail["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
        elif detail["type"] == "missing":
            problems.append(f"{key}: required key is missing")
        else:
            problems.append(f"{key}: {detail['msg']} (got {detail['input']!r})")
    return f"{source}: " + "; ".join(problems)


def parse_config(model: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    """Validate already-parsed data against a configuration model."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(source, err)) from err


def load_config(model: type[ModelT], path: str | Path) -> ModelT:
    """Read and validate a TOML configuration file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read configuration: {err.strerror}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    return parse_config(model, data, str(path))
