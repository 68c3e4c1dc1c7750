"""The DuckDB types fakesnow gives Snowflake's numbers and times, widened where DuckDB can hold what
Snowflake holds: a NUMBER(38,0) beyond int64, and the nanoseconds of a TIMESTAMP_NTZ(9) or a TIME(9).

Snowflake: NUMBER's default is (38,0), and INT, BIGINT and the other integer names are NUMBER(38,0)
(https://docs.snowflake.com/en/sql-reference/intro-summary-data-types); TIME and TIMESTAMP take a
precision of 0 to 9, 9 by default (https://docs.snowflake.com/en/sql-reference/data-types-datetime).
fakesnow 0.12 makes NUMBER(38,0) and the integer names BIGINT, TIMESTAMP_NTZ DuckDB's TIMESTAMP and
TIME DuckDB's TIME, both in microseconds, so `12345678901234567890123456789::NUMBER(38,0)` failed
("Type INT128 ... out of range ... INT64") and `'12:34:56.123456789'::TIME` lost its last digits.

What DuckDB can hold, and so what the emulator carries:
- A cast to NUMBER(38,0) (or NUMBER, INT, BIGINT, ...) whose operand holds an integer literal beyond
  int64 is DECIMAL(38,0), so the value arrives, in a decimal128 chunk. A table's NUMBER(38,0) and
  INT columns stay BIGINT: DuckDB's functions take no DECIMAL or HUGEINT where they take an integer
  (SUBSTR, REPEAT, a DATE plus a number, a list index all fail), so a wider column would break
  statements Snowflake runs; a value beyond int64 there fails with DuckDB's out-of-range error.
  A NUMBER(p,0) column of 19 to 37 digits is DECIMAL(p,0) in fakesnow already, and holds them.
- A TIMESTAMP_NTZ(7), (8) or (9) column, and a cast of a string literal to TIMESTAMP_NTZ (any
  precision above 6, or none) with digits below the microsecond, is DuckDB's TIMESTAMP_NS: its
  nanoseconds are kept, but it holds only years 1677 to 2262 (a later value fails). A column of
  TIMESTAMP_NTZ with no precision, or with 0 to 6, stays TIMESTAMP: microseconds, years 1 to 9999.
  A cast of any other expression to TIMESTAMP_NTZ(9) gives microseconds, as fakesnow's does.
- A cast of a string literal with digits below the microsecond to TIME (no precision, or 7 to 9) is
  DuckDB's TIME_NS. A TIME column stays TIME, microseconds: DuckDB cannot compare a TIME_NS with a
  TIME or add an interval to it. The connector's Arrow tables hold a TIME in microseconds whatever
  Snowflake sends (CArrowTableIterator::convertTimeColumn_nanoarrow divides a TIME(9) by 1000).
"""

from __future__ import annotations

import re
from typing import Any

_INT64_MAX = 2**63 - 1
_BELOW_MICROSECOND = re.compile(r":\d\d\.\d{7,9}(?!\d)")
_YEAR = re.compile(r"^\s*(\d{4})-")
_NS_YEARS = range(1678, 2262)  # whole years TIMESTAMP_NS holds (1677-09-21 to 2262-04-11)
_COLUMNS_VIEW_TYPES = (
    "when columns.data_type='TIMESTAMP' then 'TIMESTAMP_NTZ'",
    "when columns.data_type in ('TIMESTAMP', 'TIMESTAMP_NS') then 'TIMESTAMP_NTZ'\n"
    "     when columns.data_type='TIME_NS' then 'TIME'",
)


def hold_snowflakes_precision() -> None:
    """Widen fakesnow's types as the module says (once per process, when an app is made)."""
    import fakesnow.info_schema
    import fakesnow.rowtype
    import fakesnow.server
    import fakesnow.transforms as transforms

    if getattr(transforms, "_dm_emulator_precision", False):
        return
    transforms._dm_emulator_precision = True
    fakesnow.rowtype.duckdb_to_sf_type["TIME_NS"] = "time"

    to_timestamp, timestamp_ntz, integer_precision = (
        transforms.to_timestamp, transforms.timestamp_ntz, transforms.integer_precision,
    )  # fmt: skip

    def nanosecond_casts(expression: Any) -> Any:
        return _nanosecond_literal(expression) or to_timestamp(expression)

    def nanosecond_columns(expression: Any) -> Any:
        return _nanosecond_column(expression) or timestamp_ntz(expression)

    def wide_numbers(expression: Any) -> Any:
        return _wide_number_cast(expression) or integer_precision(expression)

    transforms.to_timestamp = nanosecond_casts
    transforms.timestamp_ntz = nanosecond_columns
    transforms.integer_precision = wide_numbers

    # INFORMATION_SCHEMA.COLUMNS (and DESCRIBE TABLE) name a TIMESTAMP_NS column TIMESTAMP_NTZ.
    old, new = _COLUMNS_VIEW_TYPES
    view = fakesnow.info_schema.SQL_CREATE_GLOBAL_INFORMATION_SCHEMA_COLUMNS_VIEW
    if old in view:
        view = view.replace(old, new)
        fakesnow.info_schema.SQL_CREATE_GLOBAL_INFORMATION_SCHEMA_COLUMNS_VIEW = view
        created = fakesnow.server.shared_fs.duck_conn  # made when fakesnow's server was imported
        created.execute(view.replace("create view if not exists", "create or replace view", 1))


def _precision(data_type: Any) -> int | None:
    from sqlglot import exp

    params = data_type.expressions
    if len(params) == 1 and isinstance(params[0], exp.DataTypeParam) and params[0].this.is_int:
        return int(params[0].this.name)
    return None


def _nanosecond_literal(expression: Any) -> Any:
    """A cast of a string literal with nanoseconds to TIMESTAMP_NTZ or TIME, as TIMESTAMP_NS or
    TIME_NS (None for any other expression)."""
    from sqlglot import exp

    if not isinstance(expression, exp.Cast) or not isinstance(expression.this, exp.Literal):
        return None
    text, to = expression.this, expression.to
    precision = _precision(to)
    if not text.is_string or not _BELOW_MICROSECOND.search(text.name) or (precision is not None and precision <= 6):
        return None
    if to.this in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ, exp.DataType.Type.DATETIME):
        year = _YEAR.match(text.name)
        if year is None or int(year.group(1)) not in _NS_YEARS:
            return None
        wide = exp.DataType.Type.TIMESTAMP_NS
    elif to.this == exp.DataType.Type.TIME:
        wide = exp.DataType.Type.TIME_NS
    else:
        return None
    return expression.__class__(this=text.copy(), to=exp.DataType(this=wide))


def _nanosecond_column(expression: Any) -> Any:
    """TIMESTAMP_NTZ(7..9) as TIMESTAMP_NS (None for any other type)."""
    from sqlglot import exp

    stamps = (exp.DataType.Type.TIMESTAMPNTZ, exp.DataType.Type.TIMESTAMP, exp.DataType.Type.DATETIME)
    if isinstance(expression, exp.DataType) and expression.this in stamps and (_precision(expression) or 0) > 6:
        return exp.DataType(this=exp.DataType.Type.TIMESTAMP_NS)
    return None


def _wide_number_cast(expression: Any) -> Any:
    """The target of a cast to NUMBER(38,0) or an integer name, as DECIMAL(38,0) when the cast's
    operand holds an integer literal beyond int64 (None otherwise)."""
    from sqlglot import exp

    integers = (exp.DataType.Type.INT, exp.DataType.Type.SMALLINT, exp.DataType.Type.TINYINT, exp.DataType.Type.BIGINT)
    if not isinstance(expression, exp.DataType) or expression.arg_key != "to":
        return None
    cast = expression.parent
    if not isinstance(cast, exp.Cast):
        return None
    number_38_0 = expression.this == exp.DataType.Type.DECIMAL and [p.sql() for p in expression.expressions] in (
        [], ["38", "0"],
    )  # fmt: skip
    if not (number_38_0 or (expression.this in integers and not expression.expressions)):
        return None
    for literal in cast.this.find_all(exp.Literal):
        if not literal.is_string and literal.name.isdigit() and int(literal.name) > _INT64_MAX:
            return exp.DataType.build("DECIMAL(38, 0)")
    return None
