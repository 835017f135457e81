"""Bearer tokens: fresh ones can always be passed on a command line."""

from __future__ import annotations

from taskyard.cli.app import build_parser
from taskyard.rpc.credentials import TOKEN_PREFIX, new_token


def test_a_new_token_never_reads_as_an_option() -> None:
    tokens = {new_token() for _ in range(1000)}  # ~16 plain random ones start "-"
    assert len(tokens) == 1000
    assert not [token for token in tokens if token.startswith("-")]
    for token in list(tokens)[:100]:
        args = build_parser().parse_args(["submit", "noop", "--token", token])
        assert args.token == token


def test_a_new_token_holds_256_random_bits() -> None:
    secret = new_token().removeprefix(TOKEN_PREFIX)
    assert len(secret) == 43  # 32 bytes, URL-safe base64 without padding
