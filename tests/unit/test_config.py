"""Configuration precedence: flag > TASKYARD_* > TOML > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskyard.config import load_toml, resolve
from taskyard.errors import InvalidArgumentError
from taskyard.scheduler.config import SchedulerConfig


def test_each_source_overrides_the_ones_below(tmp_path: Path) -> None:
    config_file = tmp_path / "taskyard.toml"
    config_file.write_text(
        '[scheduler]\nlisten = "127.0.0.1:1"\nlease-grace = 5.0\nmax_attempts = 7\n'
        'data_dir = "/from/toml"\n'
    )
    toml = load_toml(config_file, "scheduler")
    environ = {"TASKYARD_LEASE_GRACE": "9.5", "TASKYARD_AUTO_ENABLE_WORKERS": "yes"}
    flags = {"listen": "127.0.0.1:2", "max_attempts": None}
    config = resolve(SchedulerConfig, flags, toml, environ)
    assert config.listen == "127.0.0.1:2"  # flag
    assert config.lease_grace == 9.5  # environment
    assert config.auto_enable_workers is True  # environment
    assert config.max_attempts == 7  # TOML (the flag was not given)
    assert config.data_dir == Path("/from/toml")  # TOML, as a Path
    assert config.heartbeat_interval == 10.0  # default


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TASKYARD_MAX_ATTEMPTS": "many"}, "is not a int"),
        ({"TASKYARD_AUTO_ENABLE_WORKERS": "perhaps"}, "true or false"),
    ],
)
def test_bad_environment_values_are_clear_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        resolve(SchedulerConfig, {}, {}, environ)


def test_bad_config_files_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[scheduler\n")
    with pytest.raises(InvalidArgumentError, match="not valid TOML"):
        load_toml(broken, "scheduler")
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        load_toml(tmp_path / "missing.toml", "scheduler")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[scheduler]\nlisten_on = 1\n")
    with pytest.raises(InvalidArgumentError, match="unknown config keys: listen_on"):
        resolve(SchedulerConfig, {}, load_toml(unknown, "scheduler"), {})
