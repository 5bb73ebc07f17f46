"""The README's examples are real: the config file loads, the commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from app.cli import build_parser
from app.settings import load_settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make run", "make test"]


def test_the_config_file_example_loads(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    (tmp_path / "rules.toml").write_text(
        'default_reply = "?\\n"\n[[rules]]\nmatch = "prefix"\npattern = "GET"\nreply = "OK\\n"\n'
    )
    config = tmp_path / "socketlab.toml"
    config.write_text(block.group(1))
    settings = load_settings(config=str(config), environ={})
    assert [spec.mode for spec in settings.listeners] == ["echo", "echo", "respond", "statsd"]
    assert settings.allow_targets == ("10.20.0.0/16", "edge-a")
    assert settings.max_concurrent_runs == 16


def test_every_cli_example_parses() -> None:
    text = README.read_text()
    parser = build_parser()
    examples = [
        line
        for line in re.findall(r"^(socketlab (?:fire|send) .+?)(?:\s{2,}#.*)?$", text, re.M)
        if "[" not in line  # the synopsis lines, not examples
    ]
    assert len(examples) >= 5
    for line in examples:
        import shlex

        args = parser.parse_args(shlex.split(line)[1:])
        assert args.command in ("fire", "send")


def test_the_readme_says_how_to_pass_options_to_make_run_and_get_socketlab_on_the_path() -> None:
    text = README.read_text()
    assert 'make run ARGS="' in text
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in text
    # What the README promises is what the Makefile does.
    makefile = (README.parent / "Makefile").read_text()
    assert "$(BIN)/socketlab serve $(ARGS)" in makefile
    assert "BIN    := $(VENV)/bin" in makefile and "VENV   := .venv" in makefile
    example = re.search(r'^make run ARGS="([^"]+)"$', text, re.M)
    assert example is not None
    args = build_parser().parse_args(["serve", *example.group(1).split()])
    assert args.web == "127.0.0.1:8001"
