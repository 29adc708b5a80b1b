"""Configuration loading and untrusted-input decoding."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.config import ConfigError, load_config, state_dir
from delegation_machine.engine.protocol import (
    DelegationRequest,
    Mutation,
    ProtocolError,
    decode_json,
)
from delegation_machine.engine.secrets import redact, scrubbed_environment


def test_editor_settings_override_the_config_file(tmp_path: Path) -> None:
    state_dir(tmp_path)
    (tmp_path / ".delegation" / "config.toml").write_text("agents = 3\ncheck_level = 'full'\n")
    config = load_config(tmp_path, {"agents": 5})
    assert (config.agents, config.check_level) == (5, "full")
    assert config.worker_count() == 5


def test_camel_case_settings_are_accepted(tmp_path: Path) -> None:
    assert load_config(tmp_path, {"maxFileBytes": 10}).max_file_bytes == 10


def test_invalid_setting_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="agents"):
        load_config(tmp_path, {"agents": "many"})
    with pytest.raises(ConfigError, match="bogus"):
        load_config(tmp_path, {"bogus": 1})


def test_state_dir_is_git_ignored(tmp_path: Path) -> None:
    folder = state_dir(tmp_path)
    assert (folder / ".gitignore").read_text() == "*\n"


def test_decoding_untrusted_json_names_the_json_path() -> None:
    with pytest.raises(ProtocolError) as error:
        decode_json(
            b'{"task_id": "t", "agent_id": "a", "path": "x.py", "base_version": 1,'
            b' "edits": [{"start": 0, "end": "x", "new_text": ""}]}',
            Mutation,
        )
    assert error.value.path == "$.edits[0].end"
    with pytest.raises(ProtocolError, match="malformed JSON"):
        decode_json(b"{not json", DelegationRequest)


def test_redact_and_scrubbed_environment() -> None:
    env = {"ANTHROPIC_API_KEY": "ant-secret-value-123", "PATH": "/bin", "GH_TOKEN": "ghp_abcdefgh"}
    secrets = ["ant-secret-value-123", "ghp_abcdefgh"]
    assert redact({"a": ["x ant-secret-value-123 y"]}, secrets) == {"a": ["x [redacted] y"]}
    assert scrubbed_environment(env) == {"PATH": "/bin"}


async def test_changed_editor_settings_apply_to_a_running_swarm(tmp_path: Path) -> None:
    from delegation_machine.engine.swarm import Swarm

    (tmp_path / "a.py").write_text("x = 1\n")
    swarm = Swarm(tmp_path, watch=False)
    await swarm.start()
    try:
        swarm.update_settings({"checkDebounceMs": 25, "checkLevel": "full"})
        assert (swarm.config.check_debounce_ms, swarm.config.check_level) == (25, "full")
        with pytest.raises(ConfigError, match="check_level"):
            swarm.update_settings({"checkLevel": "paranoid"})
    finally:
        await swarm.stop()
