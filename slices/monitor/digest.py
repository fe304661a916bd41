"""The daily digest: per session P&L, fills and risk events of one UTC day.

Equity and fills are taken by their bar/fill time, events by their own time (SLICES.md
contract 4). Rendered as Markdown or HTML (escaped), or sent as an e-mail (text + HTML parts)
through the rules' ``[channels.email]``.
"""
from __future__ import annotations

from datetime import date

from . import ledgers as L
from .common import MonitorError, human_time, money, pct
from .pages import e


def parse_day(text: str) -> str:
    """``YYYY-MM-DD`` checked (MonitorError naming ``--day`` otherwise)."""
    try:
        return date.fromisoformat(text).isoformat()
    except (TypeError, ValueError):
        raise MonitorError(f"--day {text!r}: expected a date YYYY-MM-DD") from None


def collect(root, day: str) -> list[dict]:
    """One entry per session: ``id status`` and :func:`slices.monitor.ledgers.day_activity`'s
    keys (or ``error``)."""
    out = []
    for ref in L.discover(root):
        act = L.day_activity(ref, day)
        raw = L.read_summary(ref)
        out.append({"id": ref.id, "status": raw.get("status"), "trading_state": raw.get("trading_state"), **act})
    return out


def _md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def markdown(day: str, rows: list[dict]) -> str:
    """The digest as Markdown (pipes, angle brackets and newlines in ledger text neutralised)."""
    lines = [f"# GPT-Trader daily digest {day}", "", "| session | status | P&L | return | fills | traded | commission | risk events |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {_md_cell(r['id'])} | unreadable: {_md_cell(r['error'])} | | | | | | |")
            continue
        lines.append(f"| {_md_cell(r['id'])} | {_md_cell(r.get('status'))} | {money(r['pnl'])} | {pct(r['return'])} | "
                     f"{r['fills']:,} | {money(r['traded'])} | {money(r['commission'])} | {len(r['events']):,} |")
    if not rows:
        lines.append("| (no sessions) | | | | | | | |")
    for r in rows:
        if r.get("events"):
            lines += ["", f"## {_md_cell(r['id'])}: events", ""]
            lines += [f"- {human_time(v['time'])} **{_md_cell(v['level'])}** {_md_cell(v['kind'])}: {_md_cell(v['message'])}"
                      for v in r["events"]]
    return "\n".join(lines) + "\n"


def html(day: str, rows: list[dict]) -> str:
    """The digest as a self-contained HTML page (every ledger string escaped)."""
    body = [f"<h1>GPT-Trader daily digest {e(day)}</h1><table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">"
            "<tr><th>session</th><th>status</th><th>P&amp;L</th><th>return</th><th>fills</th><th>traded</th>"
            "<th>commission</th><th>risk events</th></tr>"]
    for r in rows:
        if "error" in r:
            body.append(f"<tr><td>{e(r['id'])}</td><td colspan=\"7\">unreadable: {e(r['error'])}</td></tr>")
            continue
        body.append(f"<tr><td>{e(r['id'])}</td><td>{e(r.get('status'))}</td><td align=\"right\">{money(r['pnl'])}</td>"
                    f"<td align=\"right\">{pct(r['return'])}</td><td align=\"right\">{r['fills']:,}</td>"
                    f"<td align=\"right\">{money(r['traded'])}</td><td align=\"right\">{money(r['commission'])}</td>"
                    f"<td align=\"right\">{len(r['events']):,}</td></tr>")
    body.append("</table>")
    for r in rows:
        if r.get("events"):
            body.append(f"<h2>{e(r['id'])}: events</h2><ul>" + "".join(
                f"<li>{e(human_time(v['time']))} <b>{e(v['level'])}</b> {e(v['kind'])}: {e(v['message'])}</li>"
                for v in r["events"]) + "</ul>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>GPT-Trader digest "
            f"{e(day)}</title></head><body>{''.join(body)}</body></html>\n")
