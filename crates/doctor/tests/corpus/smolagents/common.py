"""Shared plumbing of the pydantic_ai suite's processes: telemetry as each service sets it up, the
docs index the researcher's search tool reads, and serving an ASGI app on a socket bound to a free
port chosen at run time by the case's driver."""

import asyncio
import json
import os
import socket
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
if HARNESS not in sys.path:
    sys.path.insert(0, HARNESS)

import record  # noqa: E402
from serving import bound_socket, serve  # noqa: E402
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor  # noqa: E402


def telemetry(out_dir, service):
    """One TracerProvider for this process (service.name = service), as the service sets it up at
    start: spans to the case's parts, and every baggage entry copied onto every span started where
    that baggage is in context (opentelemetry-processor-baggage, as its README shows it). The
    frontend puts `session.id` in baggage."""
    tp = record.provider(out_dir, service, set_global=False)
    tp.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
    return tp


# The product documentation the researcher searches: an SQLite FTS5 index (title, body, and the
# document's JSON as the ingest job stored it). The ingest job cut long payloads at 256 characters
# (a TEXT column limit someone once set), so one document's stored JSON is truncated.
DOCS = [
    {"id": "kb-101", "title": "Rotating the API keys of the billing service",
     "body": "Open Settings, API keys, choose the billing service key and press Rotate. The old key keeps "
             "working for 24 hours."},
    {"id": "kb-102", "title": "Nightly export to the warehouse times out",
     "body": "Exports larger than 2 GB time out after 30 minutes; enable incremental export so the "
             "nightly job only sends changed rows."},
    {"id": "kb-103", "title": "Regions that support the archive storage tier",
     "body": "The archive storage tier is available in eu-west-1, eu-central-1 and ap-south-1; other "
             "regions keep cold data in the standard tier, and moving it needs a support ticket with "
             "the account number, the bucket names and the retention period you want."},
    {"id": "kb-104", "title": "Restoring a deleted project",
     "body": "Deleted projects stay in the trash for 30 days; an owner restores one from Settings, Trash."},
    {"id": "kb-105", "title": "Webhook retry limits",
     "body": "A failed webhook delivery is retried 8 times with exponential backoff over 24 hours."},
    {"id": "kb-106", "title": "The audit log of the billing service",
     "body": "Every change to billing settings is written to the audit log, which admins can export."},
]
PAYLOAD_LIMIT = 256


def build_docs_index(path):
    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path)
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(title, body, payload UNINDEXED)")
    for doc in DOCS:
        payload = json.dumps(doc)
        db.execute("INSERT INTO docs VALUES (?, ?, ?)", (doc["title"], doc["body"], payload[:PAYLOAD_LIMIT]))
    db.commit()
    db.close()


