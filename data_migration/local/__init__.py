"""The embedded Snowflake emulator: fakesnow's server in this process (`emulator.py`), with what
the production path sends and fakesnow lacks served as Snowflake documents it (`server.py`,
`sessions.py`, `loading.py`, `unload.py`, `stages.py`), its results in Snowflake's result format
(`results.py`) and its numbers and times as wide as DuckDB can hold Snowflake's (`precision.py`).

May import: nothing of the project outside this package.
"""
