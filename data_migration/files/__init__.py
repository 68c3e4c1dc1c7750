"""Files in the bucket, and nothing of Snowflake: one streaming writer and reader per file type
(`formats/`), the object stores with all-or-nothing writes (`storage/`), the bounded pipeline
between a source of batches and a writer (`pipeline.py`), and the layout of an export's output,
one object or parts with a manifest committed by a conditional write (`layout.py`).

May import: `config` (the key rules of `config.paths`) and nothing else of the project.
"""
