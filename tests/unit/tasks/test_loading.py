"""Tasks from installed packages: every one loads, or is said in one line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.tasks import Task
from taskyard.tasks.loading import load_tasks, origin_of

PLUGIN = '''
from taskyard.tasks import Task


class Hello(Task):
    """Say hello."""

    TASK_VERSION = 3

    def _execute(self) -> bool:
        return True
'''
CLASH = """
from taskyard.tasks import Task


class Command(Task):
    TASK_VERSION = 1

    def _execute(self) -> bool:
        return True
"""


def distribution(site: Path, name: str, entries: dict[str, str], modules: dict[str, str]) -> None:
    """An installed distribution, as pip would leave it: its modules and its
    dist-info with `taskyard.tasks` entry points."""
    info = site / f"{name}-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entries.items())
    (info / "entry_points.txt").write_text(f"[taskyard.tasks]\n{lines}")
    for module, text in modules.items():
        (site / f"{module}.py").write_text(text)


@pytest.fixture
def site(tmp_path: Path, isolated_registry: dict[str, type[Task]]) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m.startswith("plugin_")]:
            del sys.modules[module]


def test_installed_tasks_load_and_say_where_they_came_from(site: Path) -> None:
    distribution(site, "hello-tasks", {"hello": "plugin_hello:Hello"}, {"plugin_hello": PLUGIN})
    assert load_tasks("") == []
    assert Task.class_from_name("hello").TASK_VERSION == 3
    assert origin_of("hello") == "hello-tasks 1.2"
    assert origin_of("noop") == "taskyard (built in)"


def test_what_does_not_load_is_said_in_one_line_and_the_rest_loads(site: Path) -> None:
    distribution(site, "hello-tasks", {"hello": "plugin_hello:Hello"}, {"plugin_hello": PLUGIN})
    distribution(site, "broken-tasks", {"gone": "plugin_gone:Gone", "again": "plugin_clash:Command",
                                        "hi": "plugin_hello:Hello"},
                 {"plugin_clash": CLASH})  # fmt: skip
    problems = sorted(str(p) for p in load_tasks("no_such_module"))
    assert problems == [
        "tasks of TASKYARD_TASK_MODULES: cannot import no_such_module: "
        "ModuleNotFoundError: No module named 'no_such_module'",
        "tasks of broken-tasks 1.2: cannot load again = plugin_clash:Command: "
        "TaskDefinitionError: task name 'command' of plugin_clash.Command is already "
        "registered by taskyard.tasks.command.Command; rename one of them",
        "tasks of broken-tasks 1.2: cannot load gone = plugin_gone:Gone: "
        "ModuleNotFoundError: No module named 'plugin_gone'",
        "tasks of broken-tasks 1.2: hi = plugin_hello:Hello is the task 'hello': "
        "name the entry as its task",
    ]
    assert all("\n" not in problem for problem in problems)
    assert Task.is_valid_task_name("hello")
    assert Task.class_from_name("command").__module__ == "taskyard.tasks.command"
