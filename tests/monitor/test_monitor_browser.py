"""A real browser: headless Chromium (the Debian ``chromium`` package at /usr/bin/chromium, or
$CHROMIUM) driven by Playwright for Python loads the dashboard and a session page served by
``monitor serve``: the charts are drawn, no console error, no request leaves 127.0.0.1, hostile
strings stay text, and the page updates when a new equity row lands (no reload)."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from mon_helpers import HOSTILE, Server, append_equity, make_ledger

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
playwright_sync = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM}: install the Debian package (apt-get install chromium) or set $CHROMIUM",
                allow_module_level=True)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def wait_js(page, expression: str, timeout: float) -> None:
    """Poll a JavaScript expression (page.evaluate runs outside the page's CSP, which forbids the
    eval that wait_for_function needs) until it is true, at most ``timeout`` seconds."""
    for _ in range(int(timeout * 10)):
        if page.evaluate(expression):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"not true after {timeout} s: {expression}")


@pytest.fixture
def browser():
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


def test_dashboard_and_session_page_in_chromium(tmp_path, browser):
    root = tmp_path / "ledgers"
    now = datetime.now(timezone.utc)
    last = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    path = make_ledger(root, "demo", now=now, last_bar=last, equity=[100_000.0 + 250 * (i % 7) - 40 * i for i in range(60)],
                       positions=[("AAPL", 10.0, 150.0, 0.0, "2024-01-01T00:00:00.000000Z", 151.0)])
    make_ledger(root, "hostile", kind="live", now=now, last_bar=last, symbols=[HOSTILE],
                events=[("warning", "reject", f"{HOSTILE} rejected", 5)],
                positions=[(HOSTILE, 1.0, 1.0, 0.0, "2024-01-01T00:00:00.000000Z", 1.0)])
    (tmp_path / "store").mkdir()  # a named store must exist
    srv = Server("--ledgers", str(root), "--db", str(tmp_path / "m.sqlite"), "--no-alerts", "--refresh", "0.5",
                 "--runs", str(tmp_path / "runs"), "--store", str(tmp_path / "store"))
    try:
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone, the hardest layout
        errors, requests, dialogs = [], [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        page.goto(srv.url + "/", wait_until="load")
        rows = page.locator("#sessions tr.session")
        assert rows.count() == 2
        assert page.locator("#sessions").inner_text().count("running") == 2
        wait_js(page, "document.getElementById('live-status').textContent.startsWith('updated')", 10)

        page.goto(srv.url + "/sessions/paper/demo", wait_until="load")
        page.wait_for_selector("#equity-chart path.series", timeout=10_000)
        d = page.locator("#equity-chart path.series").get_attribute("d")
        assert d.count("L") == 59  # one segment per equity row
        assert page.locator("#drawdown-chart path.series").count() == 1
        before = page.locator("#equity-last").inner_text()
        assert "(60 bars)" in before

        append_equity(path, last + timedelta(minutes=30), 123_456.0, heartbeat=now)
        wait_js(page, "document.getElementById('equity-last').textContent.includes('(61 bars)')", 15)
        assert "123,456.00" in page.locator("#equity-last").inner_text()
        assert page.locator("#equity-chart path.series").get_attribute("d").count("L") == 60
        wait_js(page, "document.querySelector('#live').textContent.includes('123,456.00')", 15)

        page.goto(srv.url + "/sessions/live/hostile", wait_until="load")
        page.wait_for_timeout(1200)  # two refreshes of the fragment
        assert HOSTILE in page.locator("#live").inner_text()  # shown as text ...
        assert page.locator("#live script").count() == 0  # ... never as an element
        assert dialogs == []

        page.goto(srv.url + "/runs", wait_until="load")
        page.goto(srv.url + "/alerts", wait_until="load")
        assert errors == []
        assert requests and all(u.startswith(srv.url + "/") or u.startswith("data:") for u in requests), \
            [u for u in requests if not u.startswith(srv.url)]
    finally:
        srv.stop()
