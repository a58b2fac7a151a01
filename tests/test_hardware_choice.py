"""`model: auto` trains the network that fits the hardware, by one fixed rule (never by timing),
says so when training starts, and records it; the run tells its cost early and `bench --estimate`
tells it before the run."""
from __future__ import annotations

import json
import shlex

import pytest
import torch
import yaml

from cifarlab import bench
from cifarlab.conf import compose, params_text
from cifarlab.config import ParamsError, parse_params
from cifarlab.feed import device as device_module
from cifarlab.feed.device import make_scaler
from cifarlab.models import build_model
from cifarlab.train import clock as clock_module
from cifarlab.train.clock import RunClock
from cifarlab.train.loop import scaled, train_epoch
from cifarlab.train.run import for_this_machine
from cifarlab.training_step import training_step
from conftest import default_params, default_params_dict, make_arrays, write_image_tree

CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend this CPU has native bf16 (True) or lacks it (False)."""
    def pretend(has: bool) -> None:
        monkeypatch.setattr(device_module, "native_bf16", lambda device: has)
    return pretend


def test_without_native_bf16_auto_trains_the_smaller_network_for_its_own_epochs(native_bf16):
    native_bf16(False)
    params = default_params()
    chosen, line = for_this_machine(params, CPU)
    assert params.model == "auto" and chosen.model == "airbench93"
    assert chosen.train.epochs == params.fp32_cpu.epochs == 9 and params.train.epochs == 10
    assert chosen.train.low_res.epochs == params.fp32_cpu.low_res_epochs == 4 and params.train.low_res.epochs == 0
    assert line == ("model auto: airbench93 for 9 epochs (the first 4 at 24 px), the choice for a CPU that trains in "
                    "fp32 (no native bf16); name a model to choose yourself (-S model=airbench94)")


def test_with_native_bf16_auto_trains_airbench94_for_train_epochs(native_bf16):
    native_bf16(True)
    chosen, line = for_this_machine(default_params(), CPU)
    assert chosen.model == "airbench94" and chosen.train.epochs == 10
    assert "airbench94 for 10 epochs, the choice for cpu with native bf16" in line and "-S model=airbench93" in line


def test_fp32_asked_for_on_bf16_hardware_trains_what_fp32_hardware_trains(native_bf16):
    native_bf16(True)
    chosen, _ = for_this_machine(default_params(**{"train.precision": "fp32"}), CPU)
    assert chosen.model == "airbench93"


@pytest.mark.parametrize("has_bf16", [False, True])
def test_a_named_model_is_trained_as_named(native_bf16, has_bf16):
    native_bf16(has_bf16)
    params = parse_params(compose(["model=airbench94"]))
    assert for_this_machine(params, CPU) == (params, None)


def test_the_quick_recipe_runs_its_five_epochs_on_either_choice():
    params = parse_params(compose(["recipe=quick"]))
    assert [params.for_hardware(fp32).train.epochs for fp32 in (False, True)] == [5, 5]


def test_naming_airbench93_trains_it_for_fp32_cpu_epochs_on_any_hardware():
    params = parse_params(compose(["model=airbench93", "fp32_cpu.epochs=6"]))
    assert params.model == "airbench93" and params.train.epochs == 6


def test_the_run_shows_one_bar_over_every_epoch_and_its_expected_time_after_a_few_steps(monkeypatch, capsys):
    ticks = iter(range(0, 1000, 2))  # every step takes 2 s
    monkeypatch.setattr(clock_module.time, "perf_counter", lambda: float(next(ticks)))
    clock = RunClock(epochs=3, steps_per_epoch=5, show=True)
    clock.start_epoch(1)
    for _ in range(clock_module.UNTIMED_STEPS + clock_module.TIMED_STEPS - 1):
        clock.step_done()
    assert clock.estimate is None and "expected training time" not in capsys.readouterr().out
    clock.step_done()
    assert clock.bar.total == 15 and clock.estimate == 2.0 * 15
    printed = capsys.readouterr().out
    assert "expected training time: about 30 s for 15 steps (measured here over steps 2-4 of this epoch); 22 s left" \
        in printed
    clock.close()


def test_the_estimate_prices_low_res_epochs_by_their_pixels_and_is_revised_at_full_size(monkeypatch, capsys):
    step_seconds = iter([1.0] * 10 + [4.0] * 10)  # the low-res epoch's steps take 1 s, the full-size ones 4 s
    now = [0.0]

    def perf_counter() -> float:
        return now[0]
    monkeypatch.setattr(clock_module.time, "perf_counter", perf_counter)
    clock = RunClock(epochs=2, steps_per_epoch=10, show=True, epoch_cost=lambda epoch: 0.25 if epoch == 1 else 1.0)
    for epoch in (1, 2):
        clock.start_epoch(epoch)
        for _ in range(10):
            now[0] += next(step_seconds)
            clock.step_done()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("expected training time: about 50 s for 20 steps")  # 10 x 1 s + 10 x 4 s
    assert printed[1].startswith("revised training time: about 50 s")
    assert clock.estimate == pytest.approx(50.0)
    clock.close()


def test_a_resumed_run_bar_starts_at_the_epochs_already_done():
    clock = RunClock(epochs=4, steps_per_epoch=10, done_epochs=3, show=False)
    assert (clock.bar.n, clock.bar.total) == (30, 40)
    clock.close()


def test_bench_estimate_prices_both_choices_of_auto_and_marks_the_one_trained_here(tmp_path, capsys):
    settings = default_params_dict(**{"train.batch_size": 64, "train.micro_batch": 32, "data.subset.train": 640,
                                      "data.subset.test": 100, "gradcam.faithfulness.images": 4})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(settings))
    bench.main(["--estimate", "--params", str(params)])
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| airbench")]
    assert len(rows) == 2 and rows[0].startswith("| airbench94 ") and rows[1].startswith("| airbench93 "), printed
    chosen, _ = for_this_machine(parse_params(settings), CPU)
    marked = [row for row in rows if "what `dvc repro` trains here" in row]
    assert len(marked) == 1 and marked[0].startswith(f"| {chosen.model} "), printed
    assert all(row.rstrip(" |").endswith(("yes", "no")) for row in rows)


@pytest.mark.slow
def test_dvc_repro_trains_what_auto_chooses_here_and_the_docs_commands_name_a_model(tmp_path):
    """docs/recipes.md's commands, verbatim, on a tiny tree: `dvc repro` with `model: auto` trains and
    records this machine's choice (the line it printed, in training.json and the report); each
    named model trains as named."""
    from test_pipeline import dvc, make_project, readme_commands, sh
    commands = readme_commands("dvc exp run", section="The default: `model: auto`")
    assert commands == ["dvc exp run -S model=airbench94", "dvc exp run -S model=airbench93"]
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree), model="auto", fp32_cpu__epochs=1, train__batch_size=4)
    log = dvc("repro", cwd=project)
    chosen, line = for_this_machine(parse_params(yaml.safe_load((project / "params.yaml").read_text())), CPU)
    facts = json.loads((project / "models" / "training.json").read_text())
    assert line in log and facts["model"] == chosen.model and facts["model_chosen_by"] == line
    assert facts["estimated_train_seconds"] > 0
    assert json.loads((project / "metrics" / "train.json").read_text())["network"] == chosen.model
    assert f"{chosen.model} ({line})" in (project / "reports" / "report.md").read_text()
    for command in commands:
        sh(*shlex.split(command), cwd=project)
        facts = json.loads((project / "models" / "training.json").read_text())
        assert facts["model"] == command.rsplit("=", 1)[1] and facts["model_chosen_by"] == "named in params.yaml"


def test_low_res_epochs_train_on_smaller_images_and_the_rest_at_full_size():
    """train.low_res: the first epochs' batches reach the network scaled down (antialiased, in the
    layout training uses), the later ones as they are."""
    params = parse_params(compose(["model=airbench93", "train.precision=fp32", "train.batch_size=8",
                                   "train.micro_batch=0"]))
    assert params.train.low_res.epochs == params.fp32_cpu.low_res_epochs == 4
    step = training_step(params, CPU)
    seen = []
    step.model.register_forward_pre_hook(lambda module, inputs: seen.append(tuple(inputs[0].shape[-2:])))
    batches = step.batches(1)
    step.run(batches)
    train_epoch(step.model, batches, step.optimizer, step.schedule, make_scaler(CPU), CPU, 1, size=24)
    assert seen == [(32, 32), (24, 24)]
    images = torch.rand(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    small = scaled(images, 24)
    assert small.shape == (2, 3, 24, 24) and small.is_contiguous(memory_format=torch.channels_last)
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(scaled(flat, 24), torch.full((1, 3, 24, 24), 0.3))  # a flat image stays flat
    model = build_model("airbench94", 10).eval()
    assert model(torch.rand(2, 3, 24, 24)).shape == (2, 10)  # global pooling: any size


@pytest.mark.parametrize("changes, message", [
    (["model=s9net", "train.low_res.epochs=2"], "train.low_res trains at another image size, which s9net does not"),
    (["train.low_res.epochs=2", "train.low_res.size=32"], "train.low_res.size = 32 must be below data.image_size"),
])
def test_low_res_is_refused_where_it_cannot_work(changes, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(compose(changes))


@pytest.mark.slow
def test_the_estimate_command_of_the_speed_docs_runs_verbatim_on_the_default_params(tmp_path):
    """docs/speed.md's command, as written, in a folder holding the project's default params.yaml:
    both of auto's choices priced, with a whole `dvc repro` each."""
    from test_pipeline import readme_commands, sh
    (command,) = readme_commands("python -m cifarlab.bench --estimate")
    (tmp_path / "params.yaml").write_text(params_text())
    printed = sh(*shlex.split(command), cwd=tmp_path)
    rows = [line for line in printed.splitlines() if line.startswith("| airbench")]
    assert len(rows) == 2 and sum("what `dvc repro` trains here" in row for row in rows) == 1, printed
