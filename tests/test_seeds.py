"""The seed-sweep summary reads real `dvc exp show --json` output: experiments that differ only in
train.seed form one group with n, mean and standard deviation; another recipe is its own group."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap

from cifarlab.commands.seeds import summarise

STAGE = textwrap.dedent("""
    import json, yaml
    params = yaml.safe_load(open("params.yaml"))
    seed, lr = params["train"]["seed"], params["train"]["lr"]
    scores = {"accuracy": 90 + seed / 10 + lr, "accuracy_without_tta": 89 + seed / 10}
    json.dump(scores, open("metrics/evaluate.json", "w"))
""")


def _sh(*args, cwd):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_a_seed_sweep_is_summarised_as_mean_and_sd_per_recipe(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "stage.py").write_text(STAGE)
    (tmp_path / "params.yaml").write_text("train:\n  seed: 0\n  lr: 0\n")
    (tmp_path / "dvc.yaml").write_text(textwrap.dedent(f"""
        stages:
          evaluate:
            cmd: {sys.executable} stage.py
            deps: [stage.py]
            params: [train]
            metrics: [{{metrics/evaluate.json: {{cache: false}}}}]
    """))
    _sh("git", "init", "-q", cwd=tmp_path)
    _sh("dvc", "init", "-q", cwd=tmp_path)
    _sh("git", "add", "-A", cwd=tmp_path)
    _sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=tmp_path)
    for seed, lr in ((1, 0), (2, 0), (4, 0), (1, 5)):
        _sh("dvc", "exp", "run", "-q", "-n", f"s{seed}-lr{lr}", "-S", f"train.seed={seed}", "-S", f"train.lr={lr}",
            cwd=tmp_path)
    shown = json.loads(_sh("dvc", "exp", "show", "--json", cwd=tmp_path))
    rows = {row["recipe"]["train.lr"]: row for row in summarise(shown)}
    sweep = rows["0"]
    assert sweep["n"] == 3 and sweep["seeds"] == [1, 2, 4]
    mean, sd = sweep["accuracy"]
    assert mean == statistics.mean([90.1, 90.2, 90.4]) and abs(sd - statistics.stdev([90.1, 90.2, 90.4])) < 1e-9
    assert rows["5"]["n"] == 1 and rows["5"]["accuracy"][0] == 95.1
    printed = subprocess.run([sys.executable, "-m", "cifarlab.seeds"], cwd=tmp_path, capture_output=True, text=True,
                             check=True).stdout
    assert "train.lr=0: n=3 (seeds 1, 2, 4): accuracy 90.23% ± 0.15; plain 89.23% ± 0.15" in printed, printed
    assert "train.lr=5: n=1 (seeds 1): accuracy 95.10%; plain 89.10%; one run: no spread yet" in printed, printed
    assert "nan" not in printed
