"""Log lines that carry the trace and span ids, as text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

from opentelemetry import trace

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(trace_suffix)s"


class TraceIds(logging.Filter):
    """Adds `trace_id` and `span_id` (empty outside a span) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        trace_id = format(context.trace_id, "032x") if context.is_valid else ""
        span_id = format(context.span_id, "016x") if context.is_valid else ""
        record.__dict__.update(
            trace_id=trace_id,
            span_id=span_id,
            trace_suffix=f" [trace={trace_id} span={span_id}]" if trace_id else "",
        )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("trace_id", "span_id"):
            if getattr(record, key, ""):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: int = logging.INFO, log_format: str = "text") -> None:
    """Log to stderr in `log_format` (text or json), with trace ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceIds())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class RateLimitedLog:
    """Logs at most one line per `interval` seconds for each key, saying how
    many were left out since: what a caller's mistakes cost the log."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        """Log `message` unless a line with `key` went out within the interval."""
        now = time.monotonic()
        last, skipped = self._last.get(key, (-self._interval, 0))
        if now - last < self._interval:
            self._last[key] = (last, skipped + 1)
            return
        if len(self._last) > 1000:  # keys come from callers: keep the table small
            self._last.clear()
        self._last[key] = (now, 0)
        suffix = f" ({skipped} more like it not logged)" if skipped else ""
        self._logger.warning(message + suffix, *args)
