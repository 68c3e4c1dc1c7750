"""Loads, the bucket back into Snowflake: the asset per load (`assets.py`), what it reads
(`sources.py`), the run's steps (`apply.py`), their statements (`sql.py`), and
dagster-snowflake-pandas' IO manager for users' DataFrame assets (`dataframes.py`).

May import: `config`, `snowflake`, `files`, `local` (the emulator's address for DataFrames), and
the shared `errors`, `conventions` and `dagster_private`; never `exports`.
"""
