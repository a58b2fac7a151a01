"""Stage 3 — train: fit params.model and keep the best test-accuracy checkpoint, the per-epoch
history (CSV + PNG, rewritten every epoch so progress can be watched), the LR range test and
summary metrics. An interrupted run resumes from its last finished epoch."""
import time
from dataclasses import asdict

import pandas as pd
import torch

from cifarlab import paths
from cifarlab.checkpoint import save_checkpoint
from cifarlab.data.prepared import load_prepared
from cifarlab.dataset import make_loaders
from cifarlab.device import describe, select_device
from cifarlab.errors import run_stage
from cifarlab.facts import macs_per_image, parameter_count, receptive_field
from cifarlab.io import read_json, save_figure, write_csv, write_json
from cifarlab.lr_finder import choose_max_lr
from cifarlab.models import build_model
from cifarlab.optim import make_optimizer
from cifarlab.params import load_params
from cifarlab.plots import curves_figure, lr_finder_figure
from cifarlab.training import NonFiniteLoss, fit, load_resume_state, run_fingerprint


def main() -> None:
    params = load_params()
    cfg = params["train"]
    data = load_prepared(paths.PREPARED)
    stats = read_json(paths.STATS)
    torch.manual_seed(cfg["seed"])
    device = select_device()
    model = build_model(params["model"], data.num_classes)
    facts = {"params": parameter_count(model), "macs": macs_per_image(model, data.x_train.shape[1]),
             "receptive_field": receptive_field(model)}
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    print(f"model {params['model']}: {facts['params']:,} parameters, {facts['macs']:,} MACs/image, "
          f"receptive field {facts['receptive_field']} px; on {describe(device)}", flush=True)

    train_loader, test_loader = make_loaders(params, data, stats, device)
    if cfg["compile"]:
        model.compile()
    optimizer = make_optimizer(model, cfg)
    key = run_fingerprint(params, paths.PREPARED, paths.STATS)
    resumed = load_resume_state(paths.RESUME_STATE, key)
    max_lr, sweep = choose_max_lr(cfg, model, optimizer, train_loader, device, resumed)
    lrs, losses = (sweep.lrs, sweep.losses) if sweep else ([], [])
    write_csv(paths.LR_FINDER_CSV, pd.DataFrame({"lr": lrs, "loss": losses}))
    save_figure(paths.LR_FINDER_PNG, lr_finder_figure(
        lrs, losses, max_lr, note=f"LR range test not run: max_lr is {max_lr} (set train.scheduler.onecycle.max_lr: auto)"))

    def on_epoch_end(_result, progress) -> None:
        history = pd.DataFrame([asdict(row) for row in progress.history])
        write_csv(paths.HISTORY, history)
        save_figure(paths.CURVES_PNG, curves_figure(history))

    def keep_best(progress) -> None:
        model.load_state_dict(progress.best_weights)
        save_checkpoint(paths.MODEL, model, params["model"], data.classes, stats["mean"], stats["std"],
                        progress.best_epoch, progress.best_acc)

    start = time.perf_counter()
    try:
        progress = fit(model, optimizer, train_loader, test_loader, cfg, device, on_epoch_end, max_lr,
                       paths.RESUME_STATE, key, resumed)
    except NonFiniteLoss as err:
        if err.progress.best_weights is not None:
            keep_best(err.progress)
            err.args = (f"{err.args[0]}; kept the best checkpoint so far (epoch "
                        f"{err.progress.best_epoch}) in {paths.MODEL}",)
        raise
    seconds = time.perf_counter() - start
    keep_best(progress)
    last = progress.history[-1]
    write_json(paths.METRICS_TRAIN, {
        "model": params["model"], **facts, "device": describe(device), "epochs": cfg["epochs"],
        "best_test_acc": progress.best_acc, "best_epoch": progress.best_epoch,
        "final_train_acc": last.train_acc, "final_test_acc": last.test_acc,
        "max_lr": max_lr, "lr_finder_lr": sweep.suggested_lr if sweep else None,
        "train_seconds": round(seconds, 2),
        "train_images_per_s": round(cfg["epochs"] * len(data.y_train) / seconds, 1),
    })
    paths.RESUME_STATE.unlink(missing_ok=True)
    print(f"best test accuracy {progress.best_acc:.2f}% at epoch {progress.best_epoch} -> {paths.MODEL}")


if __name__ == "__main__":
    run_stage(main)
