"""The emulator's HTTP answers: a failed statement in Snowflake's body, fakesnow's answers
rewritten where Snowflake's differ (a login's master token, a missing table's words), and the
request's session token and body."""

from __future__ import annotations

import json
import re
from typing import Any

_MISSING_TABLE = re.compile(r"Catalog Error: Table with name (?P<name>[^ ]+) does not exist!.*", re.DOTALL)


def with_master_token(answer: dict) -> dict | None:
    """A login's answer with the master token Snowflake's carries: the connector ends a session
    (POST /session?delete=true, where the emulator drops the session's temporary objects) only
    when it holds one."""
    data = answer.get("data") if answer.get("success") else None
    if isinstance(data, dict) and data.get("token") and not data.get("masterToken"):
        data["masterToken"] = f"master-{data['token']}"
        return answer
    return None


def in_snowflakes_words(answer: dict) -> dict | None:
    """fakesnow's missing-table error in Snowflake's words."""
    text = answer.get("message") or ""
    match = _MISSING_TABLE.search(text) if not answer.get("success") else None
    if match is None:
        return None
    answer["message"] = f"SQL compilation error:\nTable '{match.group('name')}' does not exist or not authorized."
    return answer


def snowflake_errors(send: Any) -> Any:
    return rewritten(send, in_snowflakes_words)


def rewritten(send: Any, rewrite: Any) -> Any:
    """`send`, with the JSON answer as `rewrite` changes it (None: unchanged; the body held until
    complete)."""
    held: list[dict] = []

    async def rewriting(message: dict) -> None:
        if message["type"] == "http.response.start":
            held.append(message)
            return
        if message["type"] != "http.response.body" or not held:
            await send(message)
            return
        held.append(message)
        if message.get("more_body"):
            return
        start, body = held[0], b"".join(m.get("body", b"") for m in held[1:])
        try:
            changed = rewrite(json.loads(body))
        except (ValueError, AttributeError):
            changed = None
        if changed is not None:
            body = json.dumps(changed).encode()
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return rewriting


def session_token(scope: dict) -> str:
    """The session token of a request (`Snowflake Token="…"`), as fakesnow keys its sessions."""
    return dict(scope["headers"]).get(b"authorization", b"").decode()[17:-1]


def error_answer(message: str, code: int, sql_state: str) -> Any:
    """A failed statement, in the body Snowflake (and fakesnow) answer it with."""
    from starlette.responses import JSONResponse

    text = f"{int(code):06d}"
    return JSONResponse(
        {"data": {"errorCode": text, "sqlState": sql_state}, "code": text, "message": message, "success": False}
    )


async def no_body() -> dict:
    return {"type": "http.disconnect"}


async def request_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body
