"""`curate app`: serves the Streamlit explorer (app/app.py) over a workspace's catalog.

The app is app/app.py of a checkout; an installed wheel carries it as a data file
(`<prefix>/share/curate/app/app.py`, pyproject.toml's data-files). Streamlit is the extra
`curate[app]`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from curate.commands.common import Subparsers, add_workspace
from curate.errors import CurateError
from curate.extras import install_hint, need
from curate.workspace import Workspace


def app_file() -> tuple[Path, Path | None]:
    """The explorer's app.py and the checkout holding it (None when installed from a wheel)."""
    import sysconfig

    from curate.config import shared_data

    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "app" / "app.py").exists():
        return checkout / "app" / "app.py", checkout
    installed = shared_data("app", "app.py")  # pip install, --user, --target, --prefix
    if installed is not None:
        return installed, None
    tail = Path("share", "curate", "app", "app.py")
    raise CurateError(
        f"app/app.py is missing: neither {checkout / 'app'} nor {sysconfig.get_path('data')}/"
        f"{tail.parent} holds it; reinstall curate ({install_hint('app')}) or run it from a "
        "curate checkout"
    )


def cmd_app(args: argparse.Namespace) -> int:
    """Serve app/app.py with Streamlit; a checkout's `curate` first on the app's PYTHONPATH."""
    import os

    need("app", "streamlit", what="curate app")
    app, checkout = app_file()
    ws = Workspace.resolve(args.workspace)
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.port",
        str(args.port),
        "--server.address",
        args.address,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--",
        "--workspace",
        str(ws.root),
    ]
    import ipaddress

    if not 0 < args.port < 65536:
        raise CurateError(f"--port {args.port}: choose a port from 1 to 65535")
    try:
        loopback = ipaddress.ip_address(args.address).is_loopback
    except ValueError:
        loopback = args.address == "localhost"
    host = args.address if ":" not in args.address else f"[{args.address}]"
    print(f"curate explorer on http://{host}:{args.port} (catalog {ws.catalog}); Ctrl-C stops it")
    if not loopback:
        print(
            f"warning: --address {args.address} exposes the explorer to every machine that can "
            f"reach this one on port {args.port}: they can browse the catalog, the images and "
            "the read-only SQL console. Leave --address out to keep it on this machine.",
            file=sys.stderr,
        )
    first = [str(checkout)] if checkout else []  # installed: curate is importable as it is
    path = os.pathsep.join(first + [p for p in [os.environ.get("PYTHONPATH")] if p])
    sys.stdout.flush()  # execve drops what is still buffered
    sys.stderr.flush()
    # the server replaces this process: whatever stops `curate app` (Ctrl-C, kill, a scheduler
    # ending the job) stops the server, and no orphan stays listening on the port
    os.execve(cmd[0], cmd, {**os.environ, "PYTHONPATH": path})
    return 0  # not reached (execve does not return)


def add_app(sub: Subparsers) -> None:
    """Add `curate app`: its parser, answered by `cmd_app`."""
    p = sub.add_parser("app", help="the Streamlit explorer over the catalog (read-only)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument(
        "--address",
        default="127.0.0.1",
        help="interface to serve on (default 127.0.0.1, this machine only; 0.0.0.0 exposes it)",
    )
    add_workspace(p)
    p.set_defaults(func=cmd_app)
