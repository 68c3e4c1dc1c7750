"""Open table formats (Iceberg through a pyiceberg catalog, Delta through deltalake) over Parquet
files already written under a table's location: what a commit is and when a lost race may be
redone (`commit.py`), how data files are named so the orphan sweep finds only ours (`naming.py`,
`sweep.py`), which Arrow types each format takes (`types.py`), and each format's side
(`iceberg.py`, `delta.py`). Nothing here writes rows: the files come from the export's writer.

May import: `config` (one way to quote a Snowflake name) and nothing else of the project.
"""
