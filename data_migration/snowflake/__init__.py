"""Snowflake access: the only code that runs SQL. The resource (`resource.py`), the connection a
run shares, statements with their rows by column name and a query's result streamed as Arrow
batches (`queries.py`), and the query tags that find a run's statements in QUERY_HISTORY
(`tags.py`). It takes SQL text, never an export or a load to run.

May import: `config` (names and literals, the specs a query tag names) and `local` (the embedded
emulator the embedded resource starts).
"""
