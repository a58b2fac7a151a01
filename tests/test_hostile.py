"""Hostile or broken files are refused without running their code or leaving partial output."""
from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
import torch

from cifarlab.core.errors import UserError
from cifarlab.download import cifar
from cifarlab.models.checkpoint import load_checkpoint, save_checkpoint
from cifarlab.models.registry import build_model
from cifarlab.stats import Stats

MARKER = "cifarlab-test-code-ran"


class _RunsCode:
    def __reduce__(self):
        return (print, (MARKER,))


def test_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save({"model": "tiny", "classes": ["a", "b"], "state_dict": {}, "payload": _RunsCode()}, path)
    with pytest.raises(UserError, match="refused: it holds Python objects besides tensors"):
        load_checkpoint(path)
    assert MARKER not in capsys.readouterr().out


def test_a_real_checkpoint_round_trips(tmp_path):
    model = build_model("tiny", 3)
    save_checkpoint(tmp_path / "model.pt", "tiny", model.state_dict(), ["a", "b", "c"], Stats([0.5] * 3, [0.2] * 3), 4,
                    {"split": "test", "accuracy": 71.5})
    loaded, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["epoch"] == 4 and meta["classes"] == ["a", "b", "c"] and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, "tiny", build_model("tiny", 3).state_dict(), ["a", "b", "c"], Stats([0.5] * 3, [0.2] * 3), 1,
                    {"split": "test", "accuracy": 1.0})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match="model.pt"):
        load_checkpoint(path)


class _CutOff(http.server.BaseHTTPRequestHandler):
    """Promises 100 kB and sends half, then hangs up: a download cut off mid-way (its md5 cannot match)."""

    def do_HEAD(self):  # the downloader asks first whether the URL redirects
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()

    def do_GET(self):
        self.do_HEAD()
        self.wfile.write(b"x" * 50000)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_download_cut_off_half_way_removes_the_partial_file(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _CutOff)
    thread = threading.Thread(target=lambda: [server.handle_request() for _ in range(2)], daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz"
    try:
        with pytest.raises(UserError, match="the file was removed") as err:  # caught by its checksum
            cifar.download(url, tmp_path / "raw" / "cifar-10-python.tar.gz", cifar.CIFAR10_MD5)
    finally:
        thread.join(timeout=10)
        server.server_close()
    assert url in str(err.value)
    assert list((tmp_path / "raw").iterdir()) == []


@pytest.mark.parametrize("name, content, says", [
    ("model.pt", b"", "an empty file (0 bytes), not a cifarlab checkpoint"),
    ("model.pt", b"PK\x05\x06" + b"\x00" * 18, "a zip archive without a PyTorch checkpoint in it"),
    ("model.onnx.json", b'{"input": {}}', "a JSON file (the ONNX model's card), not a cifarlab checkpoint"),
    ("model.onnx", b"\x08\x07\x12\x07pytorch", "an ONNX model (onnxruntime runs it"),
    ("notes.txt", b"my model", "not a PyTorch checkpoint (neither a zip archive nor a pickle)"),
])
def test_any_file_that_is_not_a_checkpoint_is_one_line_saying_what_it_is(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: {says}") and "\n" not in message
    assert "weights_only" not in message and "dvc repro train" not in message  # not the train stage's output


def test_advice_never_relays_torchs_unsafe_loading_and_names_the_stage_only_for_its_own_output(tmp_path,
                                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    torch.save({"payload": _RunsCode()}, tmp_path / "models" / "model.pt")
    with pytest.raises(UserError) as raised:
        load_checkpoint(Path("models/model.pt"))
    assert "weights_only" not in str(raised.value) and str(raised.value).endswith("rerun `dvc repro train`")
