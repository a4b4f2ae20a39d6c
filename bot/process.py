"""Which bot process this is, when several share one database (for #status and the job claims)."""

from __future__ import annotations

import os
import socket


def process_name() -> str:
    """Host and process id, e.g. `box-2:4711`."""
    return f"{socket.gethostname()}:{os.getpid()}"
