"""Exports, Snowflake to the bucket: the asset per export (`assets.py`) and its checks
(`checks.py`), the IO managers that write and read its output (`io_managers.py`), the runs of more
than one query (`runs.py`: a range of partitions, an increment, an unload), an increment's mark
and plan (`increments.py`), Snowflake's own unload (`unload.py`), the progress line a
streaming export logs (`progress.py`), and exports to Iceberg and Delta tables: their IO manager
(`tables.py`), their checks (`table_checks.py`) and their access to the bucket and the catalog
(`lake.py`).

May import: `config`, `snowflake`, `files`, `tables`, and the shared `errors` and
`conventions`; never `loads`.
"""
