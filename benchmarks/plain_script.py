"""The floor for the end-to-end benchmark: what a careful engineer would write by hand.

    python benchmarks/plain_script.py parquet|csv|fetch TABLE KEY

Runs `SELECT * FROM TABLE`, streams the result's Arrow batches into pyarrow's writer on a local
temporary file, and uploads that with boto3's multipart transfer. No retries, no checks, no exact
decimal text, no atomic commit beyond S3's own, and every result chunk assumed to have the first
one's schema (Snowflake's may not). `fetch` only pulls the result and discards it.
Connection settings come from the same environment variables as the project's.
"""

from __future__ import annotations

import os
import sys
import tempfile

import boto3
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import snowflake.connector

file_type, table, key = sys.argv[1:4]
env = os.environ
connection = snowflake.connector.connect(
    account=env["SNOWFLAKE_ACCOUNT"], user=env["SNOWFLAKE_USER"], password=env["SNOWFLAKE_PASSWORD"],
    host=env["SNOWFLAKE_HOST"], port=int(env["SNOWFLAKE_PORT"]), protocol=env["SNOWFLAKE_PROTOCOL"],
    database=env["SNOWFLAKE_DATABASE"], schema=env["SNOWFLAKE_SCHEMA"],
)  # fmt: skip
cursor = connection.cursor().execute(f'SELECT * FROM "{table}"')
batches = cursor.fetch_arrow_batches()
if file_type == "fetch":
    rows = sum(batch.num_rows for batch in batches)
else:
    with tempfile.NamedTemporaryFile(suffix=f".{file_type}") as out:
        writer = None
        rows = 0
        for batch in batches:
            if writer is None:
                new = pq.ParquetWriter if file_type == "parquet" else pacsv.CSVWriter
                writer = new(out.name, batch.schema)
            writer.write_table(batch)
            rows += batch.num_rows
        writer.close()
        boto3.client("s3").upload_file(out.name, env["S3_BUCKET_NAME"], key)
connection.close()
print(rows)
