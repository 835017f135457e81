"""The `wordcount` task: count the words of each input file.

Its inputs are artifacts named in the task data (`"inputs": [{"artifact":
ID}]`); the worker puts their files in `inputs/` before the task runs. It
counts each file's words with `wc` (a program: it runs in the task's
sandbox), writes `counts.json` and uploads it as a `wordcount` artifact.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from taskyard.tasks import Task


class WordCount(Task):
    """Count the words of each input file; upload the counts as a `wordcount` artifact."""

    TASK_VERSION = 1
    TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "min_words": {
                "type": "integer",
                "minimum": 0,
                "default": 0,
                "description": "fail if a file has fewer words than this",
            },
        },
        "additionalProperties": False,
    }

    def _execute(self) -> bool:
        assert self.data is not None
        files = sorted(p.name for p in self.inputs_dir.iterdir() if p.is_file())
        if not files:
            self.report("no-inputs", "give it at least one input artifact")
            return False
        ran = self.run_program(
            ["sh", "-c", 'for f in "$@"; do wc -w < "inputs/$f"; done > counts.txt', "sh", *files]
        )
        if ran.exit_code != 0:
            self.report("wc-failed", f"wc exited with {ran.exit_code}")
            return False
        words = [int(n) for n in (self.work_dir / "counts.txt").read_text().split()]
        counts = dict(zip(files, words, strict=True))
        result = self.work_dir / "counts.json"
        result.write_text(json.dumps(counts, sort_keys=True) + "\n")
        artifact = self.upload_artifact("wordcount", {"counts.json": result}, {"files": len(files)})
        self.logger.info("counts uploaded as artifact %s", artifact)
        self.report(total=sum(words))
        short = [name for name, n in counts.items() if n < self.data.get("min_words", 0)]
        if short:
            self.report(
                "too-short", f"fewer than {self.data['min_words']} words: {', '.join(short)}"
            )
        return not short
