"""Running a paper-trading session: bars in, one ledger transaction per bar, resume, stop.

:func:`run_session` is the whole ``run`` command: it resolves the settings (a resumed session
keeps its stored settings; an option given again with another value is an error naming it,
unless ``force_new``), loads the bars (contracts 1/2), takes the session's lock and steps the
:class:`~.engine.Engine` through the bars:

* ``replay``: every bar of the loaded data in time order (``speed`` bars per second, or as fast
  as possible), then the session stops (status ``stopped``, or ``halted``).
* ``follow``: the store's parquet files are checked every ``poll`` seconds; a bar is acted on once
  it is complete (:func:`_ready`): every symbol has a newer bar, or every symbol has reached it
  and its end time (open time + timeframe) has passed, or a grace period after it was first seen. A bar that lands for a time the
  session has already processed is ignored (event ``data_gap``). Without ``start`` the existing
  history only warms the strategy up: trading starts with the first bar completed after the
  session was created.

A stop request (``stop NAME`` writes ``<session>.stop`` beside the ledger; SIGTERM and Ctrl-C do
the same) ends the session after the current bar.
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .bars import (JUMP_FACTOR, SUB_PENNY, DataError, LoadReport, data_warnings, load_bars, normalise, parse_when,
                   read_file, row_problems, store_root, suspicious_reasons, SAMPLE_ROOT)
from .engine import Config, Engine, Panel, build_panel, compute_weights, extend_panel, put_column, symbol_signals
from .ledger import (EQUITY_COLUMNS, FILL_COLUMNS, KIND, ORDER_COLUMNS, SCHEMA, SCHEMA_VERSION, LedgerError, Writer,
                     has_meta, iso, ledgers_root, now_iso, open_reader, read_meta, session_path, set_meta)
from .strategies import resolve_params

TF_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400,
              "1w": 7 * 86400, "1mo": 31 * 86400}
# settings compared when a session resumes (every run option that changes what is traded)
SETTING_KEYS = ("strategy", "params", "symbols", "timeframe", "mode", "start", "end", "data", "store", "adjust",
                "keep_suspicious", "cash", "commission", "slippage_bps", "allow_short", "whole_shares", "sizing",
                "fraction", "stop_loss_atr", "take_profit_atr", "atr_window", "max_position_pct", "max_drawdown",
                "max_volume_pct", "leverage", "rebalance_threshold")
OPTION_NAMES = {k: "--" + k.replace("_", "-") for k in SETTING_KEYS} | {
    "params": "--param", "mode": "--replay/--follow", "whole_shares": "--whole-shares/--fractional",
    "allow_short": "--allow-short/--long-only", "adjust": "--no-adjust"}

_UPSERT_ORDER = (f"INSERT INTO orders({', '.join(ORDER_COLUMNS)}) VALUES({', '.join('?' * len(ORDER_COLUMNS))}) "
                 "ON CONFLICT(id) DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in ORDER_COLUMNS[1:]))
_INSERT_FILL = f"INSERT INTO fills({', '.join(FILL_COLUMNS)}) VALUES({', '.join('?' * len(FILL_COLUMNS))})"
_UPSERT_POS = ("INSERT INTO positions(symbol, qty, avg_price, realized_pnl, updated_at, mark_price, mark_time) "
               "VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET qty=excluded.qty, "
               "avg_price=excluded.avg_price, realized_pnl=excluded.realized_pnl, updated_at=excluded.updated_at, "
               "mark_price=excluded.mark_price, mark_time=excluded.mark_time")
_MARK_POS = "UPDATE positions SET mark_price=?, mark_time=? WHERE symbol=?"
_INSERT_EQUITY = f"INSERT INTO equity({', '.join(EQUITY_COLUMNS)}) VALUES({', '.join('?' * len(EQUITY_COLUMNS))})"
_INSERT_EVENT = "INSERT INTO events(time, level, kind, message, data) VALUES(?, ?, ?, ?, ?)"


@dataclass
class RunResult:
    """What ``run`` did: the session, its ledger, bars processed now, the final meta and notes."""

    session: str
    path: Path
    bars_done: int
    status: str
    resumed: bool
    meta: dict
    report: LoadReport = field(default_factory=LoadReport)
    notes: list[str] = field(default_factory=list)


class StopFlag:
    """A stop request: SIGTERM/SIGINT received, or the ``<session>.stop`` file present."""

    def __init__(self, stop_file: Path):
        self.stop_file = stop_file
        self.signalled = False

    def install(self) -> None:
        def handler(signum, frame):
            self.signalled = True
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def __bool__(self) -> bool:
        return self.signalled or self.stop_file.exists()

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early on a stop request."""
        end = time.monotonic() + seconds
        while not self and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))


def stop_file(path: Path) -> Path:
    """``<ledgers>/paper/<session>.stop``: its presence asks the running session to stop."""
    return path.with_suffix(".stop")


# ----------------------------------------------------------------------------- settings
def merge_settings(path: Path, given: dict, defaults: dict, force_new: bool) -> tuple[dict, bool]:
    """The settings to run with and whether the session resumes.

    ``given``: options set on the command line; ``defaults``: every option's default. A new
    session (or ``force_new``) uses defaults | given; an existing one its stored settings, and a
    given option that differs from the stored value is a ValueError naming the option."""
    stored = _stored(path, force_new)
    if not stored:
        return defaults | given, False
    for k, v in given.items():
        if k in stored and _norm(stored[k]) != _norm(v):
            raise ValueError(f"session {path.stem}: {OPTION_NAMES.get(k, k)} changed ({_show(stored[k])} -> {_show(v)}); "
                             "resume with the same settings, or pass --force-new to start the session again")
    return stored, True


def carried_settings(path: Path, given: dict) -> dict:
    """``given`` completed for ``--force-new`` from the session's stored settings: the session
    starts again with its settings, changed only where an option is given. ``--param`` values
    are kept (as ``k=v`` texts under the given ones) only when ``--strategy`` stays the same, and
    the stored (inferred) timeframe only when neither ``--data`` nor ``--store`` is given."""
    old = _stored(path, False)
    if not old:
        return given
    out = {k: v for k, v in old.items() if k in SETTING_KEYS and k != "params"} | given
    if ("data" in given or "store" in given) and "timeframe" not in given:
        out.pop("timeframe", None)
    if given.get("strategy", old.get("strategy")) == old.get("strategy"):
        texts = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (old.get("params") or {}).items()}
        if texts or "params" in given:
            out["params"] = texts | (given.get("params") or {})
    return out


def _stored(path: Path, force_new: bool) -> dict:
    """The stored settings of an existing session ({} for a new one or with --force-new)."""
    if force_new or not path.exists() or not has_meta(path):  # no meta: killed while it was created
        return {}
    conn = open_reader(path)
    try:
        meta = read_meta(conn)
    finally:
        conn.close()
    return json.loads(meta["settings"]) if "settings" in meta else {}


def _norm(v):
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


def _show(v) -> str:
    return "unset" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def config_of(settings: dict) -> Config:
    """The engine Config from a settings dict."""
    names = Config.__dataclass_fields__.keys()
    cfg = Config(**{k: settings[k] for k in names if k in settings})
    cfg.check()
    return cfg


# ----------------------------------------------------------------------------- bars
def _frames(bars: pl.DataFrame) -> dict[str, dict]:
    """Long bars -> {SYMBOL: {"timestamp": int64 us, "open" ... "volume": float64}}."""
    out = {}
    for (sym,), g in bars.partition_by("symbol", as_dict=True, maintain_order=True).items():
        d = {k: g[k].to_numpy().astype(np.float64) for k in ("open", "high", "low", "close", "volume")}
        d["timestamp"] = g["timestamp"].dt.epoch("us").to_numpy()
        out[sym] = d
    return out


def _signals(strat, params: dict, cfg: Config, sym: str, bars: dict) -> dict:
    """A symbol's frame ready for :func:`.engine.build_panel`: with its targets and ATR for a
    signal strategy (the ATR only when the settings use it), as it is for a weights strategy."""
    if strat.form == "weights":
        return bars
    return symbol_signals(strat, params, sym, bars, cfg.allow_short, cfg.atr_window if cfg.needs_atr else None)


def load_session_bars(s: dict, symbols: list[str] | None, start: str | None, report: LoadReport | None = None):
    """Load (and check) the session's bars with its settings. Returns (long bars, report)."""
    bars, rep = load_bars(symbols, s["timeframe"], store=s["store"], data=s["data"] or None, start=start, end=s["end"],
                          adjust=s["adjust"], keep_suspicious=s["keep_suspicious"])
    if report is not None:
        report.notes.extend(rep.notes)
        report.warnings.extend(rep.warnings)
        report.findings.extend(rep.findings)
    return bars, rep


def check_lookback(bars: pl.DataFrame, strat, params: dict, cfg: Config, named: bool, report: LoadReport,
                   label: str) -> pl.DataFrame:
    """Drop (unnamed) or refuse (named) symbols with fewer bars than the strategy needs (as backtest)."""
    need = strat.needed_bars(params)
    if cfg.needs_atr:
        need = max(need, cfg.atr_window + 1)
    counts = bars.group_by("symbol").agg(pl.len(), pl.col("timestamp").first()).sort("symbol")
    short = counts.filter(pl.col("len") < need)
    if short.height:
        msgs = [f"{s}: {n:,} bars from {t:%Y-%m-%d}, fewer than the {need:,} that {label} needs" for s, n, t in short.iter_rows()]
        if named or short.height == counts.height:
            raise DataError(msgs[0] + " (use a longer --start/--end span or smaller --param windows)")
        report.warnings.extend(m + "; symbol excluded" for m in msgs)
        bars = bars.filter(~pl.col("symbol").is_in(short["symbol"].to_list()))
    return bars


# ----------------------------------------------------------------------------- ledger writes
def write_bar(writer: Writer, engine: Engine, row: dict | None, extra_meta: dict | None = None) -> None:
    """One transaction: the engine's changed orders, new fills, positions (and marks), the equity
    row, events, the engine state and the heartbeat."""
    orders, fills, pos, events = engine.drain()
    if not (row or orders or fills or pos or events or extra_meta):  # a heartbeat: nothing else changed
        with writer.transaction(durable=False) as cur:
            set_meta(cur, {"heartbeat_at": now_iso()})
        return
    br = engine.broker
    ts = row["time"] if row else None
    with writer.transaction() as cur:
        if orders:
            cur.executemany(_UPSERT_ORDER, [tuple(o[k] for k in ORDER_COLUMNS) for o in orders])
        if fills:
            cur.executemany(_INSERT_FILL, [tuple(f[k] for k in FILL_COLUMNS) for f in fills])
        if ts is not None:
            dirty = set(pos)
            marks = [None if x != x else x for x in engine.last_close.tolist()]
            if dirty:
                qty, avg, real = br.qty.tolist(), br.avg_price.tolist(), br.realized.tolist()
                cur.executemany(_UPSERT_POS, [(engine.symbols[j], qty[j], avg[j] if qty[j] else None, real[j], ts,
                                               marks[j], ts) for j in sorted(dirty)])
            held = [j for j in np.flatnonzero(br.qty).tolist() if j not in dirty]
            if held:
                cur.executemany(_MARK_POS, [(marks[j], ts, engine.symbols[j]) for j in held])
            cur.execute(_INSERT_EQUITY, tuple(row[k] for k in EQUITY_COLUMNS))
        now = now_iso()
        if events:
            cur.executemany(_INSERT_EVENT, [(now, lv, kd, msg, json.dumps(data)) for lv, kd, msg, data in events])
        meta = {"heartbeat_at": now, "engine_state": json.dumps(engine.state()), "trading_state": engine.trading_state}
        if engine.last_time is not None:
            meta["last_bar_time"] = iso(engine.last_time)
        set_meta(cur, meta | (extra_meta or {}))


def log_event(writer: Writer, level: str, kind: str, message: str, extra_meta: dict | None = None, **data) -> None:
    """One event (and meta keys) in its own transaction."""
    now = now_iso()
    with writer.transaction() as cur:
        cur.execute(_INSERT_EVENT, (now, level, kind, message, json.dumps(data)))
        set_meta(cur, {"heartbeat_at": now} | (extra_meta or {}))


def reset_ledger(writer: Writer) -> None:
    """Empty a ledger for ``--force-new`` (every table dropped and created again)."""
    with writer.transaction() as cur:
        for t in ("meta", "orders", "fills", "positions", "equity", "events"):
            cur.execute(f"DROP TABLE IF EXISTS {t}")
        for stmt in SCHEMA.split(";"):
            if stmt.strip():
                cur.execute(stmt)


# ----------------------------------------------------------------------------- run
def run_session(session: str, given: dict, defaults: dict, *, ledgers: str | None = None, force_new: bool = False,
                speed: float | None = None, poll: float = 5.0, progress=None, max_idle: float | None = None) -> RunResult:
    """Run (or resume) a session; see the module docstring. ``given``/``defaults``: settings by
    key (:data:`SETTING_KEYS`). ``progress(done, total)`` is called per bar when given.
    ``max_idle``: follow mode ends after that many seconds without a new bar (tests, benchmarks).

    Raises ValueError (bad or changed settings), DataError (bad bars), LedgerError (locked,
    corrupted, unwritable or full ledger)."""
    root = ledgers_root(ledgers)
    path = session_path(root, session)
    stop = StopFlag(stop_file(path))
    stop.install()  # from here on SIGTERM/Ctrl-C end the session cleanly after the current bar
    if speed is not None and not speed > 0:
        raise ValueError(f"--speed must be > 0 bars per second (got {speed})")
    if not poll > 0:
        raise ValueError(f"--poll must be > 0 seconds (got {poll})")
    given = carried_settings(path, dict(given)) if force_new else dict(given)
    stored = _stored(path, force_new)
    name = given.get("strategy") or stored.get("strategy") or defaults["strategy"]
    if "params" in given or not stored:
        _, resolved = resolve_params(name, given.get("params") or {})
        if "params" in given:
            given["params"] = resolved
        defaults = defaults | {"params": resolved}
    s, resumed = merge_settings(path, given, defaults, force_new)
    cfg = config_of(s)
    if s["mode"] == "follow" and s["data"]:
        raise ValueError("--follow reads the bar store; it cannot be used with --data")
    strat, params = resolve_params(s["strategy"], {})
    cfg.check_form(strat.form, strat.label)
    params = params | s["params"]
    strat.check(params)
    report = LoadReport()
    named = s["symbols"] is not None and (resumed or "symbols" in given)
    bars, rep = load_session_bars(s, s["symbols"], s["start"], report)
    s["timeframe"] = rep.timeframe
    bars = check_lookback(bars, strat, params, cfg, named, report, strat.label)
    frames = {sym: _signals(strat, params, cfg, sym, f) for sym, f in _frames(bars).items()}
    symbols = sorted(frames)
    if resumed and symbols != s["symbols"]:
        raise DataError(f"session {session}: the data now holds {', '.join(symbols)} instead of the session's "
                        f"{', '.join(s['symbols'])}")
    s["symbols"], s["params"] = symbols, params
    panel = build_panel(frames, symbols)
    if strat.form == "weights":
        panel.weights, warns = compute_weights(panel, strat, params, cfg.allow_short, cfg.leverage)
        report.warnings.extend(warns)

    writer = Writer(path, synchronous="NORMAL" if s["mode"] == "replay" else "FULL")
    try:
        stop.stop_file.unlink(missing_ok=True)
        engine = Engine(session, symbols, cfg, strat.form)
        if force_new and not writer.is_new:
            reset_ledger(writer)
            writer.is_new = True
        if writer.is_new:
            stored = {k: s.get(k) for k in SETTING_KEYS}
            if s["mode"] == "follow" and not s["start"]:
                _follow_cursor(engine, panel, s["timeframe"])
            # the meta and the first engine state in one transaction: a kill leaves both or neither
            write_bar(writer, engine, None, {"schema_version": str(SCHEMA_VERSION), "kind": KIND, "session": session,
                                             "strategy": s["strategy"], "params": params, "symbols": symbols,
                                             "timeframe": s["timeframe"], "settings": stored, "created_at": now_iso(),
                                             "status": "running", "pid": str(os.getpid())})
            log_event(writer, "info", "start", f"session {session} started ({s['mode']}, {strat.label}, "
                      f"{len(symbols)} symbol(s))", settings=stored)
        else:
            meta = writer.meta()
            engine.restore(json.loads(meta["engine_state"]))
            log_event(writer, "info", "resume", f"session {session} resumed after {meta.get('last_bar_time') or 'no bar'}",
                      {"status": "running", "pid": str(os.getpid())})
        done = 0
        if s["mode"] == "replay":
            done = _replay(writer, engine, panel, stop, speed, progress)
        else:
            done = _follow(writer, engine, panel, frames, s, strat, params, cfg, stop, poll, max_idle, progress)
        final = "halted" if engine.halted or engine.halt_pending else "stopped"
        log_event(writer, "info", "stop", f"session {session} {final} after {done:,} bar(s)"
                  + (" (stop requested)" if stop else ""), {"status": final})
        if stop.stop_file.exists():
            stop.stop_file.unlink(missing_ok=True)
        meta = writer.meta()
        return RunResult(session, path, done, final, resumed, meta, report)
    except BaseException as exc:
        if not isinstance(exc, LedgerError) and writer.conn is not None:
            try:
                log_event(writer, "error", "stop", f"session {session} failed: {type(exc).__name__}: {exc}",
                          {"status": "failed"})
            except Exception:
                pass
        raise
    finally:
        writer.close()


def _replay(writer: Writer, engine: Engine, panel: Panel, stop: StopFlag, speed: float | None, progress) -> int:
    first = 0 if engine.last_time is None else int(np.searchsorted(panel.times, engine.last_time, side="right"))
    T = panel.times.size
    done = 0
    tick = time.monotonic()
    for b in range(first, T):
        if stop:
            break
        row = engine.step(panel, b)
        write_bar(writer, engine, row)
        done += 1
        if progress:
            progress(b + 1, T)
        if speed:
            tick += 1.0 / speed
            stop.sleep(tick - time.monotonic())
    return done


def _follow_cursor(engine: Engine, panel: Panel, timeframe: str) -> None:
    """A new follow session without --start: the history only warms up; start after the last complete bar."""
    done = _complete(panel.times, timeframe)
    if done.size == 0:
        return
    last = int(done[-1])
    b = int(np.searchsorted(panel.times, last, side="right"))
    for j in range(len(engine.symbols)):
        rows = np.flatnonzero(~np.isnan(panel.close[:b, j]))
        if rows.size:  # a weights strategy trades the weight rows after this one only
            engine.last_target[j] = panel.targets[rows[-1], j]
            engine.last_close[j] = panel.close[rows[-1], j]
    engine.last_time = last
    engine.event("info", "state", f"following from {iso(last)}: earlier bars warm the strategy up", iso(last))


def _complete(times: np.ndarray, timeframe: str) -> np.ndarray:
    """Times of the timeline that are complete bars: a newer bar exists, or the bar's end passed."""
    if times.size == 0:
        return times
    now_us = int(time.time() * 1e6)
    ok = (times < times[-1]) | (times + TF_SECONDS[timeframe] * 1_000_000 <= now_us)
    return times[ok]


def _ready(lasts: np.ndarray, times: np.ndarray, timeframe: str, seen: dict[int, float], grace: float) -> np.ndarray:
    """The leading run of ``times`` (new timeline times, sorted) that are complete bars;
    ``lasts`` (N,) int64 us: each symbol's newest bar time.

    A time t is complete when every symbol has a bar newer than t; or every symbol has reached t
    and t's end time (t + timeframe) has passed; or, for a symbol whose file stopped updating,
    ``grace`` seconds after the session first saw t, when a newer bar exists or t's end passed.
    Processing stops at the first time that is not complete (bars are acted on in time order)."""
    if times.size == 0:
        return times
    min_last, max_last = lasts.min(), lasts.max()
    now_us = time.time() * 1e6
    now_mono = time.monotonic()
    out = []
    for t in times.tolist():
        ended = t + TF_SECONDS[timeframe] * 1_000_000 <= now_us
        if t < min_last or (t <= min_last and ended) or (now_mono - seen.get(t, now_mono) >= grace and (t < max_last or ended)):
            out.append(t)
        else:
            break
    return np.array(out, dtype=np.int64)


class StoreWatch:
    """Which of the session's store files changed since the last look (mtime, size, inode); at
    the first look every file counts as changed (so nothing written since the load is missed)."""

    def __init__(self, paths: dict[str, Path]):
        self.paths = paths
        self.seen = {s: None for s in paths}

    @staticmethod
    def _stat(p: Path):
        try:
            st = p.stat()
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def changed(self) -> list[str]:
        out = []
        for s, p in self.paths.items():
            now = self._stat(p)
            if now != self.seen[s]:
                self.seen[s] = now
                out.append(s)
        return out


def _store_paths(s: dict, symbols: list[str]) -> dict[str, Path]:
    root, named_by = store_root(s["store"])
    out = {}
    for sym in symbols:
        p = root / "bars" / s["timeframe"] / f"{sym}.parquet"
        if not p.exists() and named_by is None:
            p = SAMPLE_ROOT / "bars" / s["timeframe"] / f"{sym}.parquet"
        out[sym] = p
    return out


STORE_SCHEMA = {"timestamp": pl.Datetime("us", "UTC"), "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
                "close": pl.Float64, "volume": pl.Float64}
BAR_KEYS = ("open", "high", "low", "close", "volume")


def _read_many(paths: dict[str, Path]) -> dict[str, tuple[np.ndarray, dict]]:
    """The store files ``paths`` (``{SYMBOL: path}``) read in one multi-file Parquet scan, which
    costs about a third of reading them one by one (polars' per-read overhead dominates files of
    a few thousand rows), as ``{SYMBOL: (timestamp int64 us, {column: float64 array})}``. Only
    when every file is Parquet with exactly the contract-1 schema; otherwise, or on any read
    error, ``{}`` (the caller then reads each file itself, naming the faulty one)."""
    if len(paths) < 2 or any(p.suffix.lower() not in (".parquet", ".pq") for p in paths.values()):
        return {}
    syms = list(paths)
    try:
        both = pl.scan_parquet([paths[x] for x in syms], hive_partitioning=False,
                               include_file_paths="_file").collect()
    except Exception:  # mixed schemas, a file replaced mid-scan, an unreadable file: read one by one
        return {}
    if len(both.columns) != len(STORE_SCHEMA) + 1 or any(both.schema.get(k) != v for k, v in STORE_SCHEMA.items()):
        return {}
    runs = both.select(pl.col("_file").rle()).unnest("_file")  # files in scan order, contiguous rows
    files, lens = runs["value"].to_list(), runs["len"].to_numpy()
    if files != [str(paths[x]) for x in syms]:
        return {}  # an empty file, or a path spelled otherwise: one by one
    cut = np.cumsum(lens)[:-1]
    t = np.split(both["timestamp"].to_physical().to_numpy(), cut)
    cols = {k: np.split(both[k].to_numpy(), cut) for k in BAR_KEYS}
    return {x: (t[i], {k: cols[k][i] for k in BAR_KEYS}) for i, x in enumerate(syms)}


def _read_new(path: Path, sym: str, after_us: int, end_us: int | None,
              read: tuple[np.ndarray, dict] | None = None) -> tuple[dict, int]:
    """The rows of store file ``path`` newer than ``after_us`` (and not after ``end_us``), and how
    many rows the file holds at or before ``after_us``. Rows as numpy arrays ``timestamp`` int64
    us and ``open high low close volume`` float64, NaN for a missing cell (unchecked). A file with
    exactly the contract-1 schema is cut in numpy (the usual case: only the new rows are
    touched); any other layout goes through :func:`.bars.normalise` whole. ``read``: the file's
    columns already read (:func:`_read_many`)."""
    if read is not None:
        t, cols = read
        return _after(t, cols, after_us, end_us)
    raw = read_file(path, small=True)
    if all(raw.schema.get(k) == v for k, v in STORE_SCHEMA.items()):
        t = raw["timestamp"].to_physical().to_numpy()
        cols = {k: raw[k].to_numpy() for k in BAR_KEYS}
    else:
        f = normalise(raw, str(path), sym, False, LoadReport())
        t = f["timestamp"].to_physical().to_numpy()
        cols = {k: f[k].to_numpy() for k in BAR_KEYS}
        cols["volume"] = np.where(f["_vol_missing"].to_numpy(), np.nan, cols["volume"])
    return _after(t, cols, after_us, end_us)


def _after(t: np.ndarray, cols: dict, after_us: int, end_us: int | None) -> tuple[dict, int]:
    """:func:`_read_new`'s result from a file's columns."""
    keep = t > after_us
    if end_us is not None:
        keep &= t <= end_us
    return ({"timestamp": t[keep].astype(np.int64), **{k: v[keep].astype(np.float64) for k, v in cols.items()}},
            int(np.count_nonzero(t <= after_us)))


def _clean(new: dict, prev_close: float) -> bool:
    """A quick screen of new rows: True when no check of contract 2 (rules 11-13) can flag them:
    increasing times, finite prices >= 0.01, open and close within low..high, volume > 0, and
    every close within x1/5..x5 of the one before (``prev_close``: the last stored bar's). Rows
    that fail it go through the full checks of :mod:`.bars` (which name the fault)."""
    o, h, lo, c, v = (new[k] for k in BAR_KEYS)
    closes = np.concatenate([[prev_close], c])
    with np.errstate(all="ignore"):
        ratio = closes[1:] / closes[:-1]
        return bool(np.all(np.diff(new["timestamp"]) > 0) and np.all(np.isfinite(new["open"]) & np.isfinite(h)
                    & np.isfinite(lo) & np.isfinite(c)) and np.all(lo >= SUB_PENNY) and np.all(h >= np.maximum(o, c))
                    and np.all(lo <= np.minimum(o, c)) and np.all(v > 0)
                    and np.all((ratio >= 1 / JUMP_FACTOR) & (ratio <= JUMP_FACTOR)))


def _checked(engine: Engine, rows: dict[str, dict], frames: dict[str, dict], paths: dict[str, Path],
             keep_suspicious: bool, ts_label: str) -> dict[str, dict]:
    """The new rows (``{SYMBOL: arrays}``, each failing :func:`_clean`) that pass the contract-2
    checks of :mod:`.bars` (rules 11-13, the suspicious check with the symbol's last stored bar
    before them). A symbol that fails gets an event ``data_gap`` naming the fault (its rows are
    not used; they are read again when its file changes); warnings become ``data_warning`` events."""
    syms = list(rows)
    sources = [str(paths[x]) for x in syms]

    def frame(get) -> pl.DataFrame:
        parts = [get(x) for x in syms]
        n = [len(a["timestamp"]) for a in parts]
        return pl.DataFrame({
            "symbol": np.repeat(syms, n), "timestamp": np.concatenate([a["timestamp"] for a in parts]),
            **{k: np.concatenate([a[k] for a in parts]) for k in BAR_KEYS},
            "_f": np.repeat(np.arange(len(syms), dtype=np.uint32), n)}).with_columns(
            pl.col("timestamp").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), pl.col(BAR_KEYS).fill_nan(None))

    new = frame(lambda x: rows[x]).with_columns(pl.lit(False).alias("_adj_bad"),
                                                  pl.col("volume").is_null().alias("_vol_missing"),
                                                  pl.col("volume").fill_null(0.0))
    bad = row_problems(new, sources)
    good = [x for x in syms if x not in bad]
    last = frame(lambda x: {k: frames[x][k][-1:] for k in ("timestamp", *BAR_KEYS)})
    both = pl.concat([last, new.select(last.columns)]).filter(pl.col("symbol").is_in(good)).sort("symbol", "timestamp")
    for sym, msg in suspicious_reasons(both, sources).items():
        if keep_suspicious:
            engine.event("warning", "data_warning", f"{msg}; kept (--keep-suspicious)", ts_label, symbol=sym)
        else:
            bad[sym] = msg
    for sym, msg in bad.items():
        engine.event("warning", "data_gap", f"new bars not used: {msg}", ts_label, symbol=sym)
    ok = new.filter(~pl.col("symbol").is_in(list(bad)))
    if ok.height:
        rep = LoadReport()
        data_warnings(ok, sources, rep)
        for text in rep.warnings:
            engine.event("warning", "data_warning", text, ts_label)
    return {x: {k: np.nan_to_num(v, nan=0.0) if k == "volume" else v for k, v in rows[x].items()}
            for x in syms if x not in bad}


def _new_bars(engine: Engine, paths: dict[str, Path], changed: list[str], frames: dict[str, dict], s: dict,
              ts_label: str) -> dict[str, dict]:
    """Read the new rows of the ``changed`` store files (:func:`_read_new`) and check them
    (:func:`_clean`, else :func:`_checked`). Returns ``{SYMBOL: {"timestamp": int64 us, "open"
    .. "volume": float64}}`` of the usable new rows."""
    end = parse_when(s["end"], "--end", end=True)
    end_us = int(end.timestamp() * 1_000_000) if end else None
    out, suspect = {}, {}
    read = _read_many({x: paths[x] for x in changed})
    for sym in changed:
        old = frames[sym]
        try:
            new, n_old = _read_new(paths[sym], sym, int(old["timestamp"][-1]), end_us, read.get(sym))
        except DataError as exc:
            engine.event("warning", "data_gap", f"{sym}: new bars not used: {exc}", ts_label)
            continue
        if n_old != old["timestamp"].size:
            engine.event("warning", "data_gap", f"{sym}: {paths[sym]} now holds {n_old:,} bar(s) up to the last one read "
                         f"instead of {old['timestamp'].size:,}; earlier bars are not read again", ts_label)
        if new["timestamp"].size:
            if _clean(new, float(old["close"][-1])):
                out[sym] = new
            else:
                suspect[sym] = new
    if suspect:
        out |= _checked(engine, suspect, frames, paths, s["keep_suspicious"], ts_label)
    return out


def _follow(writer: Writer, engine: Engine, panel: Panel, frames: dict[str, dict], s: dict, strat, params: dict,
            cfg: Config, stop: StopFlag, poll: float, max_idle: float | None, progress) -> int:
    """The follow loop. Per look at the store only what changed is read: a changed file's rows
    newer than the symbol's last bar are checked and appended to the in-memory bars, the
    symbol's targets (signal form; on its whole history, so exactly a replay's) or the weights
    (weights form; on the whole panel) are computed again, and the panel grows by the new rows."""
    symbols = engine.symbols
    paths = _store_paths(s, symbols)
    watch = StoreWatch(paths)
    lasts = np.array([int(frames[x]["timestamp"][-1]) for x in symbols], dtype=np.int64)
    done = 0
    idle_since = time.monotonic()
    first = True
    seen: dict[int, float] = {}  # timeline time -> when the session first saw it (monotonic)
    grace = max(30.0, 10 * poll)
    while not stop:
        changed = watch.changed()
        if changed:
            label = iso(engine.last_time or 0)
            fresh = _new_bars(engine, paths, changed, frames, s, label)
            if fresh:
                panel = _grow(engine, panel, frames, fresh, strat, params, cfg)
                for sym in fresh:
                    lasts[symbols.index(sym)] = frames[sym]["timestamp"][-1]
        if first or changed or seen:
            first = False
            last = engine.last_time
            fresh_times = panel.times[panel.times > last] if last is not None else panel.times
            now_mono = time.monotonic()
            for t in fresh_times.tolist():
                seen.setdefault(t, now_mono)
            todo = _ready(lasts, fresh_times, s["timeframe"], seen, grace)
            for t in todo.tolist():
                seen.pop(t, None)
            for t in todo:
                if stop:
                    break
                b = int(np.searchsorted(panel.times, t))
                row = engine.step(panel, b)
                write_bar(writer, engine, row)
                done += 1
                idle_since = time.monotonic()
                if progress:
                    progress(done, None)
        if not stop:
            write_bar(writer, engine, None)  # heartbeat (and any events) every poll
        if max_idle is not None and time.monotonic() - idle_since > max_idle:
            break
        stop.sleep(poll)
    return done


def _grow(engine: Engine, panel: Panel, frames: dict[str, dict], fresh: dict[str, dict], strat, params: dict,
          cfg: Config) -> Panel:
    """Append the new rows ``fresh`` to ``frames`` and ``panel`` (in place when they all come after
    the panel's last time, else the panel is built again) and recompute the strategy."""
    symbols = engine.symbols
    before = {sym: frames[sym]["timestamp"].size for sym in fresh}
    for sym, f in fresh.items():
        if engine.last_time is not None and f["timestamp"][0] <= engine.last_time:
            late = f["timestamp"][f["timestamp"] <= engine.last_time]
            engine.event("warning", "data_gap", f"{sym}: {late.size} bar(s) landed for times already processed "
                         f"(first {iso(int(late[0]))}); ignored", iso(engine.last_time))
        old = frames[sym]
        frames[sym] = _signals(strat, params, cfg, sym,
                               {k: np.concatenate([old[k], f[k]]) for k in ("timestamp", *BAR_KEYS)})
    times = np.unique(np.concatenate([f["timestamp"] for f in fresh.values()]))
    tail = times[times > panel.times[-1]] if panel.times.size else times
    inside = times[: times.size - tail.size]
    if inside.size and not np.isin(inside, panel.times).all():  # a new time inside the timeline: build again
        return _with_weights(build_panel(frames, symbols), strat, params, cfg)
    extend_panel(panel, tail)
    for sym in fresh:  # only the new rows: the engine reads a row's targets when it steps that row
        put_column(panel, symbols.index(sym), frames[sym], before[sym])
    return _with_weights(panel, strat, params, cfg)


def _with_weights(panel: Panel, strat, params: dict, cfg: Config) -> Panel:
    """``panel`` with the weights of a weights strategy computed on all of it (warnings dropped:
    they were given when the session started)."""
    if strat.form == "weights":
        panel.weights, _ = compute_weights(panel, strat, params, cfg.allow_short, cfg.leverage)
    return panel
