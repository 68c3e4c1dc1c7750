"""Object keys as the list writes them: which keys are safe inside the bucket, and the folder a
split export's parts and manifest live in."""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote

MAX_S3_KEY_BYTES = 1024


def s3_path_problem(key: str) -> str | None:
    """Why `key` is not a safe object key inside the configured bucket, or None if it is.

    Keys are taken literally by S3 (and IAM allows `exports/../x` under `exports/*`), so the only
    place to refuse traversal, other buckets and look-alike forms is here.
    """
    if not key:
        return "is empty"
    if key != key.strip():
        return f"{key!r} has leading or trailing whitespace"
    if len(key.encode("utf-8")) > MAX_S3_KEY_BYTES:
        return f"is longer than S3's limit of {MAX_S3_KEY_BYTES} bytes"
    if "://" in key or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", key):
        return f"{key!r} must be a key inside the configured bucket (S3_BUCKET_NAME), not a URL"
    if key.startswith("/"):
        return f"{key!r} must be relative to the bucket: drop the leading '/'"
    if key.endswith("/"):
        return f"{key!r} names a folder; end it with a file name such as data.parquet"
    if "\\" in key:
        return f"{key!r} contains a backslash; use '/' between folders"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return f"{key!r} contains a control character"
    if any(c in key for c in "\u2024\u2025\u2026\uff0e"):
        return f"{key!r} contains a character that looks like a dot; use '.'"
    for segment in key.split("/"):
        decoded = unquote(segment)
        if segment == "":
            return f"{key!r} has an empty folder name ('//')"
        if decoded in (".", ".."):
            return f"{key!r} contains a '{decoded}' segment; paths must not climb out of their folder"
    return None


def split_prefix(key: str) -> str:
    """The folder a split export's parts and manifest live in: its key minus the extension."""
    stem = key[:-3] if key.lower().endswith(".gz") else key
    root, ext = posixpath.splitext(stem)
    return root if ext and "/" not in ext else stem
