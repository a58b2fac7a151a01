import errno
import json

import pytest

from cifarlab.core.errors import UserError, run_stage
from cifarlab.core.io import atomic_open, together, write_json


def test_failed_write_leaves_neither_file_nor_temp(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write('{"half": ')
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_file(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"epoch": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write("garbage")
            raise RuntimeError
    assert target.read_text().strip().startswith('{\n  "epoch": 1')
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.fixture(params=["by hand", "dvc repro"])
def how_run(request, monkeypatch):
    """A stage run by hand keeps its earlier outputs after a failure; under `dvc repro` (which sets
    DVC_STAGE) they were deleted before it ran, and the message must say which."""
    if request.param == "dvc repro":
        monkeypatch.setenv("DVC_STAGE", "evaluate")
    else:
        monkeypatch.delenv("DVC_STAGE", raising=False)
    return request.param


def test_a_failed_write_says_what_became_of_the_earlier_outputs(tmp_path, how_run):
    (tmp_path / "metrics").write_text("a file where the folder should be")
    with pytest.raises(UserError) as err:
        write_json(tmp_path / "metrics" / "evaluate.json", {"accuracy": 1})
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'metrics' / 'evaluate.json'}: could not write it")
    if how_run == "dvc repro":
        assert "dvc repro had removed this stage's earlier outputs" in message and "is kept" not in message
    else:
        assert message.endswith("its previous version, if any, is kept")


def test_outputs_that_cannot_be_put_in_place_are_named_and_the_rest_said(tmp_path, how_run):
    first, blocked, last = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    (blocked / "inside").mkdir(parents=True)  # a non-empty folder where the file goes: rename refuses
    last.write_text("old")
    with pytest.raises(UserError) as err:
        with together():
            for path in (first, blocked, last):
                write_json(path, {"new": True})
    message = str(err.value)
    assert message.startswith(f"{blocked}: could not put it in place")
    if how_run == "by hand":
        assert message.endswith("the outputs before it in this run are new, the rest as before")
        assert json.loads(first.read_text()) == {"new": True} and last.read_text() == "old"
    else:
        assert "dvc repro had removed" in message
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_stage_s_own_file_error_is_reported_as_itself_not_as_placing_outputs(tmp_path, how_run, capsys):
    """dvclive failing to write its log is that file's error, and the outputs written so far in the
    stage are not put in place."""
    output = tmp_path / "metrics.json"

    def main():
        write_json(output, {"new": True})
        raise PermissionError(errno.EACCES, "Permission denied", "dvclive/metrics.json")

    with pytest.raises(SystemExit) as exit_status:
        run_stage(main)
    assert exit_status.value.code == 1 and not output.exists()
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: dvclive/metrics.json: Permission denied; ") and "\n" not in line
    assert "could not put" not in line
    if how_run == "by hand":
        assert line.endswith("the outputs it writes at the end were not replaced")
    else:
        assert line.endswith("rerun it once this is fixed")
