"""Several scheduler addresses as one gRPC target."""

from __future__ import annotations

import json

import pytest

from taskyard.errors import InvalidArgumentError, UnavailableError
from taskyard.rpc import targets


def test_one_address_is_passed_as_it_is() -> None:
    assert targets.channel_target("scheduler.example:50051") == "scheduler.example:50051"


def test_several_are_resolved_in_order_into_one_list() -> None:
    target = targets.channel_target("127.0.0.1:7001, localhost:7002,127.0.0.1:7001")
    assert target == "ipv4:127.0.0.1:7001,127.0.0.1:7002"


@pytest.mark.parametrize("addresses", ["", " , ", "nohost", ":50051", "a:0", "a:70000", "a:x,b:1"])
def test_a_malformed_list_is_refused_with_one_clear_error(addresses: str) -> None:
    with pytest.raises(InvalidArgumentError):
        targets.channel_target(addresses)


def test_a_name_that_does_not_resolve_is_unavailable() -> None:
    with pytest.raises(UnavailableError, match="cannot resolve"):
        targets.channel_target("127.0.0.1:1,no-such-host.invalid:2")


def test_only_calls_safe_to_repeat_are_retried() -> None:
    config = json.loads(targets.SERVICE_CONFIG)
    retried = {
        (name["service"], name["method"])
        for method in config["methodConfig"]
        for name in method["name"]
    }
    assert ("taskyard.v1.WorkRequestService", "Submit") in retried
    assert ("taskyard.v1.WorkRequestService", "Abort") not in retried
    assert ("taskyard.v1.ArtifactService", "UploadFile") not in retried
    assert all(m["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
               for m in config["methodConfig"])  # fmt: skip
