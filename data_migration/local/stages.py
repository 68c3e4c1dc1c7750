"""The embedded emulator's named external stages: a name, as Snowflake stores it, over a place
that holds files (the embedded default's bucket folder, or an S3 bucket; the tests use moto's).

Snowflake reads and writes an external stage's files itself; fakesnow has no external stages
over anything but its own folder. The statements the emulator serves over these stages
(unload.py writes through `put`; loading.py reads through `local_folder`) use this one
definition, so a stage the tests point at moto serves both directions.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One part of an object name, quoted or not, and a name of up to three parts, as SQL text.
NAME_PART = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
OBJECT_NAME = rf"{NAME_PART}(?:\.{NAME_PART}){{0,2}}"
_STAGE_REF = re.compile(rf"^@(?P<name>{OBJECT_NAME})(?P<path>/.*)?$")


def stage_reference(reference: str) -> tuple[str, str] | None:
    """`@[db.][schema.]stage[/path]` as (the stage's last name part as Snowflake stores it, the
    path relative to its URL); None when `reference` is not a stage location. The emulator's
    stages are by name."""
    match = _STAGE_REF.match(reference)
    if not match:
        return None
    last = re.findall(NAME_PART, match.group("name"))[-1]
    name = last[1:-1].replace('""', '"') if last.startswith('"') else last.upper()
    return name, (match.group("path") or "").lstrip("/")


@dataclass(frozen=True)
class Stage:
    """A named external stage: its name as Snowflake stores it, and what its URL points at.

    `put` stores one file's bytes under a key relative to the stage's URL; `local_folder` gives a
    local folder holding the files under a path of the stage (the stage's own folder, or a copy
    of the objects under that prefix, or of only the named `files` under it), for as long as the
    context lasts."""

    name: str
    put: Callable[[str, bytes], None]
    url: str = ""
    local_folder: Callable[..., AbstractContextManager[Path]] | None = None


def folder_stage(name: str, root: Path) -> Stage:
    """A stage over a local folder (the embedded default's bucket); each file written atomically."""

    def put(key: str, data: bytes) -> None:
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, target)

    @contextmanager
    def local_folder(path: str, files: Sequence[str] | None = None) -> Iterator[Path]:
        yield root / path

    return Stage(name, put, root.resolve().as_uri() + "/", local_folder)


def s3_stage(name: str, bucket: str, client: Any) -> Stage:
    """A stage over an S3 bucket's root, through a boto3 client (moto's in the tests)."""

    @contextmanager
    def local_folder(path: str, files: Sequence[str] | None = None) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="stage-") as temporary:
            root = Path(temporary)
            prefix = f"{path.rstrip('/')}/" if path else ""
            if files is not None:
                keys = [prefix + name for name in files]
            else:
                pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=path)
                keys = [entry["Key"] for page in pages for entry in page.get("Contents", [])]
            for key in keys:
                target = root / key
                target.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(client.exceptions.ClientError):  # COPY then names it missing
                    client.download_file(bucket, key, str(target))
            yield root / path

    return Stage(
        name,
        lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data),
        f"s3://{bucket}/",
        local_folder,
    )
