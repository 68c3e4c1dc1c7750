"""A load's run, step by step in their order: Parquet files in the bucket into one Snowflake table.

A load's files (loads/sources.py) reach Snowflake through a stage, never through this process's
memory as a table: the named external stage over the bucket (SNOWFLAKE_EXPORT_STAGE) when there is
one, so that Snowflake reads the objects itself; otherwise a temporary internal stage that each
file is PUT into, one file on disk at a time. Every file lands first in a landing table of the
run's own (transient, under a name no reader uses, dropped at the end, or by the next run after a
kill): `COPY INTO <landing> (…) FROM (SELECT $1:"col"::TYPE … FROM @stage) FILES = (…) … ON_ERROR =
ABORT_STATEMENT` loads all of a file's rows, each value as written (not MATCH_BY_COLUMN_NAME, which
fails on an empty Parquet value and reads `\\N` as NULL), or fails; the rows it reports for each
file must equal the rows the manifest (or the file's footer) records. Only then does the target
change:

- replace: one `INSERT OVERWRITE INTO <target> … SELECT … FROM <landing>` truncates the target and
  inserts the rows in one statement, one transaction: readers see the old rows or the new ones, a
  failure leaves the old rows, and the table stays the one it was (owner, grants, policies, tags,
  comment, streams, Time Travel). When there is no target yet, a new table with the files' exact
  types is filled under a helper name and renamed into place.
- append: the landing rows are inserted and the files recorded in the project's ledger table
  (DATA_MIGRATION_LOADED_FILES, beside the target) in one transaction; files the ledger holds for
  the target are not loaded again, so a retried run adds nothing twice.
- merge: one MERGE on the keys, after checking that no key is NULL or given twice.

Semi-structured columns that exports write as JSON text land as text and become values through
PARSE_JSON on the way into the target.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from data_migration.config import LoadSpec
from data_migration.config.names import Identifier
from data_migration.conventions import one_line
from data_migration.files.layout import FilePart, verified_bytes
from data_migration.files.storage import ObjectStore
from data_migration.loads.pieces import pieces
from data_migration.loads.sources import LoadError, LoadSource, SourceFile
from data_migration.loads.sql import (
    MAX_FILES_PER_COPY,
    LoadColumn,
    attempt_suffix,
    columns_sql,
    copy_sql,
    count_sql,
    create_stage_sql,
    create_table_sql,
    drop_table_sql,
    duplicate_keys_sql,
    helper_kind,
    helper_mark,
    helper_name,
    helpers_sql,
    insert_sql,
    ledger_sql,
    loaded_files_sql,
    lock_row_sql,
    lock_sql,
    merge_sql,
    null_keys_sql,
    parse_mark,
    put_sql,
    qualified,
    record_files_sql,
    rename_sql,
    run_folder,
    run_suffix,
    set_comment_sql,
    sibling,
)
from data_migration.snowflake.queries import SharedConnection, run_statement
from data_migration.snowflake.resource import SnowflakeExportResource


class ConcurrentAppend(RuntimeError):
    """Another run of the same append committed some of this run's files first. Transient: the
    retry reads the ledger again and skips them."""


# The run -------------------------------------------------------------------------------------


@dataclass
class Session:
    """The load's statements on one Snowflake session, each logged and its query id kept."""

    snowflake: SnowflakeExportResource
    log: Any
    tag: str
    connection: SharedConnection = field(init=False)
    query_ids: list[str] = field(default_factory=list)
    _tagged: bool = False

    def __post_init__(self) -> None:
        self.connection = SharedConnection(self.snowflake)

    def run(self, sql: str, *, file_stream: Any = None, quiet: bool = False) -> list[dict[str, Any]]:
        """The statement's output rows, by column name in upper case."""
        if not quiet:
            self.log.info(f"Snowflake: {one_line(sql, 400)}")
        query_id, rows = run_statement(
            self.snowflake,
            sql,
            timeout_seconds=self.snowflake.query_timeout_seconds,
            query_tag=self.tag if not self._tagged else None,  # the session keeps it
            connection=self.connection,
            file_stream=file_stream,
        )
        self._tagged = True
        if query_id:
            self.query_ids.append(query_id)
        return rows

    def renew(self) -> None:
        """End this Snowflake session and go on in a new one. Snowflake rolls back a session's
        open transaction when the session ends; any DDL on a session with one open would commit
        it instead (https://docs.snowflake.com/en/sql-reference/transactions)."""
        self.connection.close()
        self.connection = SharedConnection(self.snowflake)
        self._tagged = False

    def close(self) -> None:
        self.connection.close()


@dataclass(frozen=True)
class LoadOutcome:
    rows_loaded: int
    files: tuple[SourceFile, ...]  # loaded by this run
    skipped: tuple[SourceFile, ...]  # already loaded (append)
    target_rows: int
    inserted: int | None = None  # merge
    updated: int | None = None
    stage: str = ""
    created: bool = False
    swept: tuple[tuple[str, str], ...] = ()  # helper tables of earlier runs dropped first: (name, run id)


def run_load(
    spec: LoadSpec,
    source: LoadSource,
    session: Session,
    store: ObjectStore,
    export_stage: str | None,
    run_id: str,
    fail_before: Callable[[str], None] = lambda step: None,
    still_running: Callable[[str], bool] = lambda run_id: False,
) -> LoadOutcome:
    """Load `source` into the target as the spec's mode says (see the module's docstring).
    `fail_before(step)` is called before each step that changes the target (a test's fault);
    `still_running(run_id)` says whether a run may still be using its helper tables (the sweep
    leaves those)."""
    target = spec.object_name
    folded = [c.name.upper() for c in source.columns]
    clashing = sorted({c.name for c in source.columns if folded.count(c.name.upper()) > 1})
    if clashing:
        raise LoadError(f"the files' columns {', '.join(clashing)} differ only in case; rename them in the export")
    suffix = attempt_suffix()
    landing = helper_name(target, "LANDING", suffix)
    new = helper_name(target, "NEW", suffix)
    mark = helper_mark(qualified(target), run_id)
    swept = sweep_helpers(session, target, still_running)
    existing = _columns_of(session, target)
    if existing is None and spec.create == "never":
        raise LoadError(f"{qualified(target)} does not exist; create it, or set create: if_missing")
    if existing is not None:
        missing = [c.name for c in source.columns if c.name not in existing]
        if missing:
            raise LoadError(
                f"{qualified(target)} has no column(s) {', '.join(missing)} of the files ({source.origin}); add them "
                "to the table (or drop it, for a replace that creates it with the files' types)"
            )

    files = source.files
    skipped: tuple[SourceFile, ...] = ()
    if spec.mode == "append":
        session.run(ledger_sql(target))
        session.run(lock_row_sql(target), quiet=True)
        loaded = {(row["FILE"], row["FILE_ID"]) for row in session.run(loaded_files_sql(target))}
        skipped = tuple(f for f in files if (f.uri, f.file_id) in loaded)
        files = tuple(f for f in files if (f.uri, f.file_id) not in loaded)
        if skipped:
            session.log.info(f"{len(skipped)} file(s) already loaded into {qualified(target)} are skipped")

    try:
        stage = ""
        if files or spec.mode == "replace":  # a replace reads it even empty (an allowed emptying)
            session.run(create_table_sql(landing, source.columns, landing=True, mark=mark))
        if files:
            stage = _copy_files(session, store, files, landing, source.columns, export_stage, suffix)
        outcome = _apply(spec, source, session, files, skipped, landing, new, existing is not None, run_id, fail_before)
        return dataclasses.replace(outcome, swept=swept, stage=stage)
    finally:
        # The new table first: the landing table outlives it, so a kill here leaves no new table
        # without the landing table that vouches for it (sweep_helpers).
        made = (new, landing) if spec.mode == "replace" and existing is None else (landing,)
        for table in made:
            try:
                session.run(drop_table_sql(table), quiet=True)
            except Exception as error:  # noqa: BLE001 - the load's own outcome matters more
                session.log.warning(f"Could not drop {qualified(table)} ({type(error).__name__}); drop it by hand")


def _apply(
    spec: LoadSpec,
    source: LoadSource,
    session: Session,
    files: tuple[SourceFile, ...],
    skipped: tuple[SourceFile, ...],
    landing: tuple[Identifier, ...],
    new: tuple[Identifier, ...],
    exists: bool,
    run_id: str,
    fail_before: Callable[[str], None],
) -> LoadOutcome:
    target = spec.object_name
    rows = sum(f.rows for f in files)
    inserted = updated = None
    if spec.mode == "replace" and exists:
        # One DML statement, one transaction: the old rows go and the new ones come together, in
        # the table itself, whose owner, grants, policies, tags and comment are left as they are.
        if rows == 0 and not spec.allow_empty:
            _refuse_emptying(session, target, source)
        fail_before("overwrite")
        session.run(insert_sql(target, landing, source.columns, overwrite=True))
    elif spec.mode == "replace":
        # No target yet: filled under a name no reader uses, then renamed into place, so that no
        # reader sees it half loaded.
        session.run(create_table_sql(new, source.columns, anew=True))
        session.run(insert_sql(new, landing, source.columns))
        fail_before("rename")
        session.run(rename_sql(new, target))
    elif spec.mode == "append":
        if not exists:
            session.run(create_table_sql(target, source.columns))
        if files:
            fail_before("append")
            session.run("BEGIN TRANSACTION")
            try:
                # Another run of this load may have committed the same files since this one read
                # the ledger: wait for the lock, then read the ledger again.
                session.run(lock_sql(target, run_id), quiet=True)
                loaded = {(row["FILE"], row["FILE_ID"]) for row in session.run(loaded_files_sql(target))}
                taken = [f.uri for f in files if (f.uri, f.file_id) in loaded]
                if taken:
                    raise ConcurrentAppend(
                        f"another run loaded {len(taken)} of these files into {qualified(target)} meanwhile "
                        f"({', '.join(taken[:3])}{', …' if len(taken) > 3 else ''}); nothing was added, and a "
                        "retry skips them"
                    )
                session.run(insert_sql(target, landing, source.columns))
                for sql in record_files_sql(target, [(f.uri, f.file_id, f.rows) for f in files], run_id):
                    session.run(sql, quiet=True)
                fail_before("commit")
                session.run("COMMIT")
            except BaseException:
                _rollback(session)
                raise
    else:
        if files:
            _check_keys(spec, session, landing)
        if not exists:
            session.run(create_table_sql(target, source.columns))
        if files:
            fail_before("merge")
            output = session.run(merge_sql(target, landing, source.columns, spec.keys))
            # One column per clause the MERGE has (https://docs.snowflake.com/en/sql-reference/sql/merge):
            # with every column a key there is no WHEN MATCHED, so no "number of rows updated".
            if output:
                inserted = int(output[0].get("NUMBER OF ROWS INSERTED", 0))
                updated = int(output[0].get("NUMBER OF ROWS UPDATED", 0))
    target_rows = int(session.run(count_sql(target))[0]["N"])
    return LoadOutcome(rows, files, skipped, target_rows, inserted, updated, created=not exists)


def _refuse_emptying(session: Session, target: Sequence[Identifier], source: LoadSource) -> None:
    """A replace from a source of no rows (a query that came out empty, a zero-row unload's
    manifest of no files) would empty a full table: refused unless the load says allow_empty,
    before anything of the target changes."""
    held = int(session.run(count_sql(target))[0]["N"])
    if held:
        raise LoadError(
            f"the source ({source.origin}) has no rows, and replacing {qualified(target)} with it would remove all "
            f"{held:,} of its rows; the target is left as it was. If an empty table is what you want, set "
            "allow_empty: true on the load"
        )


def _rollback(session: Session) -> None:
    try:
        session.run("ROLLBACK")
    except Exception as error:  # noqa: BLE001 - Snowflake rolls back an open transaction when the session ends
        # The clean-up's DROP TABLE would commit the open transaction on this session: end it.
        session.log.warning(f"ROLLBACK failed ({type(error).__name__}); ending the session rolls it back")
        session.renew()


def sweep_helpers(
    session: Session, target: Sequence[Identifier], still_running: Callable[[str], bool] = lambda run_id: False
) -> tuple[tuple[str, str], ...]:
    """Drop what earlier runs of this load left (a run killed mid-way cannot clean up after itself)
    and return (name, run id) of each table dropped. Only a table whose name is a helper's of this
    target is dropped, and only when it is vouched for: its comment is the project's mark for this
    load (a landing table; a new table of an older release), or it is a replace's new table
    (`<target>__DM_NEW_<run>`, created without a comment, as it becomes the target) and the same
    run's landing table, which outlives it, carries that mark. New tables go first, so that a kill
    during the sweep leaves none without its landing table.

    A target marked by an older release (which swapped a new table in and gave the target its
    comment back after: a run killed in between left its mark on the target and the old rows under
    `<target>__DM_NEW_<run>`) gets its comment back, and those old rows are dropped.

    A helper of a run that `still_running` says may still be at work (the Dagster instance has it
    unfinished: another run of this load, or another attempt of this one) is left: dropping it
    would break that run mid-way. A later run drops it once that run has finished."""
    load = qualified(target)
    listed = {str(row["TABLE_NAME"]): row.get("COMMENT") for row in session.run(helpers_sql(target), quiet=True)}
    swept: list[tuple[str, str]] = []
    own = parse_mark(listed.pop(target[-1].name, None))
    if own is not None and own["load"] == load and "target_comment" in own:
        swept += _restore_swapped_target(session, target, own, listed)
    helpers = []  # (name, kind, run suffix, mark), new tables first
    for name, comment in listed.items():
        kind = helper_kind(target, name)
        if kind is not None:
            helpers.append((name, *kind, parse_mark(comment)))
    helpers.sort(key=lambda helper: helper[1] != "NEW")
    vouching = {  # the runs whose landing table is there, marked for this load
        suffix: mark for _, kind, suffix, mark in helpers if kind == "LANDING" and mark and mark["load"] == load
    }
    for name, kind, suffix, mark in helpers:
        if mark is None and kind == "NEW":
            mark = vouching.get(suffix)
        if mark is None:
            session.log.warning(
                f"{name} is named like a helper of this load but carries no mark of the project; it is left as "
                "it is (the project marks every landing table it creates, and a new table is its run's)"
            )
            continue
        if mark["load"] != load:
            continue
        if still_running(str(mark.get("run_id"))):
            session.log.info(f"Left {name}: run {mark.get('run_id')} of this load has not finished")
            continue
        session.run(drop_table_sql(sibling(target, name)))
        session.log.info(f"Dropped {name}, which run {mark.get('run_id')} of this load left behind")
        swept.append((name, str(mark.get("run_id"))))
    return tuple(swept)


def _restore_swapped_target(
    session: Session, target: Sequence[Identifier], mark: Mapping[str, Any], listed: dict[str, Any]
) -> list[tuple[str, str]]:
    """An older release's mark on the target: its own comment back, and that run's old rows (under
    the new table's name, with the target's comment, so no mark) dropped."""
    run = str(mark.get("run_id"))
    try:
        session.run(set_comment_sql(target, mark["target_comment"]))
    except Exception as error:  # noqa: BLE001 - the load itself needs no OWNERSHIP any more
        session.log.warning(
            f"{qualified(target)} still carries the mark of run {run} of an older release ({type(error).__name__}); "
            f"its owner can give it its comment back: {set_comment_sql(target, mark['target_comment'])}"
        )
    else:
        session.log.info(f"Run {run} of this load was stopped right after its swap: the target's comment is restored")
    old = helper_name(target, "NEW", run_suffix(run))[-1].name
    if old not in listed:
        return []
    del listed[old]
    session.run(drop_table_sql(sibling(target, old)))
    return [(old, run)]


def _columns_of(session: Session, table: Sequence[Identifier]) -> list[str] | None:
    """The table's column names, or None when it does not exist (or is not visible to the role)."""
    names = [str(row["COLUMN_NAME"]) for row in session.run(columns_sql(table), quiet=True)]
    return names or None


def _check_keys(spec: LoadSpec, session: Session, landing: Sequence[Identifier]) -> None:
    names = ", ".join(key.name for key in spec.keys)
    nulls = int(session.run(null_keys_sql(landing, spec.keys))[0]["N"])
    if nulls:
        raise LoadError(
            f"{nulls} row(s) of the files have a NULL in the key ({names}); a MERGE matches no such row, so each "
            "run would insert them again. Fix the source, or choose other keys"
        )
    duplicates = session.run(duplicate_keys_sql(landing, spec.keys))
    if duplicates:
        shown = "; ".join(
            ", ".join(f"{key.name}={row[f'K{index}']!r}" for index, key in enumerate(spec.keys)) + f" ({row['N']} rows)"
            for row in duplicates
        )
        raise LoadError(
            f"the files hold more than one row for a key ({names}): {shown}. A MERGE needs one row per key; "
            "de-duplicate the source (e.g. QUALIFY ROW_NUMBER() OVER (PARTITION BY key ORDER BY …) = 1)"
        )


@dataclass(frozen=True)
class _Staged:
    """A file on the stage as COPY names it, the rows it must load, and what to call it in an error."""

    name: str
    rows: int
    label: str


def _copy_files(
    session: Session,
    store: ObjectStore,
    files: Sequence[SourceFile],
    landing: Sequence[Identifier],
    columns: Sequence[LoadColumn],
    export_stage: str | None,
    suffix: str,
) -> str:
    """The files into the landing table through a stage; return how they were staged. Every
    file's loaded rows must equal its recorded rows."""
    if export_stage is not None:
        for f in files:  # Snowflake reads the objects itself: check each is there as recorded
            stat = store.stat(f.key)
            if stat is None or stat.size != f.size:
                found = "missing" if stat is None else f"{stat.size} bytes"
                raise LoadError(f"{f.uri} is {found}, but {f.size} bytes were recorded")
        # The stage is over the bucket's root: each file by its key.
        _copy_named(session, landing, columns, f"@{export_stage}", [_Staged(f.key, f.rows, f.uri) for f in files])
        return f"external stage {export_stage}"

    # The session's own stage: a name no other load or attempt uses (Snowflake drops it, files
    # and all, when the session ends). A large file goes in pieces (loads/pieces.py).
    stage = sibling(landing, f"DM_STAGE_{suffix}_{secrets.token_hex(4).upper()}")
    stage_sql = qualified(stage)
    session.run(create_stage_sql(stage))
    folder = f"load_{stage[-1].name[-8:].lower()}"
    staged: list[_Staged] = []
    for index, f in enumerate(files):
        with store.open_read(f.key) as data:  # on disk past 64 MiB: one file at a time
            verified_bytes(data, FilePart(f.key, f.uri, f.rows, f.size, f.sha256))
            for piece in pieces(data, f):
                whole = piece.data is data
                name = f"part-{index:05d}.parquet" if whole else f"part-{index:05d}-{piece.number:04d}.parquet"
                label = f.uri if whole else f"{f.uri} (piece {piece.number})"
                session.run(put_sql(name, stage_sql, folder), file_stream=piece.data, quiet=bool(staged))
                staged.append(_Staged(name, piece.rows, label))
    _copy_named(session, landing, columns, run_folder(stage_sql, folder), staged)
    put = (
        f"{len(files)} file(s) PUT"
        if len(staged) == len(files)
        else f"{len(files)} file(s) PUT as {len(staged)} pieces"
    )
    return f"temporary internal stage {stage_sql} ({put})"


def _copy_named(
    session: Session,
    landing: Sequence[Identifier],
    columns: Sequence[LoadColumn],
    stage: str,
    staged: Sequence[_Staged],
) -> None:
    """COPY the staged files (by their names under `stage`), MAX_FILES_PER_COPY at a time, and
    check every one's loaded rows."""
    output: list[dict[str, Any]] = []
    for start in range(0, len(staged), MAX_FILES_PER_COPY):
        chunk = staged[start : start + MAX_FILES_PER_COPY]
        output += session.run(copy_sql(landing, columns, stage, [s.name for s in chunk]))
    _check_copied(output, staged)


def _check_copied(output: Sequence[Mapping[str, Any]], staged: Sequence[_Staged]) -> None:
    """COPY's output (FILE, STATUS, ROWS_PARSED, ROWS_LOADED, … per file) against the recorded rows."""
    by_name: dict[str, Mapping[str, Any]] = {}
    for row in output:
        if row.get("FILE") is None:
            continue  # "Copy executed with 0 files processed."
        by_name[str(row["FILE"])] = row
    for s in staged:
        row = next((r for n, r in by_name.items() if n == s.name or n.endswith("/" + s.name)), None)
        if row is None:
            raise LoadError(f"Snowflake loaded no file {s.name} ({s.label}); COPY reported: {sorted(by_name)}")
        if str(row["STATUS"]).upper() != "LOADED" or int(row["ROWS_LOADED"]) != s.rows:
            raise LoadError(
                f"{s.label}: Snowflake loaded {row['ROWS_LOADED']} of its rows (status {row['STATUS']}), but "
                f"{s.rows} were recorded"
            )
