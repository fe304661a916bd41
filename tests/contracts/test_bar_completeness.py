"""When a followed bar is complete: paper_trade and live_trade each carry a copy of ``_ready``
(SLICES.md contract 4's note on follow sessions). live_trade used to act on a bar as soon as ONE
symbol's file had it, so a symbol whose file landed a moment later lost that bar; both copies
must now answer alike for any symbols' last bars, new times and first-seen ages."""
from __future__ import annotations

import time

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from slices.live_trade.session import _ready as live_ready
from slices.paper_trade.session import _ready as paper_ready

MIN = 60_000_000  # one minute in us


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=6), st.integers(-5, 5), st.integers(1, 8),
       st.lists(st.sampled_from([0.0, 10.0, 100.0]), min_size=8, max_size=8), st.sampled_from([-600, 600]))
def test_both_copies_agree(last_offsets, first_offset, n_times, ages, hours):
    # every time is far from now (10 h before or after): "its end has passed" cannot flip between the calls
    base = int(time.time() * 1e6) + hours * MIN
    lasts = np.array([base + k * MIN for k in last_offsets], dtype=np.int64)
    times = np.array([base + (first_offset + i) * MIN for i in range(n_times)], dtype=np.int64)
    now = time.monotonic()
    seen = {int(t): now - ages[i] for i, t in enumerate(times.tolist())}
    a = paper_ready(lasts, times, "1m", seen, 30.0)
    b = live_ready(lasts, times, "1m", seen, 30.0)
    assert a.tolist() == b.tolist()


def test_a_time_only_one_symbol_has_waits():
    now = int(time.time() * 1e6) - 600 * MIN
    lasts = np.array([now + MIN, now], dtype=np.int64)  # symbol 0 has the bar at now+1min, symbol 1 not yet
    times = np.array([now + MIN], dtype=np.int64)
    for ready in (paper_ready, live_ready):
        assert ready(lasts, times, "1m", {now + MIN: time.monotonic()}, 30.0).tolist() == []
        assert ready(lasts, times, "1m", {now + MIN: time.monotonic() - 31}, 30.0).tolist() == [now + MIN]
