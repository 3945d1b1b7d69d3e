"""Timestamps for messages."""

from __future__ import annotations

import time

from google.protobuf import timestamp_pb2


def timestamp(epoch_s: float | None = None) -> timestamp_pb2.Timestamp:
    """A Timestamp for ``epoch_s`` (now when omitted)."""
    t = time.time() if epoch_s is None else epoch_s
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts
