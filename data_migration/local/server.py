"""The embedded emulator's HTTP app: fakesnow's server, plus the statements the production path
sends that fakesnow does not implement, answered as Snowflake documents them.

- `ALTER SESSION SET QUERY_TAG = '…'` (sent before every export query; see source.py): Snowflake
  answers "Statement executed successfully." and tags the session's later queries in
  QUERY_HISTORY (https://docs.snowflake.com/en/sql-reference/sql/alter-session). The emulator has
  no QUERY_HISTORY, so the tag has nothing to change; the statement succeeds, as in Snowflake.
  fakesnow answers a statement matching one of a session's `nop_regexes` with that success, so
  the app adds this one statement's pattern to every login. Only QUERY_TAG is answered: any other
  ALTER SESSION still fails as fakesnow fails it.

The client sends exactly what it sends to Snowflake; the difference lives here, in the server.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

QUERY_TAG_STATEMENT = r"^\s*ALTER\s+SESSION\s+SET\s+QUERY_TAG\s*="
_HOP_BY_BODY = (b"content-encoding", b"content-length")


class EmulatorApp:
    """An ASGI app around fakesnow's (or `app`, for a wrapper such as the tests' recorder)."""

    def __init__(self, app: Any = None):
        if app is None:
            import fakesnow.server

            app = fakesnow.server.app
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").endswith("/login-request"):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        login = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
        parameters = login["data"].setdefault("SESSION_PARAMETERS", {})
        parameters["nop_regexes"] = [*parameters.get("nop_regexes", []), QUERY_TAG_STATEMENT]
        rewritten = [{"type": "http.request", "body": json.dumps(login).encode(), "more_body": False}]
        headers = [(name, value) for name, value in scope["headers"] if name.lower() not in _HOP_BY_BODY]

        async def replay() -> dict:
            return rewritten.pop(0) if rewritten else {"type": "http.disconnect"}

        await self.app({**scope, "headers": headers}, replay, send)
