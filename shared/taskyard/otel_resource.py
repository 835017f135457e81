"""The OpenTelemetry resource of a Taskyard process, hashed once.

The OTLP span encoder groups every exported span by its resource, and
`Resource.__hash__` serialises all the attributes to JSON each time: a few
percent of a traced scheduler's CPU, with five spans per work request. The
resource never changes once made, so its hash is kept.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.util.types import Attributes


class ProcessResource(Resource):
    """`Resource.create(attributes)` (with the SDK's detectors), hashed once."""

    def __init__(self, attributes: Attributes) -> None:
        created = Resource.create(attributes)
        super().__init__(created.attributes, created.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash
