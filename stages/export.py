"""Stage 4b — export: the trained model as ONNX (models/model.onnx, normalisation inside, input RGB
in 0..1) with a short card beside it (models/model.onnx.json, with evaluate's calibrating
temperature), for use outside PyTorch; and the checkpoint with that temperature inside
(models/cifar10-model.pt, the registry's model), so the calibration travels with the weights."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.core import paths
from cifarlab.core.errors import UserError, run_stage
from cifarlab.core.io import read_json
from cifarlab.export.onnx import describe, write_onnx
from cifarlab.models.checkpoint import load_checkpoint, load_temperature, save_release


def main() -> None:
    model, ckpt = load_checkpoint(paths.MODEL)
    temperature, uncalibrated = load_temperature(paths.MODEL, ckpt)
    if uncalibrated:  # the pipeline's own file: missing or damaged, it is made again, not done without
        raise UserError(f"{uncalibrated}; rerun `dvc repro evaluate`")
    write_onnx(paths.ONNX, paths.ONNX_CARD, model, ckpt, temperature)
    save_release(paths.RELEASE, ckpt, temperature, read_json(paths.CALIBRATION)["fitted_on"])
    card = describe(ckpt, temperature)
    print(f"exported {ckpt['model']} (opset {card['opset']}, input {card['input']['name']} "
          f"{'x'.join(map(str, card['input']['shape']))}, {len(card['classes'])} classes) -> {paths.ONNX}, and "
          f"with its temperature {temperature:g} inside -> {paths.RELEASE}")


if __name__ == "__main__":
    run_stage(main)
