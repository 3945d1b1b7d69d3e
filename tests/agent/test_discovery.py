"""Agent packages in a directory: each agent.toml rule, and what is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshwright.agent.discovery import discover_agents
from meshwright.agent.v1 import manager_pb2 as M


def _package(root: Path, name: str, manifest: str) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "agent.toml").write_text(manifest)
    return root / name


def test_module_command_and_a2a_packages(tmp_path: Path) -> None:
    mod = _package(
        tmp_path,
        "b-echo",
        'name = "echo"\nmodule = "echo:agent"\nreplicas = 3\nrestart = "always"\n'
        'args = ["--log-level", "DEBUG"]\n[env]\nKEY = "v"\n',
    )
    cmd = _package(tmp_path, "a-tool", 'command = ["./run.sh", "--fast"]\nrestart = "never"\n')
    _package(tmp_path, "c-remote", 'a2a_card_url = "http://h:1/.well-known/agent-card.json"\n')
    found = discover_agents(tmp_path)
    assert [n for n, _ in found] == ["a-tool", "echo", "c-remote"]  # by directory name
    tool, echo, remote = (s for _, s in found)
    assert echo.module == "echo:agent" and echo.app_dir == str(mod.resolve())
    assert echo.replicas == 3 and echo.restart_policy == M.RESTART_POLICY_ALWAYS
    assert list(echo.args) == ["--log-level", "DEBUG"] and dict(echo.env) == {"KEY": "v"}
    assert list(tool.command.argv) == ["./run.sh", "--fast"] and tool.app_dir == str(cmd.resolve())
    assert tool.restart_policy == M.RESTART_POLICY_NEVER and tool.replicas == 1
    assert remote.WhichOneof("target") == "a2a_card_url" and not remote.app_dir
    assert remote.restart_policy == M.RESTART_POLICY_ON_FAILURE


def test_skipped_directories_and_files(tmp_path: Path) -> None:
    for skipped in ("_template", ".hidden", "__pycache__", "test", "tests"):
        _package(tmp_path, skipped, 'module = "x:y"\n')
    (tmp_path / "no-manifest").mkdir()
    (tmp_path / "agent.toml").write_text('module = "top:level"\n')  # a file, not a package
    _package(tmp_path, "real", 'module = "x:y"\n')
    assert [n for n, _ in discover_agents(tmp_path)] == ["real"]


@pytest.mark.parametrize(
    ("manifest", "words"),
    [
        ('module = "x:y"\ncommand = ["a"]\n', "exactly one of"),
        ("replicas = 1\n", "exactly one of"),
        ('module = "x:y"\nsurprise = 1\n', "unknown keys surprise"),
        ('module = "x:y"\nreplicas = "2"\n', "replicas must be a int"),
        ('module = "x:y"\nreplicas = true\n', "replicas must be a int"),
        ('module = "x:y"\nrestart = "sometimes"\n', "restart must be one of"),
        ('module = "x:y"\nargs = [1]\n', "args must be strings"),
        ('module = "x:y"\n[env]\nA = 1\n', "env values must be strings"),
        ('command = ["a", 2]\n', "command must be a list of strings"),
        ('command = "a b"\n', "command must be a list"),
        ('module = "x:y"\nname = 5\n', "name must be a str"),
        ("module = \n", "Invalid value"),
    ],
)
def test_malformed_manifests_name_the_file(tmp_path: Path, manifest: str, words: str) -> None:
    path = _package(tmp_path, "pkg", manifest) / "agent.toml"
    with pytest.raises(ValueError) as err:
        discover_agents(tmp_path)
    assert str(path) in str(err.value) and words in str(err.value)


def test_two_packages_of_one_name_and_a_missing_directory(tmp_path: Path) -> None:
    _package(tmp_path, "a", 'name = "same"\nmodule = "x:y"\n')
    _package(tmp_path, "b", 'name = "same"\nmodule = "x:y"\n')
    with pytest.raises(ValueError, match="name 'same' is taken"):
        discover_agents(tmp_path)
    with pytest.raises(ValueError, match="is not a directory"):
        discover_agents(tmp_path / "nowhere")
