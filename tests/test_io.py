import pytest

from cifarlab.io import atomic_open, write_json


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
