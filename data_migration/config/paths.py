"""Object keys as the list writes them: which keys are safe inside the bucket, the folder a
split export's parts and manifest live in, and which exports' outputs can overlap.

The overlap check compares what two exports can write without enumerating partitions: a *region*
is one set of characters per position (a `{partition}` becomes the shape of its keys, each digit
any digit), which is exact in length because Dagster's partition keys have a fixed length per
granularity, and errs only towards refusing (a key's digits, and a partition range, are not
narrowed). Two regions can hold one key iff they have one length and every position's sets meet;
one can lie inside the other's folder iff its sets meet the other's all along it and its next
position can be a '/'. A split export claims its folder and its s3_path, any other export its key.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from urllib.parse import unquote

from data_migration.config.windows import PLACEHOLDER

MAX_S3_KEY_BYTES = 1024
DIGITS = frozenset("0123456789")
# Rendered with a partition's key format to learn its keys' shape (any moment gives the same one).
_SAMPLE_MOMENT = datetime(2024, 1, 1)


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


def partition_folder_problem(s3_path: str, key_format: str) -> str | None:
    """Why a partitioned split export's partitions would share one folder (and so one manifest,
    each commit deleting the others' parts), or None when each partition has a folder of its own."""
    key = _SAMPLE_MOMENT.strftime(key_format)
    folder, rendered = split_prefix(s3_path), split_prefix(s3_path.replace(PLACEHOLDER, key))
    if PLACEHOLDER in folder and rendered == folder.replace(PLACEHOLDER, key):
        return None
    return (
        f"{s3_path!r}: every partition would share one folder for its parts and manifest ({rendered!r}); "
        f"put {PLACEHOLDER} in a folder name, e.g. exports/orders/date={PLACEHOLDER}/data.parquet"
    )


@dataclass(frozen=True)
class Region:
    """The keys one claim of an export can be: `classes[i]` holds what position i can hold, one
    character or the digits (as `region` builds them). A folder region is a prefix its export
    owns (everything under `<region>/`)."""

    classes: tuple[frozenset[str], ...]
    # The literal text before the first partition key, and the region as one string with every
    # digit (literal or a key's) written as NUL: two regions can only meet where both agree, which
    # lets the pair search skip most pairs (see _candidates).
    head: str
    outline: str
    folder: bool
    partitioned: bool

    def can_equal(self, other: Region) -> bool:
        return self.outline == other.outline and self._agrees(other, len(self.classes))

    def can_lie_inside(self, outer: Region) -> bool:
        """Whether some key of this region can be under `outer` + '/'."""
        n = len(outer.classes)
        return n < len(self.classes) and "/" in self.classes[n] and self._agrees(outer, n)

    def _agrees(self, other: Region, n: int) -> bool:
        if self.outline[:n] != other.outline[:n]:
            return False
        return not any(map(frozenset.isdisjoint, self.classes[:n], other.classes[:n]))


_OUTLINE = str.maketrans(dict.fromkeys("0123456789", "\0"))


def region(template: str, key_format: str | None, folder: bool) -> Region:
    """The region of `template` with each `{partition}` as the shape of the keys `key_format`
    (a strftime format) writes: a digit is any digit, anything else itself."""
    shape = _SAMPLE_MOMENT.strftime(key_format) if key_format else None
    pieces = template.split(PLACEHOLDER) if shape is not None else [template]
    classes: list[frozenset[str]] = list(map(_single, pieces[0]))
    for piece in pieces[1:]:
        assert shape is not None
        classes.extend(DIGITS if char in DIGITS else _single(char) for char in shape)
        classes.extend(map(_single, piece))
    outline = (template if shape is None else template.replace(PLACEHOLDER, shape)).translate(_OUTLINE)
    return Region(tuple(classes), pieces[0], outline, folder, partitioned=len(pieces) > 1)


@cache
def _single(char: str) -> frozenset[str]:
    """One set per character, shared: a list of hundreds of exports allocates no set per position
    (fresh objects by the ten thousand make the garbage collector sweep all of Dagster's)."""
    return frozenset(char)


@dataclass(frozen=True)
class Output:
    """One export as the overlap check sees it: how a message names it (`label`, as in
    `exports[1] (ORDERS)`), its s3_path, whether it is split, and its partition keys' strftime
    format (None when it is not partitioned)."""

    label: str
    s3_path: str
    split: bool
    key_format: str | None = None

    @property
    def claims(self) -> tuple[Region, ...]:
        """Its s3_path as a key, and a split export's folder: two entries with one s3_path are
        refused whatever they write, so the key counts for a split export too."""
        key = region(self.s3_path, self.key_format, folder=False)
        return (key, region(split_prefix(self.s3_path), self.key_format, folder=True)) if self.split else (key,)


def overlap_problems(outputs: Sequence[Output]) -> list[str]:
    """One `<label>.s3_path: …` line per export whose output can overlap another's (the same key
    or folder, or a key or folder inside another's), naming both. Each export is the subject of
    at most one line, its conflict with the earliest other export: one fix per entry to make."""
    found: dict[tuple[int, int], tuple[int, int, str]] = {}  # (export, later export) -> (rank, subject, line)
    for (i, rank_i, at_i), (j, rank_j, at_j) in _candidates(outputs):
        if i > j:
            (i, rank_i, at_i), (j, rank_j, at_j) = (j, rank_j, at_j), (i, rank_i, at_i)
        conflict = _conflict(outputs[i], at_i, outputs[j], at_j)
        rank = rank_i * 2 + rank_j  # its s3_path before its folder: the plainer message first
        if conflict is not None and ((i, j) not in found or rank < found[(i, j)][0]):
            found[(i, j)] = (rank, i if conflict[0] else j, conflict[1])
    named: dict[int, str] = {}
    for _, (_, subject, line) in sorted(found.items(), key=lambda item: (item[1][1], item[0])):
        named.setdefault(subject, line)
    return [named[subject] for subject in sorted(named)]


Claim = tuple[int, int, Region]  # (export, which of its claims, the region)


def _candidates(outputs: Sequence[Output]) -> Iterator[tuple[Claim, Claim]]:
    """Each pair of claims of two exports whose heads and outlines agree (one starts the other),
    once: only those can meet. Sorted by head, the heads one starts follow it, so a list of
    distinct folders looks at few pairs; when every head starts every other (s3_paths that begin
    with {partition}), all pairs are looked at, the outlines sparing most the full comparison."""
    claims = sorted(
        ((index, rank, at) for index, output in enumerate(outputs) for rank, at in enumerate(output.claims)),
        key=lambda claim: claim[2].head,
    )
    for p, (index, _, at) in enumerate(claims):
        q = p + 1
        while q < len(claims) and claims[q][2].head.startswith(at.head):
            other = claims[q][2].outline
            if claims[q][0] != index and (other.startswith(at.outline) or at.outline.startswith(other)):
                yield claims[p], claims[q]
            q += 1


def _conflict(a: Output, at_a: Region, b: Output, at_b: Region) -> tuple[bool, str] | None:
    """Whether (True: `a`, False: `b`) is named first, and the line, when the regions meet."""
    if at_a.can_equal(at_b):
        if at_a.folder != at_b.folder:
            a_first = at_b.folder  # name the object, not the folder
        else:
            a_first = at_b.partitioned and not at_a.partitioned  # the literal key, else the later entry
        return (True, _line(a, at_a, b, at_b, False)) if a_first else (False, _line(b, at_b, a, at_a, False))
    if at_b.can_lie_inside(at_a):
        return False, _line(b, at_b, a, at_a, True)
    if at_a.can_lie_inside(at_b):
        return True, _line(a, at_a, b, at_b, True)
    return None


def _line(subject: Output, at: Region, other: Output, at_other: Region, inside: bool) -> str:
    """The problem, on `subject`'s s3_path: "is"/"lies" when both are literal, "can" with a template."""
    maybe = at.partitioned or at_other.partitioned
    folder = f"writes its parts and manifest in the folder {split_prefix(subject.s3_path)!r}"
    if not inside and not at.folder and not at_other.folder and subject.s3_path == other.s3_path:
        told = f"is also the s3_path of {other.label}"
    elif not inside and not maybe and at_other.folder:
        told = (
            f"{folder}, as {other.label}'s split output does"
            if at.folder
            else f"is the folder of {other.label}'s split output"
        )
    else:
        verb = ("can lie inside" if maybe else "lies inside") if inside else "can be"
        told = f"{folder}, which {verb} {_noun(other, at_other)}" if at.folder else f"{verb} {_noun(other, at_other)}"
    own = "folder" if at.folder or at_other.folder else "s3_path"
    return f"{subject.label}.s3_path: {subject.s3_path!r} {told}; give each export its own {own}"


def _noun(output: Output, at: Region) -> str:
    """How a line names the other export's key or folder."""
    if at.folder:
        prefix = split_prefix(output.s3_path)
        if at.partitioned:
            return f"the folder of a partition of {output.label}'s split output ({prefix!r})"
        return f"the folder {prefix!r} of {output.label}'s split output"
    if at.partitioned:
        return f"the key of a partition of {output.label} ({output.s3_path!r})"
    return f"{output.label}'s s3_path {output.s3_path!r}"
