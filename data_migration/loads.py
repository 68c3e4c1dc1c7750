"""Loads: Parquet files in the bucket into Snowflake tables, one asset per `loads:` entry (the
mirror of assets.py, with the run's steps in their order).

A load's files are an export's committed output (its manifest's parts, or its one object, read
through the same manifest reader the exports' checks use) or an object or folder of the bucket.
They reach Snowflake through a stage, never through this process's memory as a table: the named
external stage over the bucket (SNOWFLAKE_EXPORT_STAGE) when there is one, so that Snowflake reads
the objects itself; otherwise a temporary internal stage that each file is PUT into, one file on
disk at a time. Every file lands first in a landing table of the run's own (transient, under a
name no reader uses, dropped at the end, or by the next run after a kill): `COPY INTO <landing>
(…) FROM (SELECT $1:"col"::TYPE … FROM @stage) FILES = (…) … ON_ERROR = ABORT_STATEMENT` loads all
of a file's rows, each value as written (not MATCH_BY_COLUMN_NAME, which fails on an empty Parquet
value and reads `\\N` as NULL), or fails; the rows it reports for each file must equal the rows the
manifest (or the file's footer) records. Only then does the target change:

- replace: a new table (LIKE the target, with its grants; or with the files' exact types when
  there is no target yet) is filled from the landing table and swapped in with one
  `ALTER TABLE … SWAP WITH`: readers see the old rows or the new ones, and a failure before the
  swap leaves the old table as it was.
- append: the landing rows are inserted and the files recorded in the project's ledger table
  (DATA_MIGRATION_LOADED_FILES, beside the target) in one transaction; files the ledger holds for
  the target are not loaded again, so a retried run adds nothing twice.
- merge: one MERGE on the keys, after checking that no key is NULL or given twice.

Semi-structured columns that exports write as JSON text land as text and become values through
PARSE_JSON on the way into the target.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from data_migration.assets import POOL, code_references, one_line
from data_migration.config import LoadSpec
from data_migration.errors import LoadFailed, is_transient
from data_migration.formats.parquet import ParquetReader
from data_migration.layout import FilePart, ManifestError, read_committed, read_manifest, verified_bytes
from data_migration.load_sql import (
    MAX_FILES_PER_COPY,
    LoadColumn,
    LoadSqlError,
    columns_sql,
    copy_sql,
    count_sql,
    create_like_sql,
    create_stage_sql,
    create_table_sql,
    drop_table_sql,
    duplicate_keys_sql,
    helper_mark,
    helper_name,
    helpers_sql,
    insert_sql,
    is_helper_name,
    ledger_sql,
    load_column,
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
    swap_sql,
    table_comment_sql,
)
from data_migration.resources import SnowflakeExportResource
from data_migration.source import SharedConnection, run_statement
from data_migration.sql import Identifier
from data_migration.storage import ObjectStore

GROUP_NAME = "snowflake_loads"
ROW_COUNT_CHECK = "target_row_count"
_FILES_SHOWN = 50


@dataclass(frozen=True)
class SourceFile:
    key: str  # in the bucket
    uri: str
    rows: int  # as the manifest (or the file's footer) records them
    size: int
    sha256: str | None
    file_id: str  # what identifies these bytes in the append ledger


@dataclass(frozen=True)
class LoadSource:
    """What a run loads: the files, their columns with exact types, and where they were read."""

    files: tuple[SourceFile, ...]
    columns: tuple[LoadColumn, ...]
    origin: str  # the manifest's or the object's URI

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


class LoadError(RuntimeError):
    """A load cannot go on; the message says what to do. Not transient."""


class ConcurrentAppend(RuntimeError):
    """Another run of the same append committed some of this run's files first. Transient: the
    retry reads the ledger again and skips them."""


# The source ----------------------------------------------------------------------------------


def resolve_source(spec: LoadSpec, store: ObjectStore, latest: Mapping[str, Any] | None) -> LoadSource:
    """The files a load reads, checked against the store. `latest` is the metadata of the
    source export's last materialization (None when it has none, or for an s3_path load)."""
    if spec.source is not None:
        export = spec.source
        if latest is None:
            raise LoadError(
                f"{export.label} has no materialization yet: materialize it first "
                f"(or select both: --select '+{'/'.join(spec.asset_key_path)}')"
            )
        if export.output_prefix is not None:
            return _from_manifest(store, export.s3_path)
        return _from_object(store, export.s3_path, latest)
    assert spec.s3_path is not None
    if spec.s3_path.endswith("/"):
        folder = spec.s3_path.rstrip("/")
        manifest, _ = read_committed(store, folder + ".parquet")
        if manifest is not None:
            return _from_manifest(store, folder + ".parquet")
        keys = [k for k in (store.list_keys(folder + "/") or []) if k.endswith(".parquet")]
        if not keys:
            raise LoadError(f"{store.uri(folder + '/')} holds no manifest.json and no .parquet file")
        return _from_files(store, sorted(keys), store.uri(folder + "/"))
    return _from_files(store, [spec.s3_path], store.uri(spec.s3_path))


def _from_manifest(store: ObjectStore, key: str) -> LoadSource:
    manifest = read_manifest(store, key)
    columns = manifest.content.get("columns")
    if not columns:
        raise LoadError(f"{manifest.uri} records no columns; export it again to load it")
    files = tuple(_listed(part) for part in manifest.parts)
    if sum(f.rows for f in files) != manifest.rows:
        raise LoadError(f"{manifest.uri}: its parts hold {sum(f.rows for f in files)} rows, not {manifest.rows}")
    return LoadSource(
        files,
        tuple(load_column(c["name"], c["snowflake_type"], c.get("arrow_type")) for c in columns),
        manifest.uri,
    )


def _listed(part: FilePart) -> SourceFile:
    return SourceFile(part.key, part.uri, part.rows, part.size, part.sha256, part.sha256 or f"{part.size}:{part.key}")


def _from_object(store: ObjectStore, key: str, latest: Mapping[str, Any]) -> LoadSource:
    """An export's one object, as its last materialization recorded it."""
    uri = store.uri(key)
    stat = store.stat(key)
    recorded_size = _value(latest.get("size_bytes"))
    if stat is None:
        raise LoadError(f"{uri} is not in the bucket; materialize the export again")
    if recorded_size is not None and stat.size != recorded_size:
        raise LoadError(
            f"{uri} is {stat.size} bytes, but the export's last materialization wrote {recorded_size}: it "
            "changed since; materialize the export again"
        )
    rows = ParquetReader.footer(lambda length: store.read_suffix(key, length)).num_rows
    recorded_rows = _value(latest.get("dagster/row_count"))
    if recorded_rows is not None and rows != recorded_rows:
        raise LoadError(f"{uri} holds {rows} rows, but the export's last materialization recorded {recorded_rows}")
    schema = _value(latest.get("dagster/column_schema"))
    if schema is None:
        raise LoadError(f"the export's last materialization of {uri} records no column schema; materialize it again")
    columns = tuple(
        load_column(c.name, c.type, (c.description or "").removeprefix("Arrow: ") or None) for c in schema.columns
    )
    sha = _value(latest.get("sha256"))
    return LoadSource((SourceFile(key, uri, rows, stat.size, sha, sha or f"{stat.size}:{key}"),), columns, uri)


def _from_files(store: ObjectStore, keys: Sequence[str], origin: str) -> LoadSource:
    """Parquet objects no export of this project wrote: rows and types from each footer."""
    files = []
    schema: pa.Schema | None = None
    for key in keys:
        try:
            footer = ParquetReader.footer(lambda length, key=key: store.read_suffix(key, length))
        except FileNotFoundError:
            raise LoadError(f"{store.uri(key)} is not in the bucket") from None
        except ValueError as error:
            raise LoadError(f"{store.uri(key)}: {error}") from None
        arrow = footer.schema.to_arrow_schema()
        if schema is not None and not arrow.equals(schema):
            raise LoadError(f"{store.uri(key)} has other columns than {store.uri(keys[0])}: {arrow} vs {schema}")
        schema = arrow
        stat = store.stat(key)
        assert stat is not None
        files.append(
            SourceFile(key, store.uri(key), footer.num_rows, stat.size, None, f"{stat.size}:{stat.checksum}:{key}")
        )
    assert schema is not None
    return LoadSource(tuple(files), tuple(_arrow_column(f) for f in schema), origin)


def _arrow_column(column: pa.Field) -> LoadColumn:
    """A Parquet column's exact Snowflake type."""
    kind = column.type
    if pa.types.is_integer(kind):
        name = "NUMBER(38,0)"
    elif pa.types.is_decimal(kind) and kind.precision <= 38:
        name = f"NUMBER({kind.precision},{kind.scale})"
    elif pa.types.is_floating(kind):
        name = "FLOAT"
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        name = "VARCHAR"
    elif pa.types.is_boolean(kind):
        name = "BOOLEAN"
    elif pa.types.is_date(kind):
        name = "DATE"
    elif pa.types.is_timestamp(kind):
        scale = {"s": 0, "ms": 3, "us": 6, "ns": 9}[kind.unit]
        name = f"TIMESTAMP_{'TZ' if kind.tz else 'NTZ'}({scale})"
    elif pa.types.is_time(kind):
        name = f"TIME({ {'s': 0, 'ms': 3, 'us': 6, 'ns': 9}[kind.unit] })"
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        name = "BINARY"
    elif pa.types.is_nested(kind):
        return LoadColumn(column.name, "VARIANT")
    else:
        raise LoadSqlError(f"column {column.name!r} is {kind}, which a load has no Snowflake type for")
    return load_column(column.name, name, str(kind))


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


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
) -> LoadOutcome:
    """Load `source` into the target as the spec's mode says (see the module's docstring).
    `fail_before(step)` is called before each step that changes the target (a test's fault)."""
    target = spec.object_name
    folded = [c.name.upper() for c in source.columns]
    clashing = sorted({c.name for c in source.columns if folded.count(c.name.upper()) > 1})
    if clashing:
        raise LoadError(f"the files' columns {', '.join(clashing)} differ only in case; rename them in the export")
    suffix = run_suffix(run_id)
    landing = helper_name(target, "LANDING", suffix)
    new = helper_name(target, "NEW", suffix)
    mark = helper_mark(qualified(target), run_id)
    swept = sweep_helpers(session, target)
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
        if files:
            session.run(create_table_sql(landing, source.columns, landing=True, mark=mark))
            stage = _copy_files(session, store, files, landing, source.columns, export_stage, suffix)
        outcome = _apply(
            spec, source, session, files, skipped, landing, new, existing is not None, stage, run_id, fail_before
        )
        return dataclasses.replace(outcome, swept=swept)
    finally:
        for table in (landing, new):
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
    stage: str,
    run_id: str,
    fail_before: Callable[[str], None],
) -> LoadOutcome:
    target = spec.object_name
    rows = sum(f.rows for f in files)
    inserted = updated = None
    if spec.mode == "replace":
        # The swap exchanges the tables whole, comments too: the new table's mark (which records
        # the target's own comment) goes into the target, and the target's comment goes with the
        # old rows. After the swap the old rows get the mark and the target its comment back; a
        # kill at any point leaves either a marked helper or a marked target, which the next
        # run's sweep puts right (sweep_helpers).
        comment = _comment_of(session, target) if exists else None
        mark = helper_mark(qualified(target), run_id, comment)
        if exists:
            session.run(create_like_sql(new, target))
            session.run(set_comment_sql(new, mark), quiet=True)
        else:
            session.run(create_table_sql(new, source.columns, mark=mark))
        if files:
            session.run(insert_sql(new, landing, source.columns))
        fail_before("swap")
        session.run(swap_sql(new, target) if exists else rename_sql(new, target))
        if exists:  # the old rows, under the helper's name until they are dropped
            session.run(set_comment_sql(new, mark), quiet=True)
        session.run(set_comment_sql(target, comment), quiet=True)
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
    return LoadOutcome(rows, files, skipped, target_rows, inserted, updated, stage, created=not exists)


def _rollback(session: Session) -> None:
    try:
        session.run("ROLLBACK")
    except Exception as error:  # noqa: BLE001 - Snowflake rolls back an open transaction when the session ends
        # The clean-up's DROP TABLE would commit the open transaction on this session: end it.
        session.log.warning(f"ROLLBACK failed ({type(error).__name__}); ending the session rolls it back")
        session.renew()


def sweep_helpers(session: Session, target: Sequence[Identifier]) -> tuple[tuple[str, str], ...]:
    """Put right what earlier runs of this load left (a run killed mid-way cannot clean up after
    itself): a target that still carries a replace's mark gets its own comment back, and that
    run's old rows (`<target>__DM_NEW_<run>`) are dropped; then every table whose name is a helper's
    of this target AND whose comment is the project's mark for this load is dropped. Returns
    (name, run id) of each table dropped."""
    swept = []
    load = qualified(target)
    own = parse_mark(_comment_of(session, target))
    if own is not None and own["load"] == load and "target_comment" in own:
        run = str(own.get("run_id"))
        old = helper_name(target, "NEW", run_suffix(run))
        session.run(set_comment_sql(target, own["target_comment"]))
        session.run(drop_table_sql(old))
        session.log.info(f"Run {run} of this load was stopped right after its swap: the target's comment is restored")
        swept.append((old[-1].name, run))
    for row in session.run(helpers_sql(target), quiet=True):
        name, mark = str(row["TABLE_NAME"]), parse_mark(row.get("COMMENT"))
        if not is_helper_name(target, name):
            continue
        if mark is None:
            session.log.warning(
                f"{name} is named like a helper of this load but carries no mark of the project; it is left as "
                "it is (the project marks every helper table it creates)"
            )
            continue
        if mark["load"] != load:
            continue
        session.run(drop_table_sql(sibling(target, name)))
        session.log.info(f"Dropped {name}, which run {mark.get('run_id')} of this load left behind")
        swept.append((name, str(mark.get("run_id"))))
    return tuple(swept)


def _comment_of(session: Session, table: Sequence[Identifier]) -> str | None:
    rows = session.run(table_comment_sql(table), quiet=True)
    comment = rows[0].get("COMMENT") if rows else None
    return None if comment is None else str(comment)


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
        names = {f.key: f.key for f in files}  # the stage is over the bucket's root
        _copy_named(session, landing, columns, f"@{export_stage}", files, names)
        return f"external stage {export_stage}"

    # The session's own stage: a name no other load or attempt uses (Snowflake drops it, files
    # and all, when the session ends).
    stage = sibling(landing, f"DM_STAGE_{suffix}_{secrets.token_hex(4).upper()}")
    stage_sql = qualified(stage)
    session.run(create_stage_sql(stage))
    folder = f"load_{stage[-1].name[-8:].lower()}"
    names = {}
    for index, f in enumerate(files):
        name = f"part-{index:05d}.parquet"
        names[f.key] = name
        with store.open_read(f.key) as data:  # on disk past 64 MiB: one file at a time
            verified_bytes(data, FilePart(f.key, f.uri, f.rows, f.size, f.sha256))
            session.run(put_sql(name, stage_sql, folder), file_stream=data, quiet=index > 0)
    _copy_named(session, landing, columns, run_folder(stage_sql, folder), files, names)
    return f"temporary internal stage {stage_sql} ({len(files)} file(s) PUT)"


def _copy_named(
    session: Session,
    landing: Sequence[Identifier],
    columns: Sequence[LoadColumn],
    stage: str,
    files: Sequence[SourceFile],
    names: Mapping[str, str],
) -> None:
    """COPY the files (by their `names` under `stage`), MAX_FILES_PER_COPY at a time, and check
    every file's loaded rows."""
    output: list[dict[str, Any]] = []
    for start in range(0, len(files), MAX_FILES_PER_COPY):
        chunk = files[start : start + MAX_FILES_PER_COPY]
        output += session.run(copy_sql(landing, columns, stage, [names[f.key] for f in chunk]))
    _check_copied(output, files, names)


def _check_copied(output: Sequence[Mapping[str, Any]], files: Sequence[SourceFile], names: Mapping[str, str]) -> None:
    """COPY's output (FILE, STATUS, ROWS_PARSED, ROWS_LOADED, … per file) against the recorded rows."""
    by_name: dict[str, Mapping[str, Any]] = {}
    for row in output:
        if row.get("FILE") is None:
            continue  # "Copy executed with 0 files processed."
        by_name[str(row["FILE"])] = row
    for f in files:
        name = names[f.key]
        row = next((r for n, r in by_name.items() if n == name or n.endswith("/" + name)), None)
        if row is None:
            raise LoadError(f"Snowflake loaded no file {name} ({f.uri}); COPY reported: {sorted(by_name)}")
        if str(row["STATUS"]).upper() != "LOADED" or int(row["ROWS_LOADED"]) != f.rows:
            raise LoadError(
                f"{f.uri}: Snowflake loaded {row['ROWS_LOADED']} of its rows (status {row['STATUS']}), but "
                f"{f.rows} were recorded"
            )


# The asset -----------------------------------------------------------------------------------


def load_query_tag(spec: LoadSpec, run_id: str) -> str:
    return json.dumps(
        {"app": "data-migration", "load": "/".join(spec.asset_key_path)[:1000], "run_id": run_id},
        separators=(",", ":"),
    )


def build_load_asset(spec: LoadSpec, retry_policy: RetryPolicy | None = None) -> AssetsDefinition:
    """One asset for one load; downstream of its export when it has `from`."""
    key = AssetKey(list(spec.asset_key_path))
    checks = (
        [
            AssetCheckSpec(
                ROW_COUNT_CHECK,
                asset=key,
                description="After a replace, the table holds exactly the rows the load loaded.",
            )
        ]
        if spec.mode == "replace"
        else []
    )

    @asset(
        key=key,
        deps=[AssetKey(list(spec.source.asset_key_path))] if spec.source else [],
        group_name=GROUP_NAME,
        pool=POOL,
        kinds={"snowflake", "parquet"},
        description=_description(spec),
        code_version=spec.code_version,
        metadata={"target": qualified(spec.object_name), "mode": spec.mode, **code_references(spec)},
        check_specs=checks,
        retry_policy=retry_policy,
    )
    def _load(context, snowflake_load: SnowflakeExportResource, object_store: ObjectStore) -> MaterializeResult:
        name = context.asset_key.to_user_string()
        started = time.monotonic()
        latest = None
        if spec.source is not None:
            event = context.instance.get_latest_materialization_event(AssetKey(list(spec.source.asset_key_path)))
            latest = dict(event.asset_materialization.metadata) if event and event.asset_materialization else None
        session = Session(snowflake_load, context.log, load_query_tag(spec, context.run.run_id))
        try:
            source = resolve_source(spec, object_store, latest)
            context.log.info(
                f"Loading {len(source.files)} file(s), {source.rows} rows, from {source.origin} into "
                f"{qualified(spec.object_name)} ({spec.mode})"
            )
            outcome = run_load(spec, source, session, object_store, snowflake_load.export_stage, context.run.run_id)
        except Exception as error:
            transient = isinstance(error, ConcurrentAppend) or (
                is_transient(error) and not isinstance(error, (LoadError, LoadSqlError, ManifestError))
            )
            raise LoadFailed(
                f"load {name} into {qualified(spec.object_name)} failed ({type(error).__name__}): {error}",
                transient=transient,
            ) from error
        finally:
            session.close()
        elapsed = round(time.monotonic() - started, 3)
        context.log.info(
            f"Load complete: {outcome.rows_loaded} rows from {len(outcome.files)} file(s) into "
            f"{qualified(spec.object_name)} ({spec.mode}); it holds {outcome.target_rows} rows, in {elapsed:.1f}s"
        )
        metadata = _metadata(spec, source, outcome, session.query_ids, elapsed)
        results = (
            [
                AssetCheckResult(
                    check_name=ROW_COUNT_CHECK,
                    passed=outcome.target_rows == outcome.rows_loaded,
                    severity=AssetCheckSeverity.ERROR,
                    metadata={
                        "target_rows": MetadataValue.int(outcome.target_rows),
                        "rows_loaded": MetadataValue.int(outcome.rows_loaded),
                    },
                )
            ]
            if checks
            else []
        )
        return MaterializeResult(metadata=metadata, check_results=results)

    return _load


def _metadata(
    spec: LoadSpec, source: LoadSource, outcome: LoadOutcome, query_ids: Sequence[str], elapsed: float
) -> dict[str, Any]:
    shown = outcome.files[:_FILES_SHOWN]
    return {
        "dagster/row_count": MetadataValue.int(outcome.target_rows),
        "rows_loaded": MetadataValue.int(outcome.rows_loaded),
        "files_loaded": MetadataValue.int(len(outcome.files)),
        "files_skipped": MetadataValue.int(len(outcome.skipped)),
        **({"rows_inserted": MetadataValue.int(outcome.inserted)} if outcome.inserted is not None else {}),
        **({"rows_updated": MetadataValue.int(outcome.updated)} if outcome.updated is not None else {}),
        "mode": MetadataValue.text(spec.mode),
        "target": MetadataValue.text(qualified(spec.object_name)),
        "target_created": MetadataValue.bool(outcome.created),
        "source": MetadataValue.path(source.origin),
        "stage": MetadataValue.text(outcome.stage or "none (nothing new to load)"),
        "helpers_swept": MetadataValue.json([{"table": name, "run_id": run} for name, run in outcome.swept]),
        "snowflake_query_ids": MetadataValue.json(list(query_ids)),
        "elapsed_seconds": MetadataValue.float(elapsed),
        "dagster/column_schema": MetadataValue.table_schema(
            TableSchema(columns=[TableColumn(c.name, c.snowflake_type) for c in source.columns])
        ),
        "files": MetadataValue.table(
            records=[TableRecord({"uri": f.uri, "rows": f.rows, "size_bytes": f.size}) for f in shown],
            schema=TableSchema(
                columns=[TableColumn("uri", "string"), TableColumn("rows", "int"), TableColumn("size_bytes", "int")]
            ),
        ),
    }


def _description(spec: LoadSpec) -> str:
    where = f"the last committed output of `{spec.source.table}`" if spec.source else f"`{spec.s3_path}` in the bucket"
    how = {
        "replace": "replaces its rows: a new table is filled and swapped in with one `ALTER TABLE … SWAP WITH`",
        "append": "appends the files not loaded before (recorded in `DATA_MIGRATION_LOADED_FILES`)",
        "merge": f"merges on {', '.join(k.name for k in spec.keys)} with one `MERGE`",
    }[spec.mode]
    return f"Loads {where} into `{qualified(spec.object_name)}` through a stage, and {how}."


def build_load_assets(loads: Sequence[LoadSpec], retry_policy: RetryPolicy | None = None) -> list[AssetsDefinition]:
    return [build_load_asset(spec, retry_policy) for spec in loads]
