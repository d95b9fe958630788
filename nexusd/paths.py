"""Where Nexus keeps its files (platformdirs), with ``NEXUS_*`` overrides for tests and services."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "nexus"


def config_dir() -> Path:
    return Path(os.environ.get("NEXUS_CONFIG_DIR") or platformdirs.user_config_dir(APP))


def default_config_file() -> Path:
    return config_dir() / "nexus.toml"


def state_dir() -> Path:
    return Path(os.environ.get("NEXUS_STATE_DIR") or platformdirs.user_state_dir(APP))


def runtime_dir() -> Path:
    return Path(os.environ.get("NEXUS_RUNTIME_DIR") or platformdirs.user_runtime_dir(APP))
