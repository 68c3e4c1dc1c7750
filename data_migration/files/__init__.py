"""Files in the bucket, and nothing of Snowflake: one streaming writer and reader per file type
(`formats/`), the object stores with all-or-nothing writes (`storage/`), the bounded pipeline
between a source of batches and a writer (`pipeline.py`), the layout of an export's output, one
object or parts with a manifest (`layout.py`), and the manifest's conditional commit, which never
deletes what a committed manifest lists (`commit.py`).

May import: `config` (the key rules of `config.paths`) and nothing else of the project.
"""
