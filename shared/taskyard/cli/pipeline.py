"""`taskyard pipeline`: submit requests that wait for one another, from a
YAML or JSON file, in one call; show a pipeline with the state of each."""

from __future__ import annotations

import argparse
import json
import re
import secrets
from pathlib import Path
from typing import Any

import grpc

from taskyard.cli import records
from taskyard.cli.connection import Connection, cli_error
from taskyard.cli.errors import CliError
from taskyard.cli.output import state_name
from taskyard.cli.parsing import Subparsers
from taskyard.cli.work_requests import add_command
from taskyard.graph import depths
from taskyard.v1 import work_requests_pb2 as pb

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
#: What a pipeline file holds (checked before anything is sent).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["nodes"],
    "additionalProperties": False,
    "properties": {
        "tenant": {"type": "string"},
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "task"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": NAME},
                    "task": {"type": "string", "minLength": 1},
                    "data": {"type": "object"},
                    "after": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "after_done": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "priority": {"type": "integer"},
                    "timeout": {"type": "number", "exclusiveMinimum": 0},
                    "max_attempts": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
}
EXAMPLE = """\
nodes:
  - name: build
    task: command
    data: {command: [sh, -c, "echo built > out.txt"], outputs: [out.txt]}
  - name: test
    task: command
    after: [build]
    data: {command: [cat, inputs/out.txt], inputs: [{request: build}]}
  - name: report
    task: noop
    after_done: [test]
"""


def add_parsers(subparsers: Subparsers) -> None:
    """Register `pipeline submit` and `pipeline show`."""
    pipeline = subparsers.add_parser(
        "pipeline",
        help="submit or show requests that wait for one another",
        description="submit or show requests that wait for one another",
    )
    actions = pipeline.add_subparsers(required=True, metavar="ACTION")
    submit = add_command(
        actions, "submit", "submit a pipeline described in a YAML or JSON file", _submit
    )
    submit.add_argument("file", help="the pipeline: nodes with a name, task, data, after...")
    submit.epilog = "A pipeline file:\n\n" + EXAMPLE
    submit.formatter_class = argparse.RawDescriptionHelpFormatter
    show = add_command(actions, "show", "show a pipeline with the state of each request", _show)
    show.add_argument("id", help="the id of any request of the pipeline")


def read(path: str) -> dict[str, Any]:
    """The pipeline in `path` (YAML, of which JSON is a part), checked; one
    line saying what is wrong otherwise."""
    import jsonschema  # noqa: PLC0415 (the CLI starts without it)
    import yaml  # noqa: PLC0415

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}") from error
    try:
        found = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CliError(f"{path} is not YAML or JSON: {_first_line(error)}") from error
    problem = next(iter(jsonschema.Draft202012Validator(SCHEMA).iter_errors(found)), None)
    if problem is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem.path)
        raise CliError(f"{path}: {where.lstrip('.') or 'the file'}: {problem.message}")
    names = [node["name"] for node in found["nodes"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CliError(f"{path}: more than one node is named {twice[0]!r}")
    return dict(found)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def requests_of(pipeline: dict[str, Any]) -> list[pb.SubmitRequest]:
    """One submission per node, in order; `after` names nodes or ids."""
    key = secrets.token_hex(8)  # submitted again (a failover), the same pipeline
    found = []
    for node in pipeline["nodes"]:
        request = pb.SubmitRequest(
            task_name=node["task"],
            task_data_json=json.dumps(node.get("data", {})),
            priority=node.get("priority", 0),
            ref=node["name"],
            idempotency_key=f"pipeline-{key}-{node['name']}",
            max_attempts=node.get("max_attempts", 0),
            tenant=pipeline.get("tenant", ""),
            after=_waits(node.get("after", []), pb.DEPENDENCY_NEEDS_SUCCESS)
            + _waits(node.get("after_done", []), pb.DEPENDENCY_NEEDS_DONE),
        )
        if "timeout" in node:
            request.timeout.FromNanoseconds(round(node["timeout"] * 1e9))
        found.append(request)
    return found


def _waits(names: list[str], needs: pb.DependencyNeeds.ValueType) -> list[pb.Dependency]:
    return [pb.Dependency(on=name, needs=needs) for name in names]


async def _submit(connection: Connection, args: argparse.Namespace) -> int:
    pipeline = read(args.file)
    requests = requests_of(pipeline)
    try:
        response = await connection.work_requests.BatchSubmit(
            pb.BatchSubmitRequest(requests=requests), metadata=connection.metadata
        )
    except grpc.aio.AioRpcError as error:
        problem = cli_error(error, connection.address)
        names = [r.ref for r in requests]
        problem.message = re.sub(
            r"requests\[(\d+)\]", lambda m: f"node {names[int(m.group(1))]!r}", problem.message
        )
        raise problem from error
    submitted = [
        (r.ref, result.work_request) for r, result in zip(requests, response.results, strict=True)
    ]
    if args.json:
        print(records.dumps([{"name": n, **records.work_request(w)} for n, w in submitted]))
        return 0
    width = max(len(n) for n, _ in submitted)
    for name, work_request in submitted:
        print(f"{name:<{width}}  {work_request.id}  {state_name(work_request)}")
    return 0


async def _show(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.work_requests.GetPipeline(
        pb.GetPipelineRequest(id=args.id), metadata=connection.metadata
    )
    if args.json:
        print(records.dumps(records.pipeline(response)))
        return 0
    print(records.pipeline_summary(response))
    depth = depths({n.id: [d.on for d in n.after] for n in response.nodes})
    for node in sorted(response.nodes, key=lambda n: (depth[n.id], n.id)):
        waits = ", ".join(
            f"{d.on}{'' if records.needs(d) == 'success' else ' (done)'}" for d in node.after
        )
        why = f" [{node.error_reason}]" if node.error_reason else ""
        line = f"{'  ' * depth[node.id]}{node.id}  {node.task_name}  {state_name(node)}{why}"
        print(line + (f"  after {waits}" if waits else ""))
    if response.truncated:
        print(f"... and more: only the first {len(response.nodes):,} are shown")
    return 0
