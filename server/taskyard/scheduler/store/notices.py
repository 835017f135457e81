"""Announcements between the schedulers of one PostgreSQL database.

A transaction announces a change with `pg_notify` on the `taskyard`
channel, which PostgreSQL delivers once it commits, and never if it rolls
back. Each scheduler listens on a connection of its own, in a thread, and
ignores its own announcements (their payload names it). A listener that
lost its connection reconnects by itself, then says `resync`: what was
announced meanwhile is gone, so its scheduler reloads what it keeps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from taskyard.scheduler.store.port import Notice

log = logging.getLogger(__name__)
CHANNEL = "taskyard"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :payload)")


def announce(connection: Connection, origin: str, kind: str, key: str) -> None:
    """Announce a change within the connection's transaction."""
    connection.execute(_NOTIFY, {"payload": f"{origin} {kind} {key}"})


class Listener:
    """Listens for other schedulers' announcements until stopped."""

    def __init__(self, url: URL, origin: str, notice: Notice) -> None:
        # psycopg takes the URL without SQLAlchemy's driver name.
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._origin = origin
        self._notice = notice
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskyard-notices", daemon=True)
        self._listening = threading.Event()

    def start(self, timeout: float = 10.0) -> Callable[[], None]:
        """Start, wait until listening (announcements from then on arrive),
        and return what stops it."""
        self._thread.start()
        self._listening.wait(timeout)
        return self.stop

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psycopg  # noqa: PLC0415 - PostgreSQL only

        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    if not first:
                        self._notice("resync", "")
                    first = False
                    while not self._stop.is_set():
                        for notify in connection.notifies(timeout=0.5):
                            self._deliver(notify.payload)
            except Exception as error:
                log.warning("listening to the other schedulers failed (%s); again", error)
                time.sleep(0.5)

    def _deliver(self, payload: str) -> None:
        origin, _, rest = payload.partition(" ")
        kind, _, key = rest.partition(" ")
        if origin != self._origin:
            self._notice(kind, key)
