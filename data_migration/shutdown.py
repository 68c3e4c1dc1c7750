"""A quick process exit: no last pass of the cyclic garbage collector over every loaded module.

Each process that loads the project (the CLI, each `dagster` command, `dagster dev`'s code server,
each run) holds the objects of several hundred modules. At exit, CPython's finalization runs the
cyclic collector over all of them, which takes 1.5 to 2 s on this project's machine, most of it on
the pydantic models of `snowflake.core` that dagster-snowflake imports. An exit hook that freezes
the collector (`gc.freeze()`) skips that pass. Every other exit hook still runs, before or after
this one, and objects are still released by reference counting. Only `__del__` of objects caught in
reference cycles may then not run, which Python never promises at exit.
"""

from __future__ import annotations

import atexit
import gc

_installed = False


def install() -> None:
    """Register the exit hook (once per process)."""
    global _installed
    if not _installed:
        atexit.register(gc.freeze)
        _installed = True
