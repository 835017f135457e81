"""The Task library shared by the scheduler and the worker.

`Task` is the base class of every task; defining a concrete subclass registers
it. Importing this package registers the built-in tasks.
"""

from taskyard.tasks.base import DEBUG_LOGS_CATEGORY, Task
from taskyard.tasks.command import Command
from taskyard.tasks.errors import TaskConfigError, TaskDefinitionError, UnknownTaskError
from taskyard.tasks.noop import Noop
from taskyard.tasks.server_access import ServerAccess

__all__ = [
    "DEBUG_LOGS_CATEGORY",
    "Command",
    "Noop",
    "ServerAccess",
    "Task",
    "TaskConfigError",
    "TaskDefinitionError",
    "UnknownTaskError",
]
