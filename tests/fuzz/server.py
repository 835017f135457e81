"""A real `taskyard scheduler` process for fuzzing: its own RSS, its own log."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from taskyard.rpc.credentials import CHANNEL_OPTIONS, bearer_metadata, new_token
from taskyard.v1 import operator_pb2, operator_pb2_grpc, workers_pb2, workers_pb2_grpc
from tests.e2e.processes import TASKYARD, stop, wait_for_line

Metadata = tuple[tuple[str, str], ...]
#: Workers registered for the run: concurrent sessions share and replace them.
WORKERS = 6


@dataclass
class SchedulerUnderFuzz:
    """A scheduler process over SQLite in `data_dir`, logging to `log`, with
    a token for each kind of caller."""

    data_dir: Path
    log: Path
    callers: dict[str, Metadata] = field(default_factory=dict)
    #: Every registered (and enabled) worker's credentials.
    workers: list[Metadata] = field(default_factory=list)
    address: str = ""
    _process: subprocess.Popen[str] | None = None
    _channel: grpc.Channel | None = None

    def start(self) -> None:
        with open(self.log, "a", encoding="utf-8") as log:
            self._process = subprocess.Popen(
                [*TASKYARD, "scheduler", "--data-dir", str(self.data_dir),
                 "--listen", "127.0.0.1:0", "--auto-enable-workers"],
                stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                env={**os.environ, "OTEL_SDK_DISABLED": "true"},
            )  # fmt: skip
        self.address = wait_for_line(self._process, r"listening on (\S+)").group(1)
        admin = bearer_metadata((self.data_dir / "admin.token").read_text().strip())
        with self.channel() as channel:
            created = operator_pb2_grpc.OperatorServiceStub(channel).CreateToken(
                operator_pb2.CreateTokenRequest(role=operator_pb2.TOKEN_ROLE_SUBMIT),
                metadata=admin,
            )
            worker_tokens = [new_token() for _ in range(WORKERS)]
            for number, token in enumerate(worker_tokens):
                workers_pb2_grpc.WorkerServiceStub(channel).Register(
                    workers_pb2.RegisterRequest(name=f"fuzz-worker-{number}", token=token)
                )
        self.workers = [bearer_metadata(token) for token in worker_tokens]
        self.callers = {
            "admin": admin,
            "submit": bearer_metadata(created.secret),
            "worker": self.workers[0],
            "anonymous": (),
        }

    def rss(self) -> int:
        assert self._process is not None
        return int(psutil.Process(self._process.pid).memory_info().rss)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def channel(self) -> grpc.Channel:
        """A new channel to the scheduler (the caller closes it)."""
        return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    def shared_channel(self) -> grpc.Channel:
        """One channel for the whole run: a connection per call would cost
        more than the call."""
        if self._channel is None:
            self._channel = self.channel()
        return self._channel

    def stop(self) -> int:
        assert self._process is not None
        if self._channel is not None:
            self._channel.close()
        return stop(self._process)

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback (most recent call last)")

    def log_lines(self) -> int:
        return len(self.log.read_text(errors="replace").splitlines())
