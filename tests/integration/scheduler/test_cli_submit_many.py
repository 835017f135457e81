"""`taskyard submit-many`: JSON Lines in, one id per committed line out, in
order; a bad line is said with its number and the rest still go."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from taskyard.v1 import work_requests_pb2 as pb
from tests.integration.scheduler.harness import Harness


async def submit_many(
    harness: Harness, text: str, *options: str, source: str = "-"
) -> tuple[int, str, str]:
    token = dict(harness.submitter)["authorization"].split()[1]
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskyard.cli.main", "submit-many", source, *options,
        "--scheduler", harness.address, "--token", token,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(cli.communicate(text.encode()), 60)
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
    assert cli.returncode is not None
    return cli.returncode, stdout.decode(), stderr.decode()


async def test_each_line_committed_prints_its_id_in_order(harness: Harness) -> None:
    lines = [json.dumps({"task": "noop", "priority": n}) for n in range(50)]
    code, stdout, stderr = await submit_many(harness, "\n".join(lines) + "\n")
    assert (code, stderr) == (0, "")
    ids = stdout.split()
    assert len(ids) == 50
    priorities = [(await harness.get(i)).priority for i in ids]
    assert priorities == list(range(50))


async def test_bad_lines_are_named_and_the_rest_go(harness: Harness) -> None:
    text = "\n".join([
        json.dumps({"task": "noop"}),
        "{not json",
        json.dumps({"task": "noop", "data": {"sleep": -5}}),
        json.dumps({"task": "noop", "colour": "red"}),
        "",
        json.dumps({"task": "noop", "priority": 7}),
    ])  # fmt: skip
    code, stdout, stderr = await submit_many(harness, text)
    assert code == 2  # a malformed line
    assert len(stdout.split()) == 2
    # Said as found: malformed lines as read, refused ones as answered.
    said = sorted(stderr.splitlines(), key=lambda line: line.split()[3])
    assert len(said) == 3
    assert said[0].startswith("taskyard: error: line 2: not valid JSON")
    assert said[1].startswith("taskyard: error: line 3: ")
    assert "sleep" in said[1]
    assert said[2].startswith("taskyard: error: line 4: Additional properties")
    assert "Traceback" not in stderr


async def test_refused_lines_exit_1_and_json_says_each(harness: Harness) -> None:
    text = json.dumps({"task": "nope"}) + "\n" + json.dumps({"task": "noop"}) + "\n"
    code, stdout, stderr = await submit_many(harness, text, "--json")
    assert code == 1
    [record] = [json.loads(line) for line in stdout.splitlines()]
    assert record["task"] == "noop"
    [error] = [json.loads(line)["error"] for line in stderr.splitlines()]
    assert error["reason"] == "UNKNOWN_TASK"
    assert error["message"].startswith("line 1: ")


async def test_a_line_sent_again_is_queued_once(harness: Harness) -> None:
    line = json.dumps({"task": "noop", "idempotency_key": "same"}) + "\n"
    code, stdout, _ = await submit_many(harness, line * 2)
    assert code == 0
    first, second = stdout.split()
    assert first == second
    listed = await harness.work_requests.List(pb.ListRequest(), metadata=harness.submitter)
    assert [w.id for w in listed.work_requests] == [first]


async def test_out_of_range_numbers_and_undecodable_lines_are_one_line_each(
    harness: Harness, tmp_path: Path
) -> None:
    lines = tmp_path / "lines.jsonl"
    text = json.dumps({"task": "noop", "priority": 2**40}) + "\n"
    text += json.dumps({"task": "noop"}) + "\n"
    lines.write_bytes(text.encode() + b"\xff\xfe\n")
    code, stdout, stderr = await submit_many(harness, "", source=str(lines))
    assert code == 2
    assert len(stdout.split()) == 1  # the good line went
    said = stderr.splitlines()
    assert said[0].startswith("taskyard: error: line 1: priority: ")
    assert said[1].startswith("taskyard: error: line 3: not UTF-8 text")
    assert "Traceback" not in stderr
