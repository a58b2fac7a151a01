"""What every figure shares: matplotlib drawing to files only (no display, also on a machine
without a screen), and text drawn as written."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["literal", "plt"]


def literal(text: str) -> str:
    """A label shown as written: matplotlib reads text between two $ as math."""
    return text.replace("$", r"\$")
