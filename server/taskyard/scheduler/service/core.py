"""What every use case shares: the store, the live state, the clock and ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from taskyard.scheduler.domain import SchedulerRecord
from taskyard.scheduler.service.auth import Credentials
from taskyard.scheduler.service.committer import GroupCommitter
from taskyard.scheduler.service.dispatch import Dispatcher
from taskyard.scheduler.service.feed import ChangeFeed
from taskyard.scheduler.service.ids import IdFactory
from taskyard.scheduler.service.sessions import Settings


@dataclass
class Core:
    """The scheduler's shared parts, built once by `Scheduler`."""

    db: GroupCommitter
    feed: ChangeFeed
    dispatcher: Dispatcher
    credentials: Credentials
    clock: Callable[[], datetime]
    new_id: IdFactory
    settings: Settings
    auto_enable_workers: bool = False
    #: The schedulers alive on this database (this one included), as they
    #: last beat: kept by maintenance's renewals.
    schedulers: dict[str, SchedulerRecord] = field(default_factory=dict)
