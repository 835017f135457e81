"""The example task's own tests: run as a worker would, without one."""

from __future__ import annotations

import json

from taskyard.testing.tasks import run_task


def test_it_counts_the_words_of_each_input() -> None:
    ran = run_task("wordcount", {}, inputs={"a.txt": b"one two three\n", "b.txt": b"four\n"})
    assert ran.succeeded
    [counts] = [upload for upload in ran.uploads if upload.category == "wordcount"]
    assert json.loads(counts.contents["counts.json"]) == {"a.txt": 3, "b.txt": 1}
    assert ran.details == {"total": 4}


def test_a_short_file_fails_and_says_which() -> None:
    ran = run_task("wordcount", {"min_words": 2}, inputs={"a.txt": b"one two", "b.txt": b"x"})
    assert not ran.succeeded
    assert ran.reason == "too-short"


def test_without_inputs_it_fails() -> None:
    ran = run_task("wordcount", {})
    assert (ran.succeeded, ran.reason) == (False, "no-inputs")
