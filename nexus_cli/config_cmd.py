"""``nexus config init | validate | show``."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path


def example_text() -> str:
    return resources.files("nexusd.config").joinpath("nexus.example.toml").read_text("utf-8")


def init(path_arg: str | None, force: bool) -> int:
    from nexusd.config.loader import resolve_config_path

    path, _ = resolve_config_path(path_arg)
    if path.exists() and not force:
        print(f"Error: {path} already exists. Use --force to overwrite it.", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(example_text(), "utf-8")
    tmp.replace(path)
    print(f"Wrote {path}\nEdit it, then check it with: nexus config validate {path}")
    return 0


def validate(path_arg: str | None) -> int:
    from nexusd.config.loader import ConfigError, load_config

    try:
        loaded = load_config(path_arg)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    cfg = loaded.config
    where = str(loaded.path) if loaded.file_exists else f"{loaded.path} (absent: defaults)"
    print(
        f"OK: {where}: {len(cfg.backends)} backend(s), {len(cfg.routing.aliases)} alias(es), "
        f"{len(cfg.routing.fallbacks)} fallback chain(s)"
    )
    return 0


def show(path_arg: str | None, as_json: bool) -> int:
    from nexusd.config.loader import ConfigError, load_config

    try:
        loaded = load_config(path_arg)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    from nexusd.config.loader import to_plain

    data = to_plain(loaded.config)
    if as_json:
        print(
            json.dumps(
                {
                    "path": str(loaded.path),
                    "file_exists": loaded.file_exists,
                    "config": data,
                    "sources": loaded.sources,
                },
                indent=2,
            )
        )
        return 0
    import tomlkit

    print(
        f"# effective configuration (file: {loaded.path}{'' if loaded.file_exists else ', absent'})"
    )
    print(tomlkit.dumps(data))
    return 0


def default_output() -> Path:
    from nexusd.paths import default_config_file

    return default_config_file()
