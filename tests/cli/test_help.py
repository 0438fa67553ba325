"""`pic help TOPIC` (`man pic` is groff's pic(1)) and click's shell completion, as the README documents them."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

from pic_cli.help_commands import TOPICS
from pic_cli.main import cli


def test_help_topics() -> None:
    runner = CliRunner()
    for topic in ("ratios", "sidecars", "config", "exit-codes", "completion"):
        r = runner.invoke(cli, ["help", topic])
        assert r.exit_code == 0 and r.output.strip() == TOPICS[topic].strip()
    r = runner.invoke(cli, ["help"])
    assert r.exit_code == 0 and "batch" in r.output and "pic help completion" in r.output
    assert runner.invoke(cli, ["help", "nope"]).exit_code == 2


def test_bash_completion_script_is_what_the_readme_says() -> None:
    env = {**os.environ, "_PIC_COMPLETE": "bash_source"}
    code = "from pic_cli.main import cli; cli(prog_name='pic')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "_pic_completion" in out.stdout
