"""pandas DataFrames as data: the table as JSON beside its text and HTML, E2B's `data` part.

    {"<column>": [<value of row 0>, <value of row 1>, ...], ...}

as `DataFrame.to_dict(orient="list")` gives it (the index is not part of it), with column names
as strings, timestamps and dates in ISO 8601, and missing or non-finite numbers as null. Nothing
here imports pandas: a DataFrame can only exist once user code imported it.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import warnings
from typing import Any

MIME = "e2b/data"
_MAX_CELLS = 1_000_000  # beyond this, converting costs seconds: the table keeps its text only


def dataframe_data(value: Any, limit: int) -> str | None:
    """The JSON of `value` if it is a DataFrame and the JSON fits in `limit` bytes, else None."""
    pandas = sys.modules.get("pandas")
    frame_type = getattr(pandas, "DataFrame", None)
    if not isinstance(frame_type, type) or not isinstance(value, frame_type):
        return None
    frame: Any = value
    try:
        cells = int(frame.size)
        if cells > _MAX_CELLS or cells * 2 > limit:  # a cell takes at least 2 bytes: "0,"
            return None
        missing = getattr(pandas, "NA", None), getattr(pandas, "NaT", None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate column names: to_dict keeps the last
            columns = frame.to_dict(orient="list")
        data = {str(name): [_cell(v, missing) for v in column] for name, column in columns.items()}
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
    except Exception:  # a table that cannot be converted keeps its text and HTML
        return None
    return text if len(text.encode("utf-8", "surrogatepass")) <= limit else None


def _cell(v: Any, missing: tuple[Any, Any]) -> Any:
    if v is None or isinstance(v, str | bool | int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if any(v is m for m in missing if m is not None):
        return None
    if isinstance(v, datetime.date | datetime.time):
        return v.isoformat()
    item = getattr(v, "item", None)  # a numpy scalar
    if callable(item) and type(v).__module__ == "numpy":
        try:
            return _cell(item(), missing)
        except Exception:
            return str(v)
    return str(v)
