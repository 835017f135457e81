"""Every limit on what a caller may send: the one table.

The scheduler checks each field of each request against this table before
anything is stored (`taskyard.scheduler.api.validation`); the proto comments
state the same numbers. A field with no entry gets its type's default below.
Pure data: the core and the CLI read it too.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
DAY = 24 * 3600.0
YEAR = 365 * DAY

#: gRPC's limit on one message either way (requests and responses).
MAX_MESSAGE = 4 * MIB
#: What one list page's items may add up to, leaving room for the rest.
MAX_PAGE_BYTES = 3 * MIB
#: Items of one list page, whatever `page_size` asks for.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class JsonLimits:
    """What a JSON text field may hold."""

    #: Size of the text in characters.
    max_length: int
    #: Nesting of objects and arrays.
    max_depth: int = 32
    #: Characters of one number.
    max_number: int = 100


@dataclass(frozen=True)
class Rule:
    """The limits of one field. Unset parts take the type's default."""

    #: Characters of a string, bytes of a bytes field.
    max_length: int | None = None
    #: Items of a repeated field.
    max_items: int | None = None
    #: A string field holding JSON text.
    json: JsonLimits | None = None
    #: Integer range, inclusive.
    minimum: int | None = None
    maximum: int | None = None
    #: A Duration field: more than zero and at most this many seconds.
    max_seconds: float | None = None


#: Artifacts one request's task data may name as `inputs` (every task's
#: reserved keys: `taskyard.tasks.run_options`), resolved ones included.
MAX_INPUTS = 100
#: Requests of one BatchSubmit (a pipeline), and those one request may wait
#: for (a fan-in); a pipeline's view lists at most `MAX_PIPELINE` requests.
MAX_BATCH = 20_000
MAX_AFTER = 20_000
MAX_PIPELINE = 20_000

#: Defaults by type.
MAX_STRING = 1024
MAX_BYTES = 1024
MAX_ITEMS = 1000

#: Slots one worker may offer.
MAX_SLOTS = 256
#: The longest execution timeout a request may ask for.
MAX_TIMEOUT = 30 * DAY
#: The longest lifetime of a token, and how far ahead an expiry may lie.
MAX_TTL = 10 * YEAR

TASK_DATA = JsonLimits(max_length=1 * MIB)
OUTPUT = JsonLimits(max_length=1 * MIB)
METADATA = JsonLimits(max_length=256 * KIB)
ARTIFACT_DATA = JsonLimits(max_length=64 * KIB)
DETAILS = JsonLimits(max_length=64 * KIB)

#: The longest id (of a request, an artifact, a token).
MAX_ID = 64

_ID = Rule(max_length=MAX_ID)
_NAME = Rule(max_length=200)
_TEXT = Rule(max_length=4 * KIB)
_PAGE = Rule(minimum=0)
_SIZE = Rule(minimum=0)

#: Field rules by full proto field name.
RULES: dict[str, Rule] = {
    "taskyard.v1.Lease.work_request_id": _ID,
    "taskyard.v1.SubmitRequest.task_name": _NAME,
    "taskyard.v1.SubmitRequest.task_data_json": Rule(json=TASK_DATA),
    "taskyard.v1.SubmitRequest.timeout": Rule(max_seconds=MAX_TIMEOUT),
    "taskyard.v1.SubmitRequest.idempotency_key": Rule(max_length=200),
    "taskyard.v1.SubmitRequest.max_attempts": Rule(maximum=100),
    "taskyard.v1.SubmitRequest.ref": Rule(max_length=100),
    "taskyard.v1.SubmitRequest.after": Rule(max_items=MAX_AFTER),
    "taskyard.v1.Dependency.on": Rule(max_length=100),
    "taskyard.v1.BatchSubmitRequest.requests": Rule(max_items=MAX_BATCH),
    "taskyard.v1.GetPipelineRequest.id": _ID,
    "taskyard.v1.ListRequest.page_size": _PAGE,
    "taskyard.v1.ListRequest.page_token": _ID,
    "taskyard.v1.AbortRequest.reason": _TEXT,
    "taskyard.v1.RegisterRequest.name": Rule(max_length=100),
    "taskyard.v1.RegisterRequest.token": Rule(max_length=256),
    "taskyard.v1.RegisterRequest.activation_token": Rule(max_length=256),
    "taskyard.v1.WorkerHello.metadata_json": Rule(json=METADATA),
    "taskyard.v1.WorkerHello.slots": Rule(minimum=1, maximum=MAX_SLOTS),
    "taskyard.v1.WorkerHello.running": Rule(max_items=4 * MAX_SLOTS),
    "taskyard.v1.WorkerHello.prefetch": Rule(maximum=MAX_SLOTS),
    "taskyard.v1.WorkerHeartbeat.running": Rule(max_items=MAX_SLOTS),
    "taskyard.v1.MetadataUpdate.metadata_json": Rule(json=METADATA),
    "taskyard.v1.WorkCompleted.output_json": Rule(json=OUTPUT),
    "taskyard.v1.WorkRequestError.message": Rule(max_length=64 * KIB),
    "taskyard.v1.WorkDeclined.reason": _TEXT,
    "taskyard.v1.SetWorkerMetadataRequest.static_metadata_json": Rule(json=METADATA),
    "taskyard.v1.CreateTokenRequest.description": Rule(max_length=1000),
    "taskyard.v1.CreateTokenRequest.ttl": Rule(max_seconds=MAX_TTL),
    "taskyard.v1.ArtifactFile.size": _SIZE,
    "taskyard.v1.ArtifactFile.path": Rule(max_length=1024),
    "taskyard.v1.CreateArtifactRequest.category": _NAME,
    "taskyard.v1.CreateArtifactRequest.data_json": Rule(json=ARTIFACT_DATA),
    "taskyard.v1.CreateArtifactRequest.files": Rule(max_items=10_000),
    "taskyard.v1.UploadFileRequest.offset": _SIZE,
    "taskyard.v1.UploadFileRequest.data": Rule(max_length=MIB),
    "taskyard.v1.ListArtifactsRequest.page_size": _PAGE,
    "taskyard.v1.ListArtifactsRequest.page_token": _ID,
    "taskyard.v1.DownloadArtifactRequest.paths": Rule(max_items=10_000),
    "taskyard.v1.ListWorkersRequest.page_size": _PAGE,
    "taskyard.v1.ListTokensRequest.page_size": _PAGE,
    "taskyard.v1.WorkCompleted.details_json": Rule(json=DETAILS),
    "taskyard.v1.TaskOutput.offset": _SIZE,
    "taskyard.v1.TaskOutput.chunks": Rule(max_items=64),
    "taskyard.v1.OutputChunk.data": Rule(max_length=64 * KIB),
    "taskyard.v1.LogsRequest.offset": _SIZE,
    "taskyard.v1.PruneRequest.older_than": Rule(max_seconds=MAX_TTL),
}


def page_size(asked: int) -> int:
    """The number of items a page holds when `asked` (0: the default)."""
    return min(asked or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
