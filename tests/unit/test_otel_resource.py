"""The process's OpenTelemetry resource: the SDK's, hashed once."""

from __future__ import annotations

import pytest
from opentelemetry.sdk import resources
from opentelemetry.sdk.resources import Resource

from taskyard.otel_resource import ProcessResource


def test_it_is_the_resource_the_sdk_would_create() -> None:
    ours = ProcessResource({"service.name": "taskyard-test"})
    theirs = Resource.create({"service.name": "taskyard-test"})
    assert ours == theirs
    assert hash(ours) == hash(theirs)
    assert ours.attributes["service.name"] == "taskyard-test"


def test_hashing_it_again_serialises_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    ours = ProcessResource({"service.name": "taskyard-test"})
    expected = hash(ours)

    def refuse(*_args: object, **_kwargs: object) -> str:
        raise AssertionError("the resource was serialised to be hashed")

    monkeypatch.setattr(resources, "dumps", refuse)
    assert {ours: 1}[ours] == 1
    assert hash(ours) == expected
