"""The plan stage: `dvc repro` trains the most accurate plan.ladder entry that fits
plan.budget_minutes at this machine's measured speed, in the faster precision here; keeps what
params.yaml names; measures once per machine and recipe; and hands train a choice DVC hashes.
Measured speeds are faked through the plan's seam (the speed_of argument, or the cache file)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

import pytest
import torch
import yaml

from cifarlab.commands import seeds
from cifarlab.conf import compose, params_text
from cifarlab.config import Choice, ParamsError, load_choice, parse_params
from cifarlab.core.errors import UserError
from cifarlab.feed import device as device_module
from cifarlab.feed.device import make_scaler
from cifarlab.models.registry import build_model
from cifarlab.plan import choose as choose_module
from cifarlab.plan import speeds as speeds_module
from cifarlab.plan.choose import candidates, pick
from cifarlab.plan.cost import DataSizes
from cifarlab.plan.run import check_networks
from cifarlab.plan.speeds import Speed, speed
from cifarlab.train import clock as clock_module
from cifarlab.train.clock import RunClock
from cifarlab.train.loop import scaled, train_epoch
from cifarlab.training_step import training_step
from conftest import default_params, make_arrays, write_image_tree

CPU = torch.device("cpu")
CIFAR = DataSizes(train=50_000, val=0, test=10_000, classes=10)


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend this CPU has native bf16 (True) or lacks it (False)."""
    def pretend(has: bool) -> None:
        monkeypatch.setattr(device_module, "native_bf16", lambda device: has)
        monkeypatch.setattr(choose_module, "native_bf16", lambda device: has)
    return pretend


def machine(step_seconds: dict[tuple[str, str], float]):
    """A fake machine: seconds per 2,000-image step of (model, precision); low-res steps at
    (24/32)^2 of them, inference at 100 steps' worth of images per step second."""
    def speed_of(params, precision, device, low_res, num_classes):
        seconds = step_seconds[(params.model, precision)] * params.train.batch_size / 2000
        return Speed(seconds, seconds * 0.5625 if low_res else None, 2000 / seconds * 3, 1.0, 5.0), False
    return speed_of


# the kinds of 2-core CPU this project has met, as their measured speeds (docs/results.md)
AMX = machine({("airbench94", "bf16"): 1.9, ("airbench94", "fp32"): 5.0,
               ("airbench93", "bf16"): 0.9, ("airbench93", "fp32"): 2.4})
BF16_SLOWER = machine({("airbench94", "bf16"): 11.0, ("airbench94", "fp32"): 7.5,  # Intel with AVX512-BF16, no AMX
                       ("airbench93", "bf16"): 5.0, ("airbench93", "fp32"): 3.3})
AVX2 = machine({("airbench94", "fp32"): 11.5, ("airbench93", "fp32"): 5.0})
CRAWLING = machine({("airbench94", "fp32"): 200.0, ("airbench93", "fp32"): 100.0})


def chosen(params, speed_of, sizes=CIFAR):
    return pick(candidates(params, sizes, CPU, 5.0, speed_of), params)


@pytest.mark.parametrize("has_bf16, speed_of, model, epochs, precision", [
    (True, AMX, "airbench94", 10, "bf16"),
    (True, BF16_SLOWER, "airbench93", 9, "fp32"),  # bf16 is the slow path there: fp32 is chosen
    (False, AVX2, "airbench93", 9, "fp32"),
])
def test_the_most_accurate_entry_that_fits_is_chosen_in_the_faster_precision(native_bf16, has_bf16, speed_of,
                                                                             model, epochs, precision):
    native_bf16(has_bf16)
    choice, line = chosen(default_params(), speed_of)
    assert (choice.params.model, choice.params.train.epochs, choice.params.train.precision) == (model, epochs,
                                                                                                precision)
    assert choice.params.train.low_res.epochs == choice.rung.low_res_epochs
    assert f"plan: {model} for {epochs} epochs" in line and "the most accurate that fits" in line


@pytest.mark.parametrize("device, cuda_bf16, precision", [
    ("cuda", True, "bf16"),  # a GPU with bf16: nothing to measure
    ("cuda", False, "fp16"),  # an older GPU: fp16 with loss scaling
    ("mps", False, "fp32"),  # Apple's GPU: no bf16 autocast here, so fp32
])
def test_each_accelerator_trains_in_the_precision_it_runs(monkeypatch, device, cuda_bf16, precision):
    """The CPU branches are the parametrized test above; these are the GPU ones, through the same
    choice (what plan/choice.json gives the train stage)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda_bf16)
    gpu = machine({(model, p): 0.1 for model in ("airbench94", "airbench93") for p in ("bf16", "fp16", "fp32")})
    choice = pick(candidates(default_params(), CIFAR, torch.device(device), 5.0, gpu), default_params())[0].choice
    assert (choice.model, choice.precision) == ("airbench94", precision)


def test_on_a_machine_too_slow_for_every_entry_the_quickest_is_trained_and_said(native_bf16):
    native_bf16(False)
    choice, line = chosen(default_params(), CRAWLING)
    assert choice.rung == default_params().plan.ladder[-1] and "the quickest: none fits" in line


def test_the_budget_is_the_users_and_counts_the_plans_own_measuring(native_bf16):
    native_bf16(True)
    slow = machine({(model, precision): 100.0 for model in ("airbench94", "airbench93")
                    for precision in ("bf16", "fp32")})
    assert chosen(default_params(**{"plan.budget_minutes": 0}), slow)[0].params.model == "airbench94"  # no limit
    priced = candidates(default_params(), CIFAR, CPU, 5.0, AMX)
    assert priced.plan_seconds == 5.0 + 2 * 5.0  # start-up, then airbench94 measured in two precisions
    tight = (priced.plan_seconds + priced.candidates[0].cost.total) / 60
    assert chosen(default_params(**{"plan.budget_minutes": tight}), AMX)[0].params.model == "airbench94"
    assert chosen(default_params(**{"plan.budget_minutes": tight - 0.1}), AMX)[0].params.model == "airbench93"


def test_the_estimate_prices_the_data_that_will_run(native_bf16):
    native_bf16(False)
    params = default_params(**{"model": "airbench94", "train.epochs": 20})
    full = chosen(params, AVX2)[0].cost
    photos = chosen(params, AVX2, DataSizes(train=500, val=0, test=100, classes=3))[0].cost
    assert photos.train * 25 == pytest.approx(full.train)  # 1 step an epoch for 25: batches of 2,000
    assert photos.rest < full.rest / 2


def test_the_start_up_is_priced_as_everything_before_the_first_epoch(native_bf16):
    """The train stage's start-up (what train records as startup_seconds) is the process, the
    model's set-up and the LR range test; the epochs are priced apart."""
    native_bf16(False)
    fixed = default_params(**{"model": "airbench94", "train.epochs": 10})
    plain = chosen(fixed, AVX2)[0].cost
    assert plain.startup == 5.0 + 1.0  # the process, then the model's set-up the fake machine measured
    swept = default_params(**{"model": "airbench94", "train.epochs": 10, "train.scheduler.name": "onecycle",
                              "train.scheduler.onecycle.max_lr": "auto", "train.lr_finder.num_iter": 40})
    cost = chosen(swept, AVX2)[0].cost
    assert cost.startup == pytest.approx(plain.startup + 40 * 11.5) and cost.train == pytest.approx(plain.train)
    not_onecycle = default_params(**{"model": "airbench94", "train.epochs": 10,
                                     "train.scheduler.onecycle.max_lr": "auto"})
    assert chosen(not_onecycle, AVX2)[0].cost.startup == plain.startup  # no range test without OneCycle


def test_named_values_are_kept_and_over_budget_is_one_note(native_bf16):
    native_bf16(True)
    choice, line = chosen(parse_params(compose(["model=airbench94"])), BF16_SLOWER)
    assert (choice.params.model, choice.params.train.epochs, choice.params.train.precision) == ("airbench94", 10,
                                                                                                "fp32")
    assert "as params.yaml names it; over the budget (plan.budget_minutes = 20)" in line
    choice, _ = chosen(parse_params(compose(["train.epochs=6"])), AMX)  # the network still auto
    assert (choice.params.model, choice.params.train.epochs, choice.params.train.low_res.epochs) == ("airbench94",
                                                                                                     6, 0)
    choice, _ = chosen(parse_params(compose(["train.precision=fp32"])), AMX)
    assert choice.params.train.precision == "fp32"


def test_a_speed_is_measured_once_per_machine_and_recipe(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFARLAB_CACHE", str(tmp_path))
    measured = []
    monkeypatch.setattr(speeds_module, "measure", lambda params, precision, device, low_res, classes: measured.append(
        params.model) or Speed(1.0, 0.5 if low_res else None, 100.0, 1.0, 3.0))
    params = default_params(model="airbench93")
    assert speed(params, "fp32", CPU, False, 10) == (Speed(1.0, None, 100.0, 1.0, 3.0), True)
    assert speed(params, "fp32", CPU, False, 10)[1] is False  # the same machine and recipe: from the cache
    assert speed(params.model_copy(update={"model": "tiny"}), "fp32", CPU, False, 10)[1] is True  # another recipe
    assert speed(params, "fp32", CPU, True, 10)[1] is True  # a low-res step was not measured yet
    assert speed(params, "fp32", CPU, False, 3)[1] is True  # data of another number of classes
    longer = params.model_copy(update={"train": params.train.model_copy(update={"epochs": 12})})
    assert speed(longer, "fp32", CPU, False, 10)[1] is True  # its middle epoch's step is another one
    monkeypatch.setattr(torch, "get_num_threads", lambda: 99)  # another machine (or thread count)
    assert speed(params, "fp32", CPU, False, 10)[1] is True
    assert measured == ["airbench93", "tiny", "airbench93", "airbench93", "airbench93", "airbench93"]


SLOW_MEASURE = """
import sys, time
from pathlib import Path
from cifarlab.plan.speeds import remembered
done = Path(sys.argv[1])
def measure():
    done.joinpath("measured-" + sys.argv[2]).touch()
    time.sleep(float(sys.argv[3]))
    return {"seconds": 1.0}
print(remembered("one recipe", measure)[1])
"""


def test_two_plans_side_by_side_measure_a_recipe_once(tmp_path):
    """Queued experiments share the cache: a second plan waits for the first's measuring and reads
    it, instead of measuring on cores the first is using (and neither write can drop the other's)."""
    env = dict(os.environ, CIFARLAB_CACHE=str(tmp_path / "cache"))
    script = tmp_path / "plan.py"
    script.write_text(SLOW_MEASURE)
    first = subprocess.Popen([sys.executable, str(script), str(tmp_path), "first", "3"], env=env,
                             stdout=subprocess.PIPE, text=True)
    while not (tmp_path / "measured-first").exists():  # the first is measuring now
        time.sleep(0.05)
    second = subprocess.run([sys.executable, str(script), str(tmp_path), "second", "0"], env=env,
                            capture_output=True, text=True)
    assert first.communicate()[0].strip() == "True" and second.stdout.strip() == "False", second.stderr
    assert not (tmp_path / "measured-second").exists()


def test_a_step_is_priced_at_the_median_of_steps_timed_one_by_one_after_a_warm_up(monkeypatch):
    """One slow step among the timed ones (seen one step in ten on a 2-core Xeon) or the warm-up
    step does not move the price; the step timed is the run's middle epoch's (airbench's whitening
    bias has stopped training by then, and most of its epochs run so)."""
    pauses = iter([0.3, 0.02, 0.25, 0.03])  # the warm-up, then three timed steps, one of them slow

    class Step:
        def batches(self, steps, wrap):
            return wrap(list(range(steps)))

        def run(self, batches, size):
            for _batch in batches:
                time.sleep(next(pauses))
    epochs = []
    monkeypatch.setattr(speeds_module, "training_step",
                        lambda params, device, classes, epoch: epochs.append(epoch) or Step())
    monkeypatch.setattr(speeds_module, "built_model", lambda *args: None)
    monkeypatch.setattr(speeds_module, "_inference_rate", lambda step: 1.0)
    params = default_params(model="airbench94")
    measured = speeds_module.measure(params, "fp32", CPU, False, 10)
    assert 0.03 <= measured.step_seconds < 0.08
    assert params.train.epochs == 10 and epochs == [5]


def test_train_refuses_a_choice_made_for_other_params(tmp_path):
    path = tmp_path / "choice.json"
    path.write_text(json.dumps({"trained": Choice(model="airbench93", epochs=9, low_res_epochs=4,
                                                  precision="fp32").model_dump()}))
    params, rule = load_choice(default_params(), path)
    assert (params.model, params.train.epochs, params.train.low_res.epochs, params.train.precision) == (
        "airbench93", 9, 4, "fp32") and "plan.ladder" in rule
    with pytest.raises(ParamsError, match=r"says train.epochs = 9, params.yaml 6: .*rerun `dvc repro plan`"):
        load_choice(default_params(**{"train.epochs": 6}), path)
    path.write_text("{")
    with pytest.raises(ParamsError, match="damaged or incomplete; rerun `dvc repro plan`"):
        load_choice(default_params(), path)


def _shown(name: str, model: str, seed: int, accuracy: float) -> dict:
    """One experiment of `dvc exp show --json`, as DVC writes it."""
    return {"rev": name, "name": name, "data": {
        "params": {"params.yaml": {"data": {"model": "auto", "train": {"seed": seed}}}},
        "metrics": {"metrics/evaluate.json": {"data": {"accuracy": accuracy, "accuracy_without_tta": accuracy - 1}},
                    "plan/choice.json": {"data": {"trained": {"model": model, "epochs": 10, "precision": "bf16"}}}}}}


def test_seeds_never_pools_two_networks_that_auto_trained():
    shown = [_shown("a", "airbench94", 0, 91.0), _shown("b", "airbench94", 1, 91.2),
             _shown("c", "airbench93", 2, 89.0)]
    rows = seeds.summarise(shown)
    assert sorted((row["n"], row["recipe"]["trained.model"]) for row in rows) == [(1, '"airbench93"'),
                                                                                  (2, '"airbench94"')]


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


def test_low_res_epochs_train_on_smaller_images_and_the_rest_at_full_size():
    """train.low_res: the first epochs' batches reach the network scaled down (antialiased, in the
    layout training uses), the later ones as they are."""
    params = parse_params(compose(["model=airbench93", "train.precision=fp32", "train.batch_size=8",
                                   "train.micro_batch=0"]))
    assert params.train.low_res.epochs == 4 and params.train.epochs == 9
    step = training_step(params, CPU, 10)
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
    (["model=airbench94", "train.low_res.epochs=2", "train.low_res.size=32"],
     "train.low_res.size = 32 must be below data.image_size"),
    (["train.low_res.size=32"], "train.low_res.size = 32 must be below data.image_size"),  # auto: the ladder's 4
    (["model=airbench93", "train.epochs=4"], "train.low_res.epochs = 4 must be fewer than train.epochs = 4"),
    (["model=s9net", "train.epochs=auto"], "train.epochs = auto takes the epochs of a plan.ladder entry"),
    (["+plan.ladder=[{model: airbench93, epochs: 3, low_res_epochs: 3, val_acc: 80}]"],
     "low_res_epochs = 3 must be fewer than its epochs = 3"),
])
def test_low_res_is_refused_where_it_cannot_work(changes, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(compose(changes))


def test_low_res_is_refused_for_a_network_that_does_not_say_it_takes_other_sizes():
    """Which image sizes a network takes is on the network (any_image_size): the plan checks it,
    and every layer gradcam.layers names, on the network itself before anything trains."""
    check_networks(parse_params(compose(["model=airbench94", "train.low_res.epochs=2"])), 10, 32)
    with pytest.raises(ParamsError, match="train.low_res trains at another image size, which s9net does not take"):
        check_networks(parse_params(compose(["model=s9net", "train.low_res.epochs=2"])), 10, 32)
    with pytest.raises(UserError, match="gradcam.layers names 'layer3', which is not a module of S9Net"):
        check_networks(parse_params(compose(["model=s9net", "gradcam.layers=[layer3]"])), 10, 32)


def test_an_image_size_a_network_cannot_shrink_to_is_one_line_with_the_smallest_it_takes():
    """Seen: a max_pool2d traceback. airbench's three poolings need maps of a few pixels."""
    tiny_low_res = parse_params(compose(["model=airbench93", "train.epochs=4", "train.low_res.epochs=2",
                                         "train.low_res.size=8"]))
    with pytest.raises(ParamsError, match=r"train.low_res.size = 8 is too small for airbench93, which shrinks its "
                                          r"maps below one pixel; it takes (\d+) px and more: set train.low_res.size "
                                          r"with `dvc exp run -S train.low_res.size=\1`") as raised:
        check_networks(tiny_low_res, 10, 32)
    smallest = int(str(raised.value).split("it takes ")[1].split()[0])
    check_networks(parse_params(compose(["model=airbench93", "train.epochs=4", "train.low_res.epochs=2",
                                         f"train.low_res.size={smallest}"])), 10, 32)  # that size trains
    with pytest.raises(ParamsError, match="data.image_size = 8 is too small for airbench93"):
        check_networks(parse_params(compose(["model=airbench93", "train.low_res.epochs=0", "data.image_size=8"])),
                       10, 8)


@pytest.mark.slow
def test_two_machines_train_two_choices_and_one_machine_reruns_nothing(tmp_path, monkeypatch):
    """Through the cache of measured speeds: a fast and a slow machine give train two dvc.lock
    entries; each machine's second `dvc repro` runs only the plan; -S values are honoured."""
    from test_pipeline import ALWAYS, dvc, make_project, ran
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    ladder = [{"model": "tiny", "epochs": 2, "low_res_epochs": 0, "val_acc": 60.0},
              {"model": "tiny", "epochs": 1, "low_res_epochs": 0, "val_acc": 50.0}]
    project = make_project(tmp_path / "project", str(tree), model="auto", plan__ladder=ladder,
                           plan__budget_minutes=3, train__epochs="auto")
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    monkeypatch.setenv("CIFARLAB_CACHE", str(fast))
    dvc("repro", cwd=project)  # measures this machine
    cache = json.loads((fast / "speeds.json").read_text())
    for name, step in ((fast, 0.01), (slow, 30.0)):  # 2 steps an epoch: 2 epochs fit 3 minutes only when fast
        entries = {key: {**value, "step_seconds": step, "inference_images_per_s": 1e6, "measure_seconds": 1.0}
                   if "step_seconds" in value else value for key, value in cache.items()}
        name.mkdir(exist_ok=True)
        (name / "speeds.json").write_text(json.dumps(entries))

    def lock_of_train() -> dict:
        return yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train"]

    def choice() -> dict:
        return json.loads((project / "plan" / "choice.json").read_text())["trained"]

    dvc("repro", cwd=project)  # with the fast speeds: trains its own choice
    on_fast, fast_choice = lock_of_train(), choice()
    assert ran(dvc("repro", cwd=project)) == ALWAYS and fast_choice["epochs"] == 2
    monkeypatch.setenv("CIFARLAB_CACHE", str(slow))
    log = dvc("repro", cwd=project)
    assert "train" in ran(log) and choice()["epochs"] == 1 and lock_of_train() != on_fast, log
    assert ran(dvc("repro", cwd=project)) == ALWAYS
    # named, and said to be slow (2 epochs time the same middle epoch's step as the faked cache's)
    log = dvc("exp", "run", "-S", "train.epochs=2", cwd=project)
    assert choice()["epochs"] == 2 and "none fits plan.budget_minutes = 3" in log
    facts = json.loads((project / "models" / "training.json").read_text())
    assert facts["model_chosen_by"].startswith("plan.ladder") and facts["startup_seconds"] > 0


@pytest.mark.slow
def test_the_docs_commands_of_the_plan_run_verbatim_and_train_what_they_name(tmp_path):
    """docs/recipes.md's commands, as written, on a tiny tree: each named value reaches the choice."""
    from test_pipeline import dvc, make_project, readme_commands, sh
    commands = readme_commands("dvc exp run", section="The default: `dvc repro` fits your machine")
    assert commands == ["dvc exp run -S model=airbench94", "dvc exp run -S train.epochs=6",
                        "dvc exp run -S plan.budget_minutes=10"]
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree), model="auto", train__epochs="auto")
    logs = [sh(*shlex.split(command), cwd=project) for command in commands]
    choice = json.loads((project / "plan" / "choice.json").read_text())["trained"]
    assert "plan: airbench94 for 10 epochs" in logs[0]
    assert "for 6 epochs" in logs[1] and "plan.ladder's entry 1" in logs[1]
    assert json.loads((project / "plan" / "estimate.json").read_text())["budget_minutes"] == 10
    assert choice["model"] in ("airbench94", "airbench93")  # the last command: the plan's choice under 10 minutes
    assert "trained.model" in dvc("exp", "show", "--md", cwd=project)  # plan/choice.json, listed by DVC


@pytest.mark.slow
def test_the_estimate_command_of_the_speed_docs_runs_verbatim_on_the_default_params(tmp_path):
    """docs/speed.md's command, as written, in a folder holding the project's default params.yaml:
    every ladder entry priced, and the one the plan would train named."""
    from test_pipeline import readme_commands, sh
    (command,) = readme_commands("cifarlab bench --estimate")
    (tmp_path / "params.yaml").write_text(params_text())
    printed = sh(*shlex.split(command), cwd=tmp_path)
    rows = [line for line in printed.splitlines() if line.startswith("| airbench")]
    assert [row.split(" | ")[1] for row in rows] == ["10", "9 (4 at 24 px)", "6 (3 at 24 px)", "3 (2 at 24 px)"]
    assert all(row.rstrip(" |").endswith(("yes", "no")) for row in rows)
    assert "the plan stage would train airbench9" in printed, printed


def test_the_passes_the_estimate_prices_are_the_stages_own():
    """cost.py keeps its counts as numbers (importing scipy and PIL into a stage that runs on every
    `dvc repro` would cost a second each time); they must stay what the stages do."""
    from cifarlab.gradcam.faithfulness import ORDERS
    from cifarlab.plan import cost
    from cifarlab.robustness.corruptions import CORRUPTIONS, SEVERITIES
    assert cost.ROAD_ORDERS == len(ORDERS) and cost.CORRUPTIONS == len(CORRUPTIONS) * len(SEVERITIES)


def test_the_start_up_measurement_makes_the_train_stages_imports(tmp_path):
    """The train stage imports more than the plan (dvclive, matplotlib): measuring the start-up,
    the plan makes every cifarlab import of stages/train.py, so that their time is counted."""
    import os
    import subprocess
    import sys

    from cifarlab.download.sources import prepare
    from cifarlab.prepared import save_prepared
    from conftest import ROOT
    from stage_imports import SRC, project_files
    write_image_tree(tmp_path / "tree", make_arrays(per_class_train=2, per_class_test=1))
    save_prepared(tmp_path / "prepared.npz", prepare(str(tmp_path / "tree"), 32, {"train": 0, "test": 0}, 0,
                                                      tmp_path / "raw"))
    def modules(stage: str) -> list[str]:
        return sorted(".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                      for path in project_files(ROOT / "stages" / f"{stage}.py"))
    code = (f"import sys, torch, {', '.join(modules('plan'))}; from cifarlab.plan.run import train_startup; "
            f"train_startup(torch.device('cpu'), {str(tmp_path / 'prepared.npz')!r}); "
            f"print([m for m in {modules('train')!r} if m not in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "CIFARLAB_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
