"""Plain-text tables for notebooks, without pandas: one function, :func:`format_table`."""

from __future__ import annotations

from typing import Mapping, Sequence

__all__ = ["format_table"]


def _cell(value, floatfmt: str) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, floatfmt)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:   # 0-d tensors and arrays
        return _cell(value.item(), floatfmt)
    return str(value)


def format_table(columns: Mapping[str, Sequence], index: Sequence | None = None, *,
                 floatfmt: str = ".6f", index_name: str = "") -> str:
    """A right-aligned text table: one column per key of ``columns`` (all the same length),
    rows labelled by ``index`` (default 0, 1, ...).  Floats use ``floatfmt``.

    >>> print(format_table({"a": [1.0, 2.5], "b": [3, 4]}, ["x", "y"], floatfmt=".1f"))
         a  b
    x  1.0  3
    y  2.5  4
    """
    headers = [str(name) for name in columns]
    data = [list(values) for values in columns.values()]
    lengths = {len(values) for values in data}
    if len(lengths) > 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    index = [str(i) for i in (index if index is not None else range(n))]
    if len(index) != n:
        raise ValueError(f"{len(index)} row labels for {n} rows")
    body = [[_cell(values[r], floatfmt) for values in data] for r in range(n)]
    first = max([len(index_name)] + [len(i) for i in index])
    widths = [max([len(h)] + [len(row[c]) for row in body]) for c, h in enumerate(headers)]
    lines = [index_name.ljust(first) + "  " + "  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    for label, row in zip(index, body):
        lines.append(label.ljust(first) + "  " + "  ".join(v.rjust(w) for v, w in zip(row, widths)))
    return "\n".join(line.rstrip() for line in lines)
