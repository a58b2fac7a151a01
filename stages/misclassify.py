"""Stage 5 — misclassify: a gallery of the most confident mistakes on the test split, shown
from the raw pixels, and the list of chosen images that gradcam explains."""
import pandas as pd

from cifarlab import paths
from cifarlab.data.prepared import load_prepared
from cifarlab.errors import UserError, run_stage
from cifarlab.io import save_figure, write_csv
from cifarlab.misclassify import caption, most_confident_mistakes
from cifarlab.params import load_params
from cifarlab.plots import gallery_figure


def main() -> None:
    count = load_params()["misclassify"]["count"]
    data = load_prepared(paths.PREPARED)
    if count > len(data.y_test):
        raise UserError(f"params.yaml: misclassify.count = {count} exceeds the "
                        f"{len(data.y_test)} test images; allowed: 1..{len(data.y_test)}")
    chosen = most_confident_mistakes(pd.read_csv(paths.PREDICTIONS), count)
    images = [data.x_test[i] for i in chosen["index"]]
    title = (f"{len(chosen)} most confident mistakes — predicted (confidence) / actual"
             if len(chosen) else "no misclassified test images")
    figure = gallery_figure(images, [caption(row) for row in chosen.itertuples()], title=title)
    write_csv(paths.MISCLASSIFIED, chosen)
    save_figure(paths.GALLERY_PNG, figure)
    print(f"chose {len(chosen)} of {count} requested misclassified images -> {paths.GALLERY_PNG}")


if __name__ == "__main__":
    run_stage(main)
