"""The embedded emulator's HTTP app: fakesnow's server, plus the statements the production path
sends that fakesnow does not implement, answered as Snowflake documents them.

- `ALTER SESSION SET QUERY_TAG = '…'` (sent before every export query; see snowflake/queries.py): Snowflake
  answers "Statement executed successfully." and tags the session's later queries in
  QUERY_HISTORY (https://docs.snowflake.com/en/sql-reference/sql/alter-session). The emulator has
  no QUERY_HISTORY, so the tag has nothing to change; the statement succeeds, as in Snowflake.
  fakesnow answers a statement matching one of a session's `nop_regexes` with that success, so
  the app adds this one statement's pattern to every login. Only QUERY_TAG is answered: any other
  ALTER SESSION still fails as fakesnow fails it.

- `COPY INTO @<stage>/… FROM ( <query> ) FILE_FORMAT = ( TYPE = PARQUET ) …` (method: unload):
  answered by local/unload.py, for the named stages the app is given (`stages`); the client receives
  the statement's output rows, never the data.

- `COPY INTO <table> FROM '@<stage>/…'` from those same stages, `ALTER TABLE … SWAP WITH …`,
  `INFER_SCHEMA` over an internal stage, and a COPY from an internal stage whose location is
  quoted (loads, and write_pandas): answered by loading.py.

- `INSERT OVERWRITE INTO …` (a replace): one statement, one transaction
  (https://docs.snowflake.com/en/sql-reference/sql/insert), where fakesnow commits its DELETE and
  its INSERT apart; sessions.py runs them in one.

- `IDENTIFIER(?)` with a bound string (write_pandas names its stage, file format and table so):
  Snowflake reads the string as an object name, qualified and quoted parts included
  (https://docs.snowflake.com/en/sql-reference/identifier-literal); fakesnow takes the whole
  string as one name. The app puts the name in the statement's text in place of the binding.

- A statement on a table that does not exist fails in Snowflake with "Table '…' does not exist or
  not authorized." (error 002003), and clients match that text (dagster-snowflake's IO manager
  ignores it when deleting a table's rows before the table's first write). fakesnow says DuckDB's
  "Catalog Error: Table with name … does not exist!"; the app answers Snowflake's words.

- A query's result in Snowflake's REST result format rather than fakesnow's one inline Arrow
  batch: the first rows inline, the rest in chunks the connector downloads with GET from this app,
  each chunk's NUMBER, TIME and TIMESTAMP columns typed as Snowflake types them (results.py); and
  NUMBER(38,0) beyond int64 and the nanoseconds of TIMESTAMP_NTZ(9) and TIME(9) where DuckDB can
  hold them (precision.py says exactly where).

The client sends exactly what it sends to Snowflake; the difference lives here, in the server.
"""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

from data_migration.local import changes, loading, precision, sessions
from data_migration.local import unload as unloading
from data_migration.local.answers import (
    error_answer,
    no_body,
    request_body,
    rewritten,
    session_token,
    snowflake_errors,
    with_master_token,
)
from data_migration.local.results import PATH as RESULT_CHUNKS_PATH
from data_migration.local.results import ResultChunks, fakesnows_to_sf, inline_rowset
from data_migration.local.stages import Stage

QUERY_TAG_STATEMENT = r"^\s*ALTER\s+SESSION\s+SET\s+QUERY_TAG\s*="
_HOP_BY_BODY = (b"content-encoding", b"content-length")


class EmulatorApp:
    """An ASGI app around fakesnow's (or `app`, for a wrapper such as the tests' recorder).

    `stages` are the named external stages `COPY INTO @<stage>` may unload to, by name as
    Snowflake stores it (add to it at any time: the tests point one at moto). `results` splits
    query results into chunks and serves them (results.py; its sizes may be changed at any time)."""

    def __init__(self, app: Any = None, stages: dict[str, Stage] | None = None, results: ResultChunks | None = None):
        import fakesnow.server

        if app is None:
            app = fakesnow.server.app
        self.app = app
        self.results = results or ResultChunks()
        fakesnow.server.to_sf = fakesnows_to_sf  # results in Snowflake's encoding, kept for the chunks
        precision.hold_snowflakes_precision()
        self.stages: dict[str, Stage] = dict(stages or {})
        self._temporary_stages: dict[str, list[tuple[str, str, str]]] = {}  # by session token
        self._transactions = sessions.Transactions()
        self.changes = changes.ChangeTokens()
        loading.read_keys_as_quoted_names()
        changes.serve_last_altered()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(RESULT_CHUNKS_PATH):
            await self.results.serve(scope, receive, send)
            return
        if path.endswith("/query-request"):
            await self._query(scope, receive, send)
            return
        if path.endswith("/session") and b"delete=" in scope.get("query_string", b""):
            self.end_session(session_token(scope))
        if not path.endswith("/login-request"):
            await self.app(scope, receive, send)
            return
        body = await request_body(receive)
        login = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
        parameters = login["data"].setdefault("SESSION_PARAMETERS", {})
        parameters["nop_regexes"] = [*parameters.get("nop_regexes", []), QUERY_TAG_STATEMENT]
        await self._forward(scope, json.dumps(login).encode(), rewritten(send, with_master_token))

    async def _forward(self, scope: dict, body: bytes, send: Any) -> None:
        """Pass a request on to fakesnow with `body` (plain JSON) as its body."""
        rewritten = [{"type": "http.request", "body": body, "more_body": False}]
        headers = [(name, value) for name, value in scope["headers"] if name.lower() not in _HOP_BY_BODY]

        async def replay() -> dict:
            return rewritten.pop(0) if rewritten else {"type": "http.disconnect"}

        await self.app({**scope, "headers": headers}, replay, send)

    async def _query(self, scope: dict, receive: Any, send: Any) -> None:
        body = await request_body(receive)
        raw = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
        request = json.loads(raw)
        inlined = _inline_identifiers(request)
        if inlined is not request:
            request, raw = inlined, json.dumps(inlined).encode()
        sql_text = request.get("sqlText", "")
        import fakesnow.server

        token = session_token(scope)
        conn = fakesnow.server.sessions.get(token)
        committed: dict = {}
        overwrite = None
        if conn is not None:
            try:
                sessions.check_values_rows(sql_text)
                if sessions.unset_comment(sql_text, conn):
                    await self._forward(scope, json.dumps({**request, "sqlText": loading.SUCCESS}).encode(), send)
                    return
                answered = self.changes.answered(sql_text, conn)
            except loading.StatementError as error:
                await error_answer(error.args[0], error.code, error.sql_state)(scope, receive, send)
                return
            if answered != sql_text:
                request = {**request, "sqlText": answered}
                sql_text, raw = answered, json.dumps(request).encode()
            was_open = self._transactions.is_open(token)
            self._transactions.before(token, conn, sql_text)
            now_open = self._transactions.is_open(token)
            committed = self.changes.before(token, conn, sql_text, was_open=was_open, now_open=now_open)
            stage = sessions.temporary_stage(sql_text, conn)
            if stage is not None:
                self._temporary_stages.setdefault(token, []).append(stage)
            overwrite = sessions.atomic_overwrite(sql_text, conn, in_transaction=now_open)
        if committed:
            send = self._recording(send, conn, committed)
        if overwrite is not None:  # its transaction ends first, then the changes it committed are recorded
            send = overwrite.sending(send)
        try:
            with self.results.capturing() as capture:  # a result's rows go out in chunks
                await self._route(scope, receive, self.results.sending(send, capture, scope), request, raw, sql_text)
        finally:
            if overwrite is not None:  # no whole answer (an error on the way): nothing of it stays
                overwrite.end(False)

    def _recording(self, send: Any, conn: Any, committed: dict) -> Any:
        """`send`, moving the committed changes' tokens before the client sees the statement's answer."""

        async def recording(message: dict) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.changes.after(conn, committed)
            await send(message)

        return recording

    async def _route(self, scope: dict, receive: Any, send: Any, request: dict, raw: bytes, sql_text: str) -> None:
        """The statement to the handler that answers it: the emulator's own, or fakesnow's."""
        from starlette.concurrency import run_in_threadpool

        if unloading.is_unload(sql_text):
            response = await run_in_threadpool(self._unload, scope, sql_text)
            await response(scope, receive, send)
            return
        load = loading.stage_load(sql_text)
        if load is not None and load.transformation:
            await self._transformation_load(scope, request, load, send)
            return
        if load is not None and load.stage in self.stages:
            await self._load_from_stage(scope, request, load, send)
            return
        # An internal stage (COPY, PUT), which fakesnow reads when the location is unquoted.
        unquoted = loading.unquoted_internal_locations(sql_text)
        if unquoted != sql_text:
            request, raw = {**request, "sqlText": unquoted}, json.dumps({**request, "sqlText": unquoted}).encode()
        inferred = loading.parse_infer_schema(sql_text, request.get("bindings"))
        if inferred is not None:
            await self._infer_schema(scope, receive, request, inferred, send)
            return
        swap = loading.parse_swap(sql_text)
        if swap is not None:
            await self._swap(scope, receive, request, swap, send)
            return
        await self._forward(scope, raw, snowflake_errors(send))

    async def _load_from_stage(self, scope: dict, request: dict, load: loading.StageLoad, send: Any) -> None:
        """fakesnow runs the COPY as written, from a local folder holding the stage's files."""
        from starlette.concurrency import run_in_threadpool

        stage = self.stages[load.stage]
        assert stage.local_folder is not None
        files = stage.local_folder(load.path, load.files)
        folder = await run_in_threadpool(files.__enter__)
        try:
            try:
                loading.refuse_empty_values_matched_by_name(request["sqlText"], folder, load.files)
            except loading.StatementError as error:
                await error_answer(error.args[0], error.code, error.sql_state)(scope, no_body, send)
                return
            url = folder.resolve().as_uri() + ("/" if load.path.endswith("/") or not load.path else "")
            sql_text = loading.from_local_folder(request["sqlText"], load, url)
            await self._forward(scope, json.dumps({**request, "sqlText": sql_text}).encode(), send)
        finally:
            await run_in_threadpool(files.__exit__, None, None, None)

    async def _transformation_load(self, scope: dict, request: dict, load: loading.StageLoad, send: Any) -> None:
        """A COPY with a transformation, from a named stage of the emulator or an internal stage
        named in any form Snowflake takes (quoted, qualified). fakesnow reads a transformation only
        from a stage it finds by a plain name, so the emulator gives it one for the statement: a
        stage of its own over a local folder that holds the files."""
        import uuid
        from contextlib import nullcontext
        from pathlib import Path

        import fakesnow.server
        from fakesnow.transforms.stage import internal_dir
        from starlette.concurrency import run_in_threadpool

        conn = fakesnow.server.sessions.get(session_token(scope))
        if conn is None:
            await self._forward(scope, json.dumps(request).encode(), send)
            return
        if load.stage in self.stages:
            local = self.stages[load.stage].local_folder
            assert local is not None
            files: Any = local(load.path, load.files)
        else:
            database, schema, name = sessions.names(load.reference, conn)
            files = nullcontext(Path(internal_dir(f"{database}.{schema}.{name}", load.path)))
        folder = await run_in_threadpool(files.__enter__)
        alias = f"DM_EMULATOR_{uuid.uuid4().hex[:12].upper()}"
        try:
            conn.cursor().execute(f"CREATE STAGE {alias} URL = '{Path(folder).resolve().as_uri()}/'")
            sql_text = loading.with_stage(request["sqlText"], load, f"@{alias}")
            await self._forward(scope, json.dumps({**request, "sqlText": sql_text}).encode(), snowflake_errors(send))
        finally:
            sessions.drop_stages(conn, [(conn.database, conn.schema, alias)])
            await run_in_threadpool(files.__exit__, None, None, None)

    async def _infer_schema(
        self, scope: dict, receive: Any, request: dict, statement: loading.InferSchema, send: Any
    ) -> None:
        """The staged files' columns, read from fakesnow's folder for the (internal) stage."""
        from pathlib import Path

        import fakesnow.server
        from fakesnow.copy_into import stage_url_from_var
        from sqlglot import exp

        conn = fakesnow.server.sessions.get(session_token(scope))
        if conn is None:
            await self._forward(scope, json.dumps(request).encode(), send)
            return
        try:
            folder = stage_url_from_var(
                statement.location.lstrip("@"),
                conn._duck_conn,
                conn.database,
                conn.schema,
                conn.table_stages,
                exp.to_table("unused"),
            )
            sql_text = loading.infer_schema_sql(statement, Path(folder))
        except loading.StatementError as error:
            await error_answer(error.args[0], error.code, error.sql_state)(scope, receive, send)
            return
        except Exception as error:  # noqa: BLE001 - answered as Snowflake answers a failed statement
            failed = error_answer(str(getattr(error, "msg", error)), getattr(error, "errno", 2003), "02000")
            await failed(scope, receive, send)
            return
        answer = {**request, "sqlText": sql_text, "bindings": None}
        await self._forward(scope, json.dumps(answer).encode(), send)

    async def _swap(self, scope: dict, receive: Any, request: dict, swap: loading.Swap, send: Any) -> None:
        """The swap on the session's connection, then fakesnow answers the statement's success."""
        import fakesnow.server
        from starlette.concurrency import run_in_threadpool

        conn = fakesnow.server.sessions.get(session_token(scope))
        if conn is not None:
            try:
                await run_in_threadpool(loading.swap, conn, swap)
                sessions.swap_comments(conn, swap.this, swap.other)
            except loading.StatementError as error:
                await error_answer(error.args[0], error.code, error.sql_state)(scope, receive, send)
                return
            except Exception as error:  # noqa: BLE001 - answered as Snowflake answers a failed statement
                await error_answer(str(getattr(error, "msg", error)), getattr(error, "errno", 2003), "42000")(
                    scope, receive, send
                )
                return
        # (Without a session fakesnow answers the sign-in error itself.)
        await self._forward(scope, json.dumps({**request, "sqlText": loading.SUCCESS}).encode(), send)

    def end_session(self, token: str) -> None:
        """At a session's end, as Snowflake ends one: its open transaction rolled back, its
        temporary stages dropped with their files. The client's logout ends it; a client that
        died cannot log out, and Snowflake ends its session later (a detached transaction that
        blocks another is aborted after 5 minutes idle: sql-reference/transactions); tests end
        such a session through this method."""
        import fakesnow.server

        conn = fakesnow.server.sessions.get(token)
        stages = self._temporary_stages.pop(token, [])
        if conn is None:
            return
        self._transactions.end(token, conn)
        self.changes.end(token)
        sessions.drop_stages(conn, stages)

    def _unload(self, scope: dict, sql_text: str) -> Any:
        """Answer a COPY INTO <location> as Snowflake does: files on the stage, output rows back."""
        import fakesnow.server
        from fakesnow.rowtype import describe_as_rowtype
        from starlette.responses import JSONResponse

        conn = fakesnow.server.sessions.get(session_token(scope))
        if conn is None:
            return JSONResponse(
                {"data": None, "code": "390104", "message": "User must login again to access the service.",
                 "success": False}, status_code=401,
            )  # fmt: skip
        try:
            statement = unloading.parse(sql_text)
            stage = self.stages.get(statement.stage)
            if stage is None:
                raise unloading.UnloadError(
                    f"SQL compilation error: Stage '{statement.stage}' does not exist or not authorized.", 2003, "02000"
                )
            cursor = conn.cursor()
            try:
                cursor.execute(statement.query)
            except Exception as error:
                raise unloading.UnloadError(str(getattr(error, "msg", error)), getattr(error, "errno", 2003)) from error
            columns = describe_as_rowtype(cursor._describe_last_sql())  # as fakesnow's own server reads them
            table = unloading.as_snowflake_writes(cursor._arrow_table, columns)
            zoned = [c["name"] for c in columns if c["type"] in ("timestamp_tz", "timestamp_ltz")]
            query_id = unloading.new_query_id()
            files = unloading.unload(statement, table, zoned, stage, query_id)
        except unloading.UnloadError as error:
            return error_answer(str(error), error.code, error.sql_state)
        output = conn.cursor()
        output.execute(unloading.output_sql(statement, files, table))
        rowtype = describe_as_rowtype(output._describe_last_sql())
        rows = output._arrow_table
        result = {"queryResultFormat": "arrow", "rowsetBase64": inline_rowset(rows, rowtype)}
        return JSONResponse(
            {
                "data": {
                    "parameters": [{"name": "TIMEZONE", "value": "Etc/UTC"}],
                    "rowtype": rowtype,
                    "total": rows.num_rows if rows is not None else 0,
                    "queryId": query_id,
                    "statementTypeId": 4096,  # a result set, which the connector reads as rows
                    "finalDatabaseName": conn.database,
                    "finalSchemaName": conn.schema,
                    **result,
                },
                "success": True,
            }
        )


_NAME_PART = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME_TEXT = re.compile(rf"^{_NAME_PART}(?:\.{_NAME_PART}){{0,2}}$")


def _inline_identifiers(request: dict) -> dict:
    """The request with each `IDENTIFIER(?)` whose binding is an object name written into the
    text, and the remaining bindings renumbered; the same request when there is none."""
    text, bindings = request.get("sqlText", ""), request.get("bindings") or {}
    if "identifier(?" not in text.lower() or not bindings:
        return request
    pieces, kept, number, position = [], {}, 0, 0
    index = 0
    while index < len(text):
        char = text[index]
        if char in "'\"":  # a literal or a quoted name: to its closing quote
            index = text.find(char, index + 1) + 1 or len(text)
            continue
        if text.startswith("/*", index):  # a comment holds no bindings
            index = text.find("*/", index + 2) + 2 if "*/" in text[index + 2 :] else len(text)
            continue
        if text.startswith("--", index):
            index = text.find("\n", index) + 1 or len(text)
            continue
        index += 1
        if char != "?":
            continue
        number += 1
        binding = bindings.get(str(number)) or {}
        value = binding.get("value")
        before, after = text[: index - 1].rstrip(), text[index:]
        if (
            before.lower().endswith("identifier(")
            and after.lstrip().startswith(")")
            and isinstance(value, str)
            and _NAME_TEXT.match(value)
        ):
            pieces.append(text[position : len(before) - len("identifier(")] + value)
            position = index + after.index(")") + 1
        else:
            kept[str(len(kept) + 1)] = binding
    if position == 0:
        return request
    pieces.append(text[position:])
    return {**request, "sqlText": "".join(pieces), "bindings": kept or None}
