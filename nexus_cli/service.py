"""``nexus service install | uninstall | status``: run Nexus as a user service.

Linux: a systemd user unit (``Type=notify``: the daemon says READY=1 only once both its
listeners answer). macOS: a launchd agent. Both run the absolute path of this
installation's ``nexus`` so a later ``pip install`` elsewhere cannot change what starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from xml.sax.saxutils import escape

UNIT_NAME = "nexus.service"
PLIST_NAME = "dev.nexus.daemon.plist"


def _template(name: str) -> str:
    return resources.files("nexus_cli.templates").joinpath(name).read_text("utf-8")


def nexus_command() -> list[str]:
    """Absolute command line that starts this installation's daemon."""
    beside_python = Path(sys.executable).absolute().parent / "nexus"
    if beside_python.is_file():
        return [str(beside_python), "serve"]
    return [str(Path(sys.executable).absolute()), "-m", "nexusd"]


def default_kind() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def unit_path(home: Path) -> Path:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return config / "systemd" / "user" / UNIT_NAME


def plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / PLIST_NAME


def render_unit(extra_args: list[str]) -> str:
    command = " ".join(_quote(a) for a in [*nexus_command(), *extra_args])
    return _template(UNIT_NAME).replace("{exec_start}", command)


def render_plist(home: Path, extra_args: list[str]) -> str:
    args = "\n".join(f"    <string>{escape(a)}</string>" for a in [*nexus_command(), *extra_args])
    log = home / "Library" / "Logs" / "nexus.log"
    return (
        _template(PLIST_NAME)
        .replace("{program_arguments}", args)
        .replace("{log_path}", escape(str(log)))
    )


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(c.isspace() for c in arg) else arg


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)


def install(kind: str | None, extra_args: list[str], home: Path | None = None) -> int:
    home = home or Path.home()
    kind = kind or default_kind()
    if kind == "systemd":
        path = unit_path(home)
        _write(path, render_unit(extra_args))
        print(
            f"Wrote {path}\n"
            "Enable and start it:\n"
            "  systemctl --user daemon-reload\n"
            "  systemctl --user enable --now nexus\n"
            "To keep it running when you are logged out (and start at boot):\n"
            f"  loginctl enable-linger {os.environ.get('USER', '$USER')}\n"
            "Logs: journalctl --user -u nexus -f"
        )
    else:
        path = plist_path(home)
        _write(path, render_plist(home, extra_args))
        print(
            f"Wrote {path}\n"
            "Load and start it:\n"
            f"  launchctl bootstrap gui/$(id -u) {path}\n"
            "It starts at login from now on. Logs: ~/Library/Logs/nexus.log"
        )
    return 0


def uninstall(kind: str | None, home: Path | None = None) -> int:
    home = home or Path.home()
    kind = kind or default_kind()
    path = unit_path(home) if kind == "systemd" else plist_path(home)
    if not path.exists():
        print(f"Nothing to remove: {path} does not exist")
        return 0
    if kind == "systemd":
        print("Stopping it first (if running): systemctl --user disable --now nexus")
        _run(["systemctl", "--user", "disable", "--now", "nexus"])
    else:
        _run(["launchctl", "bootout", f"gui/{os.getuid()}", str(path)])
    path.unlink()
    print(f"Removed {path}")
    return 0


def status(kind: str | None, home: Path | None = None) -> int:
    home = home or Path.home()
    kind = kind or default_kind()
    path = unit_path(home) if kind == "systemd" else plist_path(home)
    print(f"{kind} service file: {path} ({'installed' if path.exists() else 'not installed'})")
    if not path.exists():
        return 1
    if kind == "systemd":
        # systemctl's own exit code says whether the unit runs (3: inactive); pass it on
        code = _run(["systemctl", "--user", "--no-pager", "status", "nexus"], show=True)
        return 1 if code is None or code != 0 else 0
    return 0


def _run(cmd: list[str], show: bool = False) -> int | None:
    """Run a service-manager command; its exit code, or None when it is not installed."""
    if shutil.which(cmd[0]) is None:
        print(f"  ({cmd[0]} is not available here)")
        return None
    result = subprocess.run(cmd, capture_output=not show, text=True, check=False)
    if not show and result.returncode != 0 and result.stderr:
        print(f"  ({cmd[0]}: {result.stderr.strip()})")
    return result.returncode
