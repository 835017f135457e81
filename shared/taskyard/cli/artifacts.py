"""`taskyard artifacts`: list, show, download and upload artifacts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from taskyard.cli import records
from taskyard.cli.connection import Connection, add_connection_arguments
from taskyard.cli.errors import CliError
from taskyard.cli.json_arg import parse_json_object
from taskyard.cli.parsing import Subparsers
from taskyard.cli.work_requests import client_command
from taskyard.rpc import transfer
from taskyard.v1 import artifacts_pb2 as pb

if TYPE_CHECKING:
    from rich.progress import Progress


def add_parsers(subparsers: Subparsers) -> None:
    """Register `artifacts` and its actions."""
    parser = subparsers.add_parser(
        "artifacts",
        help="list, show, download and upload artifacts",
        description="list, show, download and upload artifacts",
    )
    actions = parser.add_subparsers(required=True, metavar="ACTION")
    listing = _action(actions, "list", "list complete artifacts, newest first", _list)
    listing.add_argument("--work-request", default="", help="only this work request's")
    listing.add_argument("--category", default="", help="only this category")
    show = _action(actions, "show", "show an artifact and its files", _show)
    show.add_argument("id", help="artifact id (taskyard artifacts list)")
    download = _action(actions, "download", "download files, verified", _download)
    download.add_argument("id", help="artifact id (taskyard artifacts list)")
    download.add_argument("paths", nargs="*", help="only these files (default: all)")
    download.add_argument("-o", "--output", type=Path, default=Path("."), help="directory")
    upload = _action(actions, "upload", "upload files as one artifact", _upload)
    upload.add_argument("--category", required=True, help="what kind of artifact it is")
    upload.add_argument("--data", default="{}", help="JSON object, or @FILE")
    upload.add_argument("files", nargs="+", type=Path, help="files to upload")


def _action(
    actions: Subparsers, name: str, help_text: str, action: object
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_text, description=help_text)
    add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts (docs/cli.md)")
    parser.set_defaults(handler=client_command(action))  # type: ignore[arg-type]
    return parser


def describe(artifact: pb.Artifact) -> str:
    """A few lines about an artifact."""
    lines = [f"{artifact.id}  {artifact.category}  {len(artifact.files)} file(s)"]
    if artifact.work_request_id:
        lines[0] += f"  from {artifact.work_request_id}"
    lines += [f"  {f.size:>12,}  {f.sha256[:12]}  {f.path}" for f in artifact.files]
    return "\n".join(lines)


def _progress(json_output: bool) -> Progress:
    """A progress bar on stderr, shown only on a terminal (scripts read stdout)."""
    # Loaded only by the commands that transfer files: `rich` is a fifth of
    # the other commands' start-up.
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=json_output or not console.is_terminal,
        transient=False,
    )


async def _list(connection: Connection, args: argparse.Namespace) -> int:
    request = pb.ListArtifactsRequest(work_request_id=args.work_request, category=args.category)
    response = await connection.artifacts.ListArtifacts(request, metadata=connection.metadata)
    if args.json:
        print(records.dumps([records.artifact(a) for a in response.artifacts]))
    for artifact in [] if args.json else response.artifacts:
        print(describe(artifact))
    return 0


async def _show(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.artifacts.GetArtifact(
        pb.GetArtifactRequest(artifact_id=args.id), metadata=connection.metadata
    )
    shown = response.artifact
    print(records.dumps(records.artifact(shown)) if args.json else describe(shown))
    return 0


async def _download(connection: Connection, args: argparse.Namespace) -> int:
    shown = await connection.artifacts.GetArtifact(
        pb.GetArtifactRequest(artifact_id=args.id), metadata=connection.metadata
    )
    chosen = [f for f in shown.artifact.files if not args.paths or f.path in args.paths]
    with _progress(args.json) as bar:
        task = bar.add_task(f"downloading {args.id}", total=sum(f.size for f in chosen))
        written = await transfer.download(
            connection.artifacts,
            connection.metadata,
            args.id,
            args.output,
            paths=args.paths,
            progress=lambda n: bar.advance(task, n),
        )
    if args.json:
        print(records.dumps({"artifact": args.id, "written": [str(p) for p in written]}))
    for path in [] if args.json else written:
        print(path)
    return 0


async def _upload(connection: Connection, args: argparse.Namespace) -> int:
    data = parse_json_object(args.data, option="--data")
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        raise CliError(f"not a file: {', '.join(missing)}")
    files = {path.name: path for path in args.files}
    if len(files) != len(args.files):
        raise CliError("two files have the same name; upload them separately")
    with _progress(args.json) as bar:
        task = bar.add_task("uploading", total=sum(p.stat().st_size for p in files.values()))
        artifact = await transfer.upload(
            connection.artifacts,
            connection.metadata,
            category=args.category,
            files=files,
            data_json=json.dumps(data),
            progress=lambda n: bar.advance(task, n),
        )
    print(records.dumps(records.artifact(artifact)) if args.json else describe(artifact))
    return 0
