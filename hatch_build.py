"""Build hook: compiles the span encoder's C writer into the package.

`taskyard._span_wire` writes the common OTLP span shape in C (see
`shared/taskyard/otel_export.py`). It is built next to its source, so an
editable install imports it from there and a wheel carries it (as an artifact,
since version control ignores it). Without a C compiler the build fails: the
Python writer stays the fallback only where the module cannot be imported.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from setuptools import Distribution, Extension
from setuptools.command.build_ext import build_ext

SOURCE = Path("shared/taskyard/_span_wire.c")


class SpanWireHook(BuildHookInterface):
    """Compile `taskyard._span_wire` for a wheel or an editable install."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        with tempfile.TemporaryDirectory() as temporary:
            command = build_ext(
                Distribution(
                    {
                        "ext_modules": [Extension("_span_wire", [str(root / SOURCE)])],
                        "script_name": "hatch_build.py",
                    }
                )
            )
            command.build_temp = temporary
            command.build_lib = str(root / SOURCE.parent)
            command.ensure_finalized()
            command.run()
            built = Path(command.get_ext_fullpath("_span_wire"))
        build_data["artifacts"].append(str(built.relative_to(root)))
        build_data["pure_python"] = False  # a platform wheel: it holds compiled code
        build_data["infer_tag"] = True
