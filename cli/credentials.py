"""The bearer token a command sends to the cloud's gRPC API."""

from __future__ import annotations

import os
from pathlib import Path

from roadsense.core.errors import RequestError

TOKEN_ENV = "ROADSENSE_TOKEN"


def api_token(token_file: Path | None) -> str | None:
    """The token in ``token_file`` (stripped), else ``ROADSENSE_TOKEN``, else None."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV)
    try:
        return token_file.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise RequestError(f"--token-file {token_file}: {err.strerror}") from err
