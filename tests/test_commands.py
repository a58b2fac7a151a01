"""One command, `cifarlab VERB`: on the environment's PATH, every verb listed in its help, each
verb's help what docs/commands.md shows, the older `python -m cifarlab.VERB` still working, and a
mistake in a verb's own arguments one error line with exit status 2, never a traceback."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cifarlab.commands import VERBS
from conftest import ROOT, copy_project

BIN = Path(sys.executable).parent
ENV = dict(os.environ, COLUMNS="100", PATH=str(BIN) + os.pathsep + os.environ["PATH"])


def cifarlab(*args: str, cwd: Path = ROOT, env: dict = ENV) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "cifarlab"), *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_the_setup_puts_cifarlab_on_the_environments_path_and_its_help_lists_every_verb():
    assert shutil.which("cifarlab", path=str(BIN)) == str(BIN / "cifarlab")
    shown = cifarlab("--help")
    assert shown.returncode == 0
    listed = re.findall(r"^  (\w+)  ", shown.stdout, flags=re.M)
    assert listed == list(VERBS)
    assert cifarlab().returncode == 2 and "usage: cifarlab VERB" in cifarlab().stdout  # no verb: nothing ran


def test_the_docs_show_what_cifarlab_and_each_verbs_help_print():
    """docs/commands.md's bash lines, run verbatim, print the text block that follows each."""
    text = (ROOT / "docs" / "commands.md").read_text()
    shown = re.findall(r"```bash\n(.+?)\n```\n\n```text\n(.*?)\n```", text, flags=re.S)
    assert [command for command, _ in shown] == ["cifarlab --help", *(f"cifarlab {verb} --help" for verb in VERBS)]
    for command, printed in shown:
        done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, env=ENV)
        assert done.returncode == 0 and done.stdout.rstrip("\n") == printed, command


@pytest.mark.parametrize("verb", ["score", "conf"])
def test_the_older_python_m_form_runs_the_same_verb(verb):
    old = subprocess.run([sys.executable, "-m", f"cifarlab.{verb}", "--help"], capture_output=True, text=True, env=ENV)
    assert old.returncode == 0 and old.stdout == cifarlab(verb, "--help").stdout


def _broken_conf(project: Path) -> None:
    (project / "conf" / "config.yaml").write_text((project / "conf" / "config.yaml").read_text() + "train: [\n")


def _params(text: str):
    def write(project: Path) -> None:
        (project / "params.yaml").write_text(text)
    return write


def _no_params(project: Path) -> None:
    (project / "params.yaml").unlink()


def _dvc_without_git(project: Path) -> None:
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=project, check=True)


def _binary(project: Path) -> None:
    (project / "shown.json").write_bytes(b"\x00\x01\xff")


@pytest.mark.parametrize("args, setup, said", [
    (["conf", "model=nosuch"], None, "conf: In 'config': Could not find 'model/nosuch' Available options"),
    (["conf", "trian.epochs=3"], None, "conf: no key 'trian.epochs' in conf/; did you mean 'train.epochs'?"),
    (["conf"], _broken_conf, "conf: while parsing a flow node"),
    (["bench", "--estimate"], _params("model: [\n"), "params.yaml: not valid YAML"),
    (["bench", "--estimate"], _params("model: tiny\n"), "params.yaml: missing key"),
    (["bench", "--estimate"], _no_params, "params.yaml: not found"),
    (["requeue"], _dvc_without_git, "not in a git repository"),
    (["seeds", "missing.json"], None, "missing.json: No such file or directory"),
    (["seeds", "conf"], None, "conf: Is a directory"),
    (["seeds", "shown.json"], _binary, "shown.json: not text"),
    (["sede"], None, "cifarlab has no verb 'sede'; did you mean `cifarlab seeds`?"),
], ids=["unknown model", "misspelt key", "broken conf", "params not YAML", "params mistyped", "no params",
        "no git", "missing file", "a folder", "a binary file", "unknown verb"])
def test_a_mistake_in_a_verbs_own_arguments_is_one_error_line_and_exit_status_2(tmp_path, args, setup, said):
    project = copy_project(tmp_path / "project")
    if setup:
        setup(project)
    done = cifarlab(*args, cwd=project)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert said in done.stderr, done.stderr


def test_seeds_without_dvc_on_the_path_says_how_to_get_it(tmp_path):
    env = dict(ENV, PATH="/usr/bin:/bin")
    done = subprocess.run([sys.executable, "-m", "cifarlab.seeds"], cwd=tmp_path, capture_output=True, text=True,
                          env=env)
    assert done.returncode == 2 and done.stderr.startswith("error: dvc is not on the PATH"), done.stderr
