"""Query results in Snowflake's REST result format, as snowflake-connector-python 4.x reads them
(result_batch.py create_batches_from_response and ResultBatch._download; the nanoarrow iterators
CArrowChunkIterator.cpp and CArrowTableIterator.cpp), in place of fakesnow's one inline Arrow batch.

- Chunks. The first `first_rows` rows come inline (`rowsetBase64`); the rest as `chunks` of
  `chunk_rows` rows, each with `url`, `rowCount`, `uncompressedSize` and `compressedSize`, which
  the connector downloads itself with GET, sending the answer's `chunkHeaders` (`qrmk` too, the
  same key). A chunk is an Arrow IPC stream, gzip-compressed and served with
  `Content-Encoding: gzip`, from the emulator's own HTTP app under `PATH` at the address it
  listens on (not the one the client came through, as S3 is not Snowflake): a presigned-style URL
  (its `sig`) for an object that needs its SSE-C key headers, as S3 serves Snowflake's chunks.
  Snowflake sizes chunks by bytes (CLIENT_RESULT_CHUNK_SIZE caps a chunk's uncompressed size:
  https://docs.snowflake.com/en/release-notes/bcr-bundles/2026_04/bcr-2319); the emulator by rows,
  so that a test knows where a chunk ends. Snowflake's URLs stay valid for hours; the emulator
  keeps the newest results' chunks up to `max_bytes` (compressed) and answers an older chunk's GET
  with 404 NoSuchKey.
- Types per chunk (`snowflake_batch`), from the rows in that chunk: NUMBER (`logicalType` FIXED,
  with `precision` and `scale`) as the narrowest of int8, int16, int32 and int64 that holds the
  chunk's unscaled integers, decimal128 when one is beyond int64; TIME as int64 nanoseconds since
  midnight; TIMESTAMP_NTZ as a struct of `epoch` seconds and `fraction` nanoseconds, TIMESTAMP_TZ
  and LTZ with a `timezone` (1440, UTC) beside them; NULL as NULL (fakesnow sent a NULL timestamp
  as 1970-01-01); the scale of times and timestamps is 9, as fakesnow's row types say.
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import hashlib
import json
import secrets
import threading
from base64 import b64encode
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

PATH = "/dm-emulator/result-chunks/"
_SSE_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
_SSE_KEY = "x-amz-server-side-encryption-customer-key"
_SSE_KEY_MD5 = "x-amz-server-side-encryption-customer-key-md5"
_INT64 = (-(2**63), 2**63 - 1)
_NARROW = (("int8", 8, "SB1"), ("int16", 16, "SB2"), ("int32", 32, "SB4"), ("int64", 64, "SB8"))
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


@dataclass
class Capture:
    """fakesnow's result for the statement being answered: its Arrow table and row type."""

    table: Any = None
    rowtype: list[dict] | None = None


_CAPTURE: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("dm_emulator_result", default=None)


def fakesnows_to_sf(table: Any, rowtype: list[dict]) -> Any:
    """fakesnow's server's `to_sf`, in Snowflake's encoding. While the emulator answers a
    statement (a Capture is set), the table is kept for it and fakesnow writes no rows: the
    emulator sends them in chunks."""
    capture = _CAPTURE.get()
    if capture is not None:
        capture.table, capture.rowtype = table, rowtype
        return table.schema.empty_table()
    return snowflake_batch(table, rowtype)


def inline_rowset(table: Any, rowtype: list[dict]) -> str:
    """A whole result as one inline rowset (`rowsetBase64`) in Snowflake's encoding."""
    return b64encode(_ipc(snowflake_batch(table, rowtype))).decode() if table is not None and table.num_rows else ""


@dataclass
class _Result:
    sig: str
    key: str
    chunks: list[bytes]
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(len(chunk) for chunk in self.chunks)


class ResultChunks:
    """The emulator's result chunks: how a result is split, the chunks kept for their GETs, and
    the GETs served (`served`: (query id, chunk index) in order; the inline part is index 0)."""

    def __init__(self, first_rows: int = 1000, chunk_rows: int = 4000, max_bytes: int = 256 << 20):
        self.first_rows = first_rows
        self.chunk_rows = chunk_rows
        self.max_bytes = max_bytes
        self.served: list[tuple[str, int]] = []
        self._results: OrderedDict[str, _Result] = OrderedDict()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def capturing(self) -> Iterator[Capture]:
        """Keep fakesnow's result of the statement answered within (see fakesnows_to_sf)."""
        capture = Capture()
        token = _CAPTURE.set(capture)
        try:
            yield capture
        finally:
            _CAPTURE.reset(token)

    def answer(self, data: dict, table: Any, rowtype: list[dict], base_url: str) -> dict:
        """`data` (a query's answer) with the result's rows: the first inline, the rest as chunks."""
        first = table.slice(0, self.first_rows)
        data = {**data, "queryResultFormat": "arrow", "rowsetBase64": inline_rowset(first, rowtype)}
        if table.num_rows <= first.num_rows:
            return data
        query_id, sig = str(data.get("queryId") or secrets.token_hex(8)), secrets.token_urlsafe(16)
        chunks, described = [], []
        for start in range(first.num_rows, table.num_rows, max(self.chunk_rows, 1)):
            part = table.slice(start, max(self.chunk_rows, 1))
            raw = _ipc(snowflake_batch(part, rowtype))
            body = gzip.compress(raw, compresslevel=1)
            chunks.append(body)
            described.append({
                "url": f"{base_url}{PATH}{query_id}/data_{len(chunks)}?sig={sig}",
                "rowCount": part.num_rows, "uncompressedSize": len(raw), "compressedSize": len(body),
            })  # fmt: skip
        key = b64encode(secrets.token_bytes(32)).decode()
        self._keep(query_id, _Result(sig, key, chunks))
        headers = {_SSE_ALGORITHM: "AES256", _SSE_KEY: key, _SSE_KEY_MD5: _md5(key)}
        return {**data, "chunks": described, "chunkHeaders": headers, "qrmk": key}

    def _keep(self, query_id: str, result: _Result) -> None:
        with self._lock:
            self._results.pop(query_id, None)
            self._results[query_id] = result
            total = sum(kept.size for kept in self._results.values())
            while total > self.max_bytes and len(self._results) > 1:
                _, evicted = self._results.popitem(last=False)
                total -= evicted.size

    def sending(self, send: Any, capture: Capture, scope: dict) -> Any:
        """`send`, with a captured result's rows put in the answer (the rest passes unchanged)."""
        from starlette.concurrency import run_in_threadpool

        held: list[dict] = []

        async def answering(message: dict) -> None:
            if message["type"] == "http.response.start" and capture.table is not None:
                held.append(message)
                return
            if message["type"] != "http.response.body" or not held:
                await send(message)
                return
            held.append(message)
            if message.get("more_body"):
                return
            start, body = held[0], b"".join(m.get("body", b"") for m in held[1:])
            held.clear()
            table, rowtype = capture.table, capture.rowtype
            capture.table = capture.rowtype = None
            try:
                answer = json.loads(body)
            except ValueError:
                answer = None
            data = answer.get("data") if isinstance(answer, dict) and answer.get("success") else None
            if isinstance(data, dict) and data.get("queryResultFormat") == "arrow":
                answer["data"] = await run_in_threadpool(self.answer, data, table, rowtype, _base_url(scope))
                body = json.dumps(answer).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return answering

    async def serve(self, scope: dict, receive: Any, send: Any) -> None:
        """A chunk's GET, answered as S3 answers a presigned GET of an SSE-C object."""
        from starlette.responses import Response

        query_id, _, name = scope["path"][len(PATH) :].partition("/")
        index = int(name[5:]) if name.startswith("data_") and name[5:].isdigit() else 0
        with self._lock:
            result = self._results.get(query_id)
        sig = (parse_qs(scope.get("query_string", b"").decode()).get("sig") or [""])[0]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if result is None or not 1 <= index <= len(result.chunks):
            response = _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        elif not secrets.compare_digest(sig, result.sig):
            response = _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
        elif _SSE_KEY not in headers or headers.get(_SSE_ALGORITHM) != "AES256":
            response = _s3_error(
                400, "InvalidRequest", "The object was stored using a form of Server Side Encryption. "
                "The correct parameters must be provided to retrieve the object.",
            )  # fmt: skip
        elif not secrets.compare_digest(headers[_SSE_KEY], result.key):
            response = _s3_error(403, "AccessDenied", "Access Denied")
        else:
            self.served.append((query_id, index))
            body = result.chunks[index - 1]
            response = Response(body, media_type="binary/octet-stream", headers={"Content-Encoding": "gzip"})
        await response(scope, receive, send)


def snowflake_batch(table: Any, rowtype: list[dict]) -> Any:
    """A table (part of a result) as Snowflake sends it, each column typed by its own values."""
    import pyarrow as pa

    arrays, fields = [], []
    for name, column, info in zip(table.column_names, table.columns, rowtype, strict=True):
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        encoded, physical = _encode(array, info)
        metadata = {
            "logicalType": info["type"].upper(),
            "precision": str(info.get("precision") or 38),
            "scale": str(info.get("scale") or 0),
            "charLength": str(info.get("length") or 0),
        }
        if physical:
            metadata["physicalType"] = physical
        arrays.append(encoded)
        fields.append(pa.field(name, encoded.type, nullable=True, metadata=metadata))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _encode(array: Any, info: dict) -> tuple[Any, str | None]:
    import pyarrow as pa

    kind = info["type"]
    if pa.types.is_null(array.type):
        return (pa.nulls(len(array), pa.int8()), "SB1") if kind == "fixed" else (array.cast(pa.string()), None)
    if kind == "fixed" and (pa.types.is_integer(array.type) or pa.types.is_decimal(array.type)):
        return _fixed(array, info)
    if kind == "time" and pa.types.is_time(array.type):
        factor = 1_000_000_000 // _PER_SECOND[array.type.unit]
        return _times(array.cast(pa.int64()), factor), None
    if kind.startswith("timestamp") and pa.types.is_timestamp(array.type):
        return _timestamp(array, zoned=kind != "timestamp_ntz"), None
    if kind == "real" and pa.types.is_floating(array.type):
        return array.cast(pa.float64()), None
    return array, None


def _fixed(array: Any, info: dict) -> tuple[Any, str]:
    """NUMBER in the narrowest integer type holding the chunk's unscaled values, else decimal128."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    valid = np.ones(len(array), dtype=bool) if not array.null_count else array.is_valid().to_numpy(False)
    if pa.types.is_decimal(array.type):
        if not pa.types.is_decimal128(array.type):
            return array, "SB16"
        start = 2 * array.offset
        words = np.frombuffer(array.buffers()[1], dtype="<i8", count=start + 2 * len(array))[start:].reshape(-1, 2)
        low, high = words[:, 0], words[:, 1]
        if not np.all((high == (low >> 63)) | ~valid):  # a value beyond int64
            precision = min(max(info.get("precision") or 38, array.type.scale, 1), 38)
            return array.cast(pa.decimal128(precision, array.type.scale)), "SB16"
        values = np.where(valid, low, 0)
    else:
        bounds = pc.min_max(array)
        if bounds["max"].is_valid and bounds["max"].as_py() > _INT64[1]:  # an unsigned value beyond int64
            return array.cast(pa.decimal128(38, 0)), "SB16"
        values = np.where(valid, pc.fill_null(array, 0).to_numpy(), 0).astype(np.int64)
    lowest, highest = (int(values[valid].min()), int(values[valid].max())) if valid.any() else (0, 0)
    for name, bits, physical in _NARROW:
        if -(2 ** (bits - 1)) <= lowest and highest < 2 ** (bits - 1):
            return pa.array(values.astype(name), mask=~valid), physical
    raise AssertionError("an int64 value beyond int64")  # pragma: no cover - values are int64


def _times(nanoseconds_in_unit: Any, factor: int) -> Any:
    import pyarrow.compute as pc

    return nanoseconds_in_unit if factor == 1 else pc.multiply(nanoseconds_in_unit, factor)


def _timestamp(array: Any, zoned: bool) -> Any:
    """Epoch seconds (floored) and the nanoseconds after them, as Snowflake's TIMESTAMP(9)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    per_second = _PER_SECOND[array.type.unit]
    valid = np.ones(len(array), dtype=bool) if not array.null_count else array.is_valid().to_numpy(False)
    values = pc.fill_null(array.cast(pa.int64()), 0).to_numpy()
    epoch = np.floor_divide(values, per_second)
    fraction = ((values - epoch * per_second) * (1_000_000_000 // per_second)).astype(np.int32)
    arrays = [pa.array(epoch, pa.int64()), pa.array(fraction, pa.int32())]
    fields = [pa.field("epoch", pa.int64(), nullable=False), pa.field("fraction", pa.int32(), nullable=False)]
    if zoned:
        arrays.append(pa.array(np.full(len(array), 1440, dtype=np.int32)))
        fields.append(pa.field("timezone", pa.int32(), nullable=False))
    mask = None if valid.all() else pa.array(~valid)
    return pa.StructArray.from_arrays(arrays, fields=fields, mask=mask)


def _ipc(batch: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _md5(key: str) -> str:
    from base64 import b64decode

    return b64encode(hashlib.md5(b64decode(key)).digest()).decode()


def _base_url(scope: dict) -> str:
    """This server's own address, where the connector downloads the chunks: Snowflake's chunk URLs
    are a storage service's, not the address the client reached Snowflake at (through a proxy, say),
    so an outage of that address leaves the chunk downloads alone, as it leaves S3's."""
    server = scope.get("server")
    if server and server[1]:
        host = f"{server[0]}:{server[1]}"
    else:
        host = dict(scope["headers"]).get(b"host", b"127.0.0.1").decode()
    return f"{scope.get('scheme', 'http')}://{host}"


def _s3_error(status: int, code: str, message: str) -> Any:
    from starlette.responses import Response

    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(body, status_code=status, media_type="application/xml")
