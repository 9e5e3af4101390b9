"""Runs the example queries of docs/parquet.md on one engine.

    queries.py spark|datafusion DOCS_MD TABLES_DIR

Registers the five tables under TABLES_DIR as docs/parquet.md's "Loading"
section does, runs every ```sql block of DOCS_MD that starts with
`-- name: NAME`, and prints one JSON object: NAME -> list of rows (each a
column -> value object), in the query's order.
"""
import json
import re
import sys

TABLES = ["snapshots", "blocks", "stacks", "frames", "classes"]


def queries(docs):
    text = open(docs, encoding="utf-8").read()
    out = {}
    for block in re.findall(r"```sql\n(.*?)```", text, re.S):
        m = re.match(r"-- name: (\w+)\n", block)
        if m:
            out[m.group(1)] = block[m.end():]
    return out


def spark(root, sqls):
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[1]")
        .appName("leaktrail-queries")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    try:
        for t in TABLES:
            s.read.parquet(f"{root}/{t}").createOrReplaceTempView(t)
        return {n: [r.asDict() for r in s.sql(q).collect()] for n, q in sqls.items()}
    finally:
        s.stop()


def datafusion(root, sqls):
    import pyarrow as pa
    from datafusion import SessionContext

    ctx = SessionContext()
    parts = [("host", pa.string()), ("pid", pa.int32()), ("snapshot", pa.int64())]
    for t in TABLES:
        ctx.register_parquet(t, f"{root}/{t}/", table_partition_cols=parts)
    return {n: ctx.sql(q).to_arrow_table().to_pylist() for n, q in sqls.items()}


def main():
    engine, docs, root = sys.argv[1:4]
    sqls = queries(docs)
    if not sqls:
        sys.exit(f"{docs}: no ```sql block starting with -- name:")
    rows = {"spark": spark, "datafusion": datafusion}[engine](root, sqls)
    json.dump(rows, sys.stdout, default=str)


if __name__ == "__main__":
    main()
