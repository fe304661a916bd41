"""Working a large order as child orders over a window: ``--execution twap:10m`` / ``vwap:10m``.

* :func:`parse_execution` reads the option: ``market`` (default: one order), ``twap:<window>``
  or ``vwap:<window>``, window ``<n>s``, ``<n>m`` or ``<n>h`` (1 s .. 6 h), optionally
  ``:<children>`` (2..100, default 5): ``twap:10m`` is 5 child orders 2 minutes apart, the first
  at once; ``twap:30s:3`` is 3 children 10 s apart.
* Child k (1-based) is due ``(k - 1) x window / children`` seconds after the parent was created;
  its client order id is ``<parent id>-c<k>`` (at most 117 + 5 characters).
* Quantities are whole shares summing to the parent's (:func:`split`, largest remainder); a
  parent of fewer shares than children gets one child per share.
* TWAP weights are equal. VWAP weights are the symbol's **volume profile** (:func:`vwap_weights`):
  for each child's slot of the window (its due time to the next child's), the mean volume the
  symbol traded in that same clock-time slot on each of the previous ``PROFILE_DAYS`` (20)
  calendar days that have any bar in the window's clock times; with no such day (daily bars, a
  fresh store) the weights are equal (TWAP) and the session says so.
"""
from __future__ import annotations

import math
import re

import numpy as np

PROFILE_DAYS = 20
DEFAULT_CHILDREN = 5
MAX_CHILDREN = 100
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_execution(text: str | None) -> tuple[str, float, int] | None:
    """``market``/None -> None; ``twap:10m[:N]`` / ``vwap:...`` -> (algo, window seconds, children).
    ValueError (one line naming the option) for anything else."""
    if text is None or text.strip().lower() in ("", "market"):
        return None
    m = re.fullmatch(r"(twap|vwap):(\d+)([smh])(?::(\d+))?", text.strip().lower())
    if not m:
        raise ValueError(f"--execution {text!r}: expected market, twap:<window> or vwap:<window> with a window like "
                         "30s, 10m or 1h (optionally :<children>, e.g. twap:10m:5)")
    window = int(m.group(2)) * _UNITS[m.group(3)]
    n = int(m.group(4)) if m.group(4) else DEFAULT_CHILDREN
    if not 1 <= window <= 6 * 3600:
        raise ValueError(f"--execution {text!r}: the window must be 1 s to 6 h")
    if not 2 <= n <= MAX_CHILDREN:
        raise ValueError(f"--execution {text!r}: children must be 2 to {MAX_CHILDREN}")
    return m.group(1), float(window), n


def split(qty: float, weights) -> list[float]:
    """Whole shares per child, proportional to ``weights`` (>= 0, any scale; all zero means equal),
    summing exactly to ``floor(qty)``: floors first, then the largest remainders get one more share
    (ties to the earlier child)."""
    total = int(math.floor(qty + 1e-9))
    w = np.asarray(weights, dtype=float)
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    if w.sum() <= 0:
        w = np.ones(w.size)
    raw = total * w / w.sum()
    base = np.floor(raw + 1e-9).astype(int)
    rest = total - int(base.sum())
    order = sorted(range(w.size), key=lambda i: (-(raw[i] - base[i]), i))
    for i in order[:rest]:
        base[i] += 1
    return [float(x) for x in base]


def vwap_weights(times_us: np.ndarray, volumes: np.ndarray, start_us: int, step_s: float, n: int,
                 days: int = PROFILE_DAYS) -> tuple[np.ndarray, int]:
    """The volume profile of the window starting at ``start_us`` (n slots of ``step_s`` seconds)
    from the bars ``times_us`` (int64 us, bar open times, ascending) and ``volumes``: weight k =
    mean over the previous ``days`` calendar days (d = 1..days) that have at least one bar in the
    window's clock times of the volume of bars with open time in
    ``[start + k x step - d days, start + (k + 1) x step - d days)``. Returns (weights, days used);
    days used 0 means no profile (weights all equal)."""
    times_us = np.asarray(times_us, dtype=np.int64)
    volumes = np.asarray(volumes, dtype=float)
    step_us = int(round(step_s * 1e6))
    edges = start_us + np.arange(n + 1, dtype=np.int64) * step_us
    sums = np.zeros(n)
    used = 0
    for d in range(1, days + 1):
        e = edges - d * 86_400 * 1_000_000
        lo, hi = np.searchsorted(times_us, [e[0], e[-1]])
        if hi <= lo:
            continue
        idx = np.searchsorted(e, times_us[lo:hi], side="right") - 1
        sums += np.bincount(idx, weights=np.nan_to_num(volumes[lo:hi]), minlength=n)[:n]
        used += 1
    if used == 0 or sums.sum() <= 0:
        return np.full(n, 1.0 / n), 0
    return sums / used, used
