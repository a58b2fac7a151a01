"""Stage 3 — train: fit params.model; keep the best test-accuracy checkpoint, the per-epoch
history (CSV + PNG, rewritten every epoch so progress can be watched) and summary metrics."""
import time

import pandas as pd
import torch

from cifarlab import paths
from cifarlab.augment import eval_transform, train_transform
from cifarlab.checkpoint import save_checkpoint
from cifarlab.data.prepared import load_prepared
from cifarlab.dataset import make_loader
from cifarlab.device import describe, select_device
from cifarlab.errors import run_stage
from cifarlab.facts import macs_per_image, parameter_count, receptive_field
from cifarlab.io import read_json, save_figure, write_csv, write_json
from cifarlab.models import build_model
from cifarlab.params import load_params
from cifarlab.plots import curves_figure
from cifarlab.training import fit


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
    model = model.to(device)
    print(f"model {params['model']}: {facts['params']:,} parameters, {facts['macs']:,} MACs/image, "
          f"receptive field {facts['receptive_field']} px; on {describe(device)}", flush=True)

    augment = train_transform(params["augment"], stats["mean"], stats["std"], data.x_train.shape[1],
                              seed=cfg["seed"])
    train_loader = make_loader(data.x_train, data.y_train, augment, cfg["batch_size"], shuffle=True,
                               seed=cfg["seed"])
    test_loader = make_loader(data.x_test, data.y_test, eval_transform(stats["mean"], stats["std"]),
                              cfg["batch_size"])
    rows, best = [], {"test_acc": -1.0, "epoch": 0}

    def on_epoch_end(result) -> None:
        rows.append(result.as_row())
        if result.test_acc > best["test_acc"]:
            best.update(test_acc=result.test_acc, epoch=result.epoch)
            save_checkpoint(paths.MODEL, model, params["model"], data.classes, stats["mean"],
                            stats["std"], result.epoch, result.test_acc)
        history = pd.DataFrame(rows)
        write_csv(paths.HISTORY, history)
        save_figure(paths.CURVES_PNG, curves_figure(history))

    start = time.perf_counter()
    history = fit(model, train_loader, test_loader, cfg, device, on_epoch_end)
    seconds = time.perf_counter() - start
    write_json(paths.METRICS_TRAIN, {
        "model": params["model"], **facts, "device": describe(device),
        "epochs": cfg["epochs"], "best_test_acc": best["test_acc"], "best_epoch": best["epoch"],
        "final_train_acc": history[-1].train_acc, "final_test_acc": history[-1].test_acc,
        "train_seconds": round(seconds, 2),
        "train_images_per_s": round(cfg["epochs"] * len(data.y_train) / seconds, 1),
    })
    print(f"best test accuracy {best['test_acc']:.2f}% at epoch {best['epoch']} -> {paths.MODEL}")


if __name__ == "__main__":
    run_stage(main)
