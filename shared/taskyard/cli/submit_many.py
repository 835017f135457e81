"""`taskyard submit-many`: queue work requests from JSON Lines on one
SubmitStream, printing each id as the scheduler commits it.

Each line is an object: `{"task": NAME, "data": {...}, "priority": N,
"timeout": SECONDS, "max_attempts": N, "idempotency_key": KEY, "tenant":
NAME, "after": [ID...], "after_done": [ID...]}`; only `task` is required. A
line that is not such an object, or that the scheduler refuses, is said on
stderr with its number and the rest go on; the exit status is then 2 (a
malformed line) or 1 (a refused one). A stream broken while the scheduler is
away is opened again and what was not answered is sent again: every line
has an idempotency key (its own, or one made up for this run), so nothing is
queued twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, Any

import grpc
import jsonschema

from taskyard.cli import records
from taskyard.cli.connection import Connection, Resuming, with_violations
from taskyard.cli.errors import INVALID, REFUSED, CliError
from taskyard.cli.parsing import Subparsers
from taskyard.cli.work_requests import add_command
from taskyard.v1 import work_requests_pb2 as pb

LINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["task"],
    "additionalProperties": False,
    "properties": {
        "task": {"type": "string", "minLength": 1},
        "data": {"type": "object"},
        "priority": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 10**9},
        "max_attempts": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        "idempotency_key": {"type": "string"},
        "tenant": {"type": "string"},
        "after": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "after_done": {"type": "array", "items": {"type": "string", "minLength": 1}},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(LINE_SCHEMA)


def add_parsers(subparsers: Subparsers) -> None:
    """Register `taskyard submit-many`."""
    command = add_command(
        subparsers,
        "submit-many",
        "queue work requests from JSON Lines on one stream; print each id once committed",
        _submit_many,
    )
    command.add_argument(
        "file", help='JSON Lines, one {"task": ..., "data": {...}} per line; - reads stdin'
    )


@dataclass
class Tally:
    """What became of the lines so far."""

    malformed: int = 0
    refused: int = 0

    def exit_status(self) -> int:
        return INVALID if self.malformed else REFUSED if self.refused else 0


def request_of(line: bytes, run_key: str, number: int) -> pb.SubmitStreamRequest:
    """The stream request a line asks for, or CliError saying what is wrong with it."""
    try:
        found = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CliError(f"line {number}: not UTF-8 text: {error}") from error
    except json.JSONDecodeError as error:
        raise CliError(f"line {number}: not valid JSON: {error}") from error
    problem = next(iter(_VALIDATOR.iter_errors(found)), None)
    if problem is not None:
        where = ".".join(str(p) for p in problem.path)
        raise CliError(f"line {number}: {where + ': ' if where else ''}{problem.message}")
    request = pb.SubmitRequest(
        task_name=found["task"],
        task_data_json=json.dumps(found.get("data", {})),
        priority=found.get("priority", 0),
        max_attempts=found.get("max_attempts", 0),
        idempotency_key=found.get("idempotency_key") or f"{run_key}-{number}",
        tenant=found.get("tenant", ""),
        after=_dependencies(found),
    )
    if "timeout" in found:
        request.timeout.FromNanoseconds(round(found["timeout"] * 1e9))
    return pb.SubmitStreamRequest(request=request)


def _dependencies(found: dict[str, Any]) -> list[pb.Dependency]:
    kinds = (("after", pb.DEPENDENCY_NEEDS_SUCCESS), ("after_done", pb.DEPENDENCY_NEEDS_DONE))
    return [pb.Dependency(on=i, needs=needs) for key, needs in kinds for i in found.get(key, [])]


def _numbered(source: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Each line that is not blank, with its number (bytes: one line of bad
    encoding is that line's problem, not the input's end)."""
    for number, line in enumerate(source, 1):
        if line.strip():
            yield number, line


class Sender:
    """The lines of one run, sent over as many streams as it takes."""

    def __init__(self, source: IO[bytes], json_output: bool) -> None:
        self._lines = _numbered(source)
        self._run_key = f"cli-{secrets.token_hex(8)}"
        self._json = json_output
        #: Sent and not yet answered, oldest first: sent again on a new stream.
        self.unanswered: deque[tuple[int, pb.SubmitStreamRequest]] = deque()
        self.tally = Tally()
        self._reading: asyncio.Future[tuple[int, bytes] | None] | None = None
        #: Why the input could not be read to its end, if it could not.
        self.unreadable: CliError | None = None

    async def requests(self) -> AsyncIterator[pb.SubmitStreamRequest]:
        """What was not answered, then each line still to read (read off
        the event loop: answers keep coming while stdin waits)."""
        for _, request in list(self.unanswered):
            yield request
        while (numbered := await self._next_line()) is not None:
            number, text = numbered
            try:
                request = request_of(text, self._run_key, number)
            except CliError as error:
                self.tally.malformed += 1
                self._say(error)
                continue
            self.unanswered.append((number, request))
            yield request

    async def _next_line(self) -> tuple[int, bytes] | None:
        """The next line; a read the last stream's end interrupted is
        finished, not lost."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(asyncio.to_thread(next, self._lines, None))
        try:
            numbered = await asyncio.shield(self._reading)
        except OSError as error:  # what was read still goes
            self.unreadable = CliError(f"the input cannot be read past its last line: {error}")
            numbered = None
        self._reading = None
        return numbered

    def answered(self, answer: pb.SubmitStreamResponse) -> None:
        number, _ = self.unanswered.popleft()
        if answer.HasField("problem"):
            self.tally.refused += 1
            problem = answer.problem
            message = with_violations(problem.message, problem.field_violations)
            self._say(CliError(f"line {number}: {message}", REFUSED, reason=problem.reason))
        elif self._json:
            print(json.dumps(records.work_request(answer.work_request)), flush=True)  # a line each
        else:
            print(answer.work_request.id, flush=True)

    def _say(self, error: CliError) -> None:
        line = error.as_json() if self._json else f"taskyard: error: {error.message}"
        print(line, file=sys.stderr)


async def _submit_many(connection: Connection, args: argparse.Namespace) -> int:
    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as error:
        raise CliError(f"cannot read {args.file}: {error.strerror}") from error
    with source:
        sender = Sender(source, args.json)
        resuming = Resuming()
        while True:
            call = connection.work_requests.SubmitStream(
                sender.requests(), metadata=connection.metadata
            )
            try:
                async for answer in call:
                    resuming.progressed()
                    sender.answered(answer)
                if sender.unreadable is not None:
                    raise sender.unreadable
                return sender.tally.exit_status()
            except grpc.aio.AioRpcError as error:
                await resuming.after(error)  # the scheduler is away: again, or give up
