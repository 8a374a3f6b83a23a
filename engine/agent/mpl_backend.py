"""A matplotlib backend for the sandbox: Agg rendering, and `plt.show()` publishes the open figures
as PNG display items right away (so they appear between the prints around them) instead of warning
that Agg cannot show anything. Selected by the kernel with `module://<package>.mpl_backend`."""

from __future__ import annotations

from typing import Any

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase

# The kernel sets this to its figure-publishing function; None outside an agent process.
publisher: Any = None


def show(*args: Any, **kwargs: Any) -> None:
    if publisher is not None:
        publisher()
