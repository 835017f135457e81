"""Templates and the filters they lay values out with."""

from __future__ import annotations

import json
from datetime import datetime

import jinja2

from taskyard.scheduler.domain import State, WorkRequest

#: What an empty cell shows (an en dash).
NONE = "\u2013"


def duration(seconds: float | None) -> str:
    """`0.25 s`, `12.0 s`, `3 min 04 s`, `2 h 05 min`; a dash for none."""
    if seconds is None:
        return NONE
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(moment: datetime | None) -> str:
    """A moment in UTC, to the second."""
    return NONE if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def ago(moment: datetime | None, now: datetime) -> str:
    """How long before `now`."""
    return "never" if moment is None else f"{duration((now - moment).total_seconds())} ago"


def state_label(work_request: WorkRequest) -> str:
    """`running`, `completed: failure`, `aborting`..."""
    if work_request.state is State.COMPLETED:
        return f"completed: {work_request.result.value}"
    if work_request.abort_requested_at is not None and work_request.state is not State.ABORTED:
        return f"{work_request.state.value} (aborting)"
    return work_request.state.value


def pretty_json(text: str) -> str:
    """JSON text indented, or as it is if it does not parse."""
    try:
        return json.dumps(json.loads(text or "{}"), indent=2, sort_keys=True)
    except ValueError:
        return text


def environment() -> jinja2.Environment:
    """The templates of the pages, escaping everything they are given."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("taskyard.scheduler.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=duration, when=when, state_label=state_label, pretty_json=pretty_json
    )
    env.globals.update(ago=ago)
    return env
