"""Stage 5 — misclassify: a gallery of misclassified test images chosen reproducibly
(misclassify.order), shown from the raw pixels, and the list of chosen images that gradcam
explains, so both show the same images."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_params
from cifarlab.core import paths
from cifarlab.core.errors import UserError, run_stage
from cifarlab.core.io import read_table, save_figure, write_csv
from cifarlab.gallery import gallery_figure
from cifarlab.misclassify.choose import TITLES, choose_misclassified
from cifarlab.predictions_csv import PREDICTION_COLUMNS, caption
from cifarlab.prepared import load_prepared


def main() -> None:
    cfg = load_params().misclassify
    data = load_prepared(paths.PREPARED)
    if cfg.count > len(data.y_test):
        raise UserError(f"params.yaml: misclassify.count = {cfg.count} exceeds the "
                        f"{len(data.y_test)} test images; allowed: 1..{len(data.y_test)}")
    predictions = read_table(paths.PREDICTIONS, PREDICTION_COLUMNS, rows=len(data.y_test))
    chosen = choose_misclassified(predictions, cfg.count, cfg.order, cfg.seed)
    images = [data.x_test[i] for i in chosen["index"]]
    title = (f"{len(chosen)} {TITLES[cfg.order]}: predicted (confidence) / actual"
             if len(chosen) else "no misclassified test images")
    figure = gallery_figure(images, [caption(row) for row in chosen.itertuples()], title=title)
    write_csv(paths.MISCLASSIFIED, chosen)
    save_figure(paths.GALLERY_PNG, figure)
    print(f"chose {len(chosen)} of {cfg.count} requested misclassified images -> {paths.GALLERY_PNG}")


if __name__ == "__main__":
    run_stage(main)
