"""Server-side HTML of the dashboard, session, runs and alerts pages (and their live fragments).

Every value from a ledger, a run folder or the store is passed through :func:`e` (``html.escape``
with quotes) before it reaches the page; CSS classes come from fixed allowlists, never from data.
The pages carry no inline script or style (the Content-Security-Policy forbids them): behaviour is
in ``/static/app.js``, which fetches these same fragments and the equity JSON.
"""
from __future__ import annotations

import html
import math
from urllib.parse import quote

from .common import age_text, human_time, money, pct

STATUS_CLASSES = {"running": "ok", "stopped": "muted", "halted": "bad", "failed": "bad"}
LEVEL_CLASSES = {"info": "muted", "warning": "warn", "error": "bad", "critical": "bad"}


def e(value) -> str:
    """Escaped text of any value (None -> empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _num(x, fmt: str = "{:,.2f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return fmt.format(x)


def qty(x) -> str:
    """A quantity: ``1,252`` when whole, else up to 4 decimals."""
    if x is None:
        return ""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.4f}".rstrip("0")


def price(x) -> str:
    """A price at its own precision (6 significant digits, no float noise)."""
    return "" if x is None else f"{x:,.6g}" if abs(x) < 1e6 else f"{x:,.2f}"


def signed_class(x) -> str:
    return "" if x is None else ("pos" if x > 0 else "neg" if x < 0 else "")


def session_href(s: dict) -> str:
    return f"/sessions/{quote(s['kind'])}/{quote(s['session'])}"


def page(title: str, body: str, active: str = "", data: dict | None = None) -> str:
    """A whole page: nav, ``body``, the stylesheet and app.js; ``data`` become data- attributes
    of ``<main>`` (escaped) for the script."""
    nav = "".join(f'<a href="{href}"' + (' class="active"' if key == active else "") + f">{label}</a>"
                  for key, href, label in (("sessions", "/", "Sessions"), ("runs", "/runs", "Backtest runs"),
                                           ("alerts", "/alerts", "Alerts")))
    attrs = "".join(f' data-{k}="{e(v)}"' for k, v in (data or {}).items())
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{e(title)} - GPT-Trader monitor</title><link rel=\"stylesheet\" href=\"/static/app.css\">"
            "<link rel=\"icon\" href=\"data:,\"></head><body>"
            f"<header><span class=\"brand\">GPT-Trader monitor</span><nav>{nav}</nav>"
            "<span id=\"live-status\" class=\"muted\"></span></header>"
            f"<main{attrs}>{body}</main><script src=\"/static/app.js\"></script></body></html>")


def sessions_fragment(sessions: list[dict]) -> str:
    """The sessions table (every paper and live session)."""
    if not sessions:
        return "<p class=\"muted\">No sessions in the ledger folder yet. Start one with " \
               "<code>python -m slices.paper_trade run --session NAME</code>.</p>"
    head = ("<tr><th>session</th><th>kind</th><th>status</th><th>trading</th><th class=\"r\">equity</th>"
            "<th class=\"r\">day P&amp;L</th><th class=\"r\">drawdown</th><th class=\"r\">exposure</th>"
            "<th class=\"r\">positions</th><th class=\"r\">open orders</th><th class=\"r\">heartbeat</th>"
            "<th>last bar</th><th>strategy</th></tr>")
    rows = []
    for s in sessions:
        link = f'<a href="{e(session_href(s))}">{e(s["session"])}</a>'
        if "error" in s:
            rows.append(f"<tr class=\"session\"><td>{link}</td><td>{e(s['kind'])}</td>"
                        f"<td colspan=\"11\" class=\"bad\">unreadable: {e(s['error'])}</td></tr>")
            continue
        st = s.get("status")
        hb_cls = "bad" if s.get("stale") else ""
        rows.append(
            f"<tr class=\"session\" data-session=\"{e(s['id'])}\"><td>{link}</td><td>{e(s['kind'])}</td>"
            f"<td><span class=\"badge {STATUS_CLASSES.get(st, 'muted')}\">{e(st)}</span></td>"
            f"<td><span class=\"badge {'bad' if s.get('trading_state') == 'halted' else 'warn' if s.get('trading_state') == 'reducing' else 'muted'}\">{e(s.get('trading_state'))}</span></td>"
            f"<td class=\"r\">{money(s.get('equity'))}</td>"
            f"<td class=\"r {signed_class(s.get('day_pnl'))}\">{money(s.get('day_pnl'))} <small>{pct(s.get('day_return'))}</small></td>"
            f"<td class=\"r {signed_class(s.get('drawdown'))}\">{pct(s.get('drawdown'))}</td>"
            f"<td class=\"r\">{pct(s.get('exposure'))}</td><td class=\"r\">{s.get('open_positions', 0):,}</td>"
            f"<td class=\"r\">{s.get('open_orders', 0):,}</td>"
            f"<td class=\"r {hb_cls}\">{e(age_text(s.get('heartbeat_age')))}{' stale' if s.get('stale') else ''}</td>"
            f"<td>{e(human_time(s.get('last_bar_time')))}</td><td>{e(s.get('strategy'))} {e(s.get('timeframe'))}</td></tr>")
    return f"<div class=\"scroll\"><table id=\"sessions\">{head}{''.join(rows)}</table></div>"


def dashboard(sessions: list[dict], refresh: float) -> str:
    """The ``/`` page."""
    body = ("<h1>Sessions</h1>"
            f"<div id=\"live\" data-fragment=\"/fragments/sessions\">{sessions_fragment(sessions)}</div>")
    return page("Sessions", body, "sessions", {"refresh": refresh})


def _table(cols: list[tuple[str, str]], rows: list[str], empty: str) -> str:
    if not rows:
        return f"<p class=\"muted\">{e(empty)}</p>"
    head = "".join(f"<th class=\"{c}\">{e(n)}</th>" for n, c in cols)
    return f"<div class=\"scroll\"><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def session_fragment(s: dict, d: dict) -> str:
    """Summary cards, positions, open orders, recent fills and events of one session."""
    if "error" in s or "error" in d:
        return f"<p class=\"bad\">unreadable ledger: {e(s.get('error') or d.get('error'))}</p>"
    cards = [("status", f"<span class=\"badge {STATUS_CLASSES.get(s.get('status'), 'muted')}\">{e(s.get('status'))}</span>"),
             ("trading", e(s.get("trading_state"))), ("equity", money(s.get("equity"))),
             ("cash", money(s.get("cash"))),
             ("day P&amp;L", f"<span class=\"{signed_class(s.get('day_pnl'))}\">{money(s.get('day_pnl'))} {pct(s.get('day_return'))}</span>"),
             ("drawdown", pct(s.get("drawdown"))), ("exposure", pct(s.get("exposure"))),
             ("heartbeat", f"<span class=\"{'bad' if s.get('stale') else ''}\">{e(age_text(s.get('heartbeat_age')))}"
                           f"{' stale' if s.get('stale') else ''}</span>"),
             ("last bar", e(human_time(s.get("last_bar_time")))), ("fills", f"{s.get('fills', 0):,}"),
             ("rejects", f"{s.get('rejects', 0):,}"), ("risk blocks", f"{s.get('risk_blocks', 0):,}")]
    card_html = "".join(f"<div class=\"card\"><div class=\"k\">{k}</div><div class=\"v\">{v}</div></div>" for k, v in cards)
    pos = [f"<tr><td>{e(p['symbol'])}</td><td class=\"r\">{qty(p['qty'])}</td><td class=\"r\">{price(p['avg_price'])}</td>"
           f"<td class=\"r\">{price(p['mark_price'])}</td><td class=\"r\">{money(p['value'])}</td>"
           f"<td class=\"r {signed_class(p['unrealized'])}\">{money(p['unrealized'])}</td>"
           f"<td class=\"r {signed_class(p['realized_pnl'])}\">{money(p['realized_pnl'])}</td></tr>" for p in d["positions"]]
    orders = [f"<tr><td>{e(o['id'])}</td><td>{e(o['symbol'])}</td><td>{e(o['side'])}</td><td>{e(o['type'])}</td>"
              f"<td class=\"r\">{qty(o['qty'])}</td><td class=\"r\">{qty(o['filled_qty'])}</td>"
              f"<td class=\"r\">{price(o['limit_price'])}</td><td class=\"r\">{price(o['stop_price'])}</td>"
              f"<td>{e(o['status'])}</td><td>{e(o['reason'])}</td></tr>" for o in d["open_orders"]]
    fills = [f"<tr><td>{e(human_time(f['time']))}</td><td>{e(f['symbol'])}</td><td>{e(f['side'])}</td>"
             f"<td class=\"r\">{qty(f['qty'])}</td><td class=\"r\">{price(f['price'])}</td>"
             f"<td class=\"r\">{money(f['commission'])}</td><td>{e(f['order_id'])}</td></tr>" for f in d["fills"]]
    events = [f"<tr class=\"event\"><td>{e(human_time(v['time']))}</td><td><span class=\"badge {LEVEL_CLASSES.get(v['level'], 'muted')}\">"
              f"{e(v['level'])}</span></td><td>{e(v['kind'])}</td><td class=\"msg\">{e(v['message'])}</td></tr>" for v in d["events"]]
    return (f"<div class=\"cards\">{card_html}</div>"
            "<h2>Positions</h2>" + _table([("symbol", ""), ("qty", "r"), ("avg price", "r"), ("mark", "r"), ("value", "r"),
                                           ("unrealized", "r"), ("realized", "r")], pos, "No open positions.")
            + "<h2>Open orders</h2>" + _table([("id", ""), ("symbol", ""), ("side", ""), ("type", ""), ("qty", "r"),
                                               ("filled", "r"), ("limit", "r"), ("stop", "r"), ("status", ""), ("reason", "")],
                                              orders, "No open orders.")
            + "<h2>Recent fills</h2>" + _table([("time", ""), ("symbol", ""), ("side", ""), ("qty", "r"), ("price", "r"),
                                                ("commission", "r"), ("order", "")], fills, "No fills yet.")
            + "<h2>Events</h2>" + _table([("time", ""), ("level", ""), ("kind", ""), ("message", "")], events, "No events."))


def session_page(s: dict, d: dict, refresh: float) -> str:
    """The ``/sessions/<kind>/<name>`` page: charts (drawn by app.js) and the live fragment."""
    base = session_href(s)
    title = f"{s['kind']}/{s['session']}"
    strat = "" if "error" in s else f"{e(s.get('strategy'))} {e(s.get('timeframe'))} {e(', '.join(map(str, s.get('symbols') or [])))}"
    body = (f"<h1>{e(title)}</h1><p class=\"muted\">{strat}</p>"
            "<div class=\"charts\"><figure><figcaption>Equity <span id=\"equity-last\" class=\"muted\"></span></figcaption>"
            "<svg id=\"equity-chart\" class=\"chart\" viewBox=\"0 0 600 220\" preserveAspectRatio=\"none\" role=\"img\" "
            "aria-label=\"equity chart\"></svg></figure>"
            "<figure><figcaption>Drawdown <span id=\"drawdown-last\" class=\"muted\"></span></figcaption>"
            "<svg id=\"drawdown-chart\" class=\"chart\" viewBox=\"0 0 600 160\" preserveAspectRatio=\"none\" role=\"img\" "
            "aria-label=\"drawdown chart\"></svg></figure></div>"
            f"<div id=\"live\" data-fragment=\"/fragments{e(base)}\">{session_fragment(s, d)}</div>")
    return page(title, body, "sessions", {"refresh": refresh, "equity": f"/api{base}/equity"})


def runs_page(runs: list[dict], root: str) -> str:
    """The ``/runs`` page: backtest run folders, newest first, with links to their reports."""
    rows = []
    for r in runs:
        name = e(r["name"])
        link = f"<a href=\"/runs/{e(quote(r['name']))}/report.html\">{name}</a>" if r.get("has_report") else name
        if "error" in r:
            rows.append(f"<tr><td>{link}</td><td colspan=\"8\" class=\"bad\">{e(r['error'])}</td></tr>")
            continue
        warn = r.get("warnings") or []
        rows.append(f"<tr><td>{link}</td><td>{e(r.get('strategy'))}</td><td>{e(', '.join(map(str, r.get('symbols') or []))[:80])}</td>"
                    f"<td>{e(r.get('timeframe'))}</td><td>{e(human_time(r.get('start')))} .. {e(human_time(r.get('end')))}</td>"
                    f"<td class=\"r {signed_class(r.get('total_return'))}\">{pct(r.get('total_return'))}</td>"
                    f"<td class=\"r\">{_num(r.get('sharpe'))}</td><td class=\"r\">{pct(r.get('max_drawdown'))}</td>"
                    f"<td class=\"{'warn' if warn else ''}\" title=\"{e(chr(10).join(warn))}\">{len(warn):,}</td></tr>")
    table = _table([("run", ""), ("strategy", ""), ("symbols", ""), ("timeframe", ""), ("span", ""),
                    ("total return", "r"), ("Sharpe", "r"), ("max drawdown", "r"), ("warnings", "")], rows,
                   f"No backtest runs under {root}.")
    return page("Backtest runs", f"<h1>Backtest runs</h1><p class=\"muted\">{e(root)}</p>{table}", "runs")


def alerts_fragment(active: list[dict], history: list[dict], critical: list[dict]) -> str:
    """Conditions firing, unacknowledged critical events and the recent alert history."""
    act = [f"<tr><td><span class=\"badge {LEVEL_CLASSES.get(a['severity'], 'muted')}\">{e(a['severity'])}</span></td>"
           f"<td>{e(a['rule'])}</td><td>{e(a['target'])}</td><td class=\"msg\">{e(a['message'])}</td>"
           f"<td>{e(human_time(a['since']))}</td></tr>" for a in active]
    crit = [f"<tr><td>{e(c['session'])}</td><td>{e(c['id'])}</td><td>{e(human_time(c['time']))}</td><td>{e(c['event_kind'])}</td>"
            f"<td class=\"msg\">{e(c['message'])}</td></tr>" for c in critical]
    hist = [f"<tr><td>{e(human_time(h['time']))}</td><td>{e(h['state'])}</td><td>{e(h['severity'])}</td><td>{e(h['rule'])}</td>"
            f"<td>{e(h['target'])}</td><td class=\"msg\">{e(h['message'])}</td>"
            f"<td>{e(', '.join(f'{k}: {v}' for k, v in (h.get('delivered') or {}).items()))}</td></tr>" for h in history]
    return ("<h2>Firing</h2>" + _table([("severity", ""), ("rule", ""), ("target", ""), ("message", ""), ("since", "")],
                                         act, "Nothing is firing.")
            + "<h2>Unacknowledged critical events</h2>"
            + _table([("session", ""), ("event", ""), ("time", ""), ("kind", ""), ("message", "")], crit,
                     "None. (Acknowledge with python -m slices.monitor ack.)")
            + "<h2>History</h2>" + _table([("time", ""), ("state", ""), ("severity", ""), ("rule", ""), ("target", ""),
                                           ("message", ""), ("delivered", "")], hist, "No alerts yet."))


def alerts_page(fragment: str, refresh: float) -> str:
    """The ``/alerts`` page around :func:`alerts_fragment`."""
    body = f"<h1>Alerts</h1><div id=\"live\" data-fragment=\"/fragments/alerts\">{fragment}</div>"
    return page("Alerts", body, "alerts", {"refresh": refresh})


def login_page(error: str = "") -> str:
    """The token form (only used when the server has a token)."""
    msg = f"<p class=\"bad\">{e(error)}</p>" if error else ""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Log in - GPT-Trader monitor</title>"
            "</head><body><h1>GPT-Trader monitor</h1>" + msg +
            "<form method=\"post\" action=\"/login\"><label>Token <input type=\"password\" name=\"token\" "
            "autocomplete=\"current-password\"></label> <button type=\"submit\">Log in</button></form></body></html>")
