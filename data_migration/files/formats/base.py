"""The streaming writer every file type shares, and the registry that maps file_type to it.

A writer only turns Arrow batches into bytes on a sink; it never knows where the bytes go.
"""

from __future__ import annotations

import gzip
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc


class FormatWriter(ABC):
    """Write one file from a stream of batches that all have `schema`.

    A writer with options (see ExportSpec.format_options) takes them as keyword arguments.
    """

    def __init__(self, sink: BinaryIO, schema: pa.Schema):
        self.sink = sink
        self.schema = schema

    @abstractmethod
    def write_batch(self, batch: pa.RecordBatch) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Finish the file (footer, flush). Not called when the export fails."""

    def abandon(self) -> None:  # noqa: B027 - optional: most writers hold nothing to drop
        """The export failed: drop what is buffered without writing anything more."""

    @classmethod
    def batch_encoder(cls, schema: pa.Schema, **options: Any) -> Callable[[pa.RecordBatch], Any] | None:
        """For formats that encode each batch on its own, with no state carried from one to the
        next: a thread-safe function giving a batch's bytes exactly as write_batch would write
        them, so that batches can be encoded ahead on several threads (see files/pipeline.py) and
        handed to write_encoded. None (the default) for formats that cannot."""
        return None

    def write_encoded(self, data: Any) -> None:
        """Write the bytes batch_encoder gave for one batch."""
        self.sink.write(data)


@dataclass(frozen=True)
class Format:
    name: str
    content_type: str
    writer: type[FormatWriter]
    reader: type[FormatReader]


class FormatReader(ABC):
    @staticmethod
    @abstractmethod
    def read(source: BinaryIO) -> pa.Table: ...

    @staticmethod
    @abstractmethod
    def count_rows(source: BinaryIO) -> int:
        """Parse every row, in bounded memory, and return how many there are.

        Raises ValueError (or a reader's own error) when the file does not parse.
        """

    @staticmethod
    def rows_from_metadata(read_suffix: Callable[[int], tuple[int, bytes]]) -> int | None:
        """The row count the file states about itself, read from its end without reading the rows
        (`read_suffix(n)` gives the file's size and last n bytes); None for formats that state none.
        Raises ValueError when the end of the file is not what the format writes there."""
        return None


def decimal_text(array: pa.Array) -> pa.Array:
    """Exact fixed-point text for a decimal column: 0.000000001, never Arrow's 1E-9."""
    text = array.cast(pa.string())
    scientific = pc.fill_null(pc.match_substring(text, "E"), False)
    if not pc.any(scientific).as_py():
        return text
    fixed = [format(value, "f") for value in array.filter(scientific).to_pylist()]
    return pc.replace_with_mask(text, scientific, pa.array(fixed, pa.string()))


# Arrow writes as many fractional digits as the array's unit holds: six for microseconds (an
# export's default), nine for nanoseconds; a coarser unit (not in an export's schema) gets six.
_PADDING = {"s": ".000000", "ms": "000", "us": "", "ns": ""}


def is_time_or_timestamp(arrow_type: pa.DataType) -> bool:
    return pa.types.is_timestamp(arrow_type) or pa.types.is_time(arrow_type)


def temporal_text(array: pa.Array, separator: str, utc_suffix: str) -> pa.Array:
    """Times and timestamps as text with the fractional digits of the export's unit: six for
    microseconds (the default), nine for nanoseconds (`timestamp_unit: ns`), whatever the value.
    Zoned timestamps are written in UTC, followed by `utc_suffix` ("Z" or "+00:00")."""
    arrow_type = array.type
    zoned = pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None
    if pa.types.is_timestamp(arrow_type):
        if zoned:
            array = array.cast(pa.timestamp(arrow_type.unit, "UTC"))
        text = pc.strftime(array, format=f"%Y-%m-%d{separator}%H:%M:%S")
    else:
        text = pc.strftime(array, format="%H:%M:%S")
    suffix = _PADDING[arrow_type.unit] + (utc_suffix if zoned else "")
    return pc.binary_join_element_wise(text, pa.scalar(suffix, text.type), pa.scalar("", text.type))


def binary_hex(array: pa.Array) -> pa.Array:
    """Upper-case hex text, Snowflake's default BINARY_OUTPUT_FORMAT."""
    return pa.array(
        [None if value is None else value.hex().upper() for value in array.to_pylist()],
        pa.string(),
    )


def gzip_writer(sink: BinaryIO) -> gzip.GzipFile:
    """Whole-file gzip for csv and json. mtime=0: the same rows give the same bytes on every run."""
    return gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0)


def decompressed(source: BinaryIO, is_gzip: bool) -> BinaryIO:
    """The export's own bytes: unwrap a whole-file gzip (csv.gz, jsonl.gz); anything else as is."""
    return gzip.GzipFile(fileobj=source, mode="rb") if is_gzip else source  # type: ignore[return-value]
