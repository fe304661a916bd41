"""Alert channels: stderr (log), webhooks (JSON POST, Slack/Discord/JSON payloads, retried with
exponential backoff) and e-mail (SMTP with STARTTLS).

Every sender raises :class:`ChannelError` (one line) when it gives up; :func:`deliver` catches it
per channel, so one broken channel never stops the others.
"""
from __future__ import annotations

import json
import os
import smtplib
import ssl
import sys
import time
import urllib.error
import urllib.request
from email.message import EmailMessage

from .alerts import Notification

USER_AGENT = "gpt-trader-monitor/1"


class ChannelError(Exception):
    """A channel that could not deliver after its retries (one line naming the channel)."""


def notification_text(n: Notification) -> str:
    """``[FIRING critical] session_state paper/demo: <message>`` (or RESOLVED / SUPPRESSED); a
    message that starts with the target (``paper/demo: status failed ...``) is not repeated."""
    msg = n.message.removeprefix(f"{n.target}: ")
    return f"[{n.state.upper()} {n.severity}] {n.rule} {n.target}: {msg}"


def webhook_payload(n: Notification, fmt: str) -> dict:
    """The JSON body: ``slack`` ``{"text"}``, ``discord`` ``{"content"}`` (cut to Discord's 2,000
    characters), ``json`` ``{"text", "content", "alert": {key rule severity target message state
    time}}``. Plain text: Slack and Discord render no HTML, and the markdown link syntax is not
    used, so hostile ledger strings stay inert."""
    text = notification_text(n)
    if fmt == "slack":
        return {"text": text}
    if fmt == "discord":
        return {"content": text[:2000]}
    alert = n.as_dict()
    alert.pop("history_id", None)
    return {"text": text, "content": text[:2000], "alert": alert}


def send_webhook(hook: dict, n: Notification, sleep=time.sleep) -> int:
    """POST the payload to ``hook["url"]``; retried ``hook["retries"]`` times after a connection
    error, a timeout, HTTP 429 or 5xx, waiting ``backoff x 2^i`` seconds (i = 0, 1, ...). Another
    4xx is not retried. Returns the number of attempts; raises ChannelError when it gives up."""
    body = json.dumps(webhook_payload(n, hook.get("format", "slack"))).encode()
    attempts = 1 + max(0, int(hook.get("retries", 3)))
    last = ""
    for i in range(attempts):
        req = urllib.request.Request(hook["url"], data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(req, timeout=float(hook.get("timeout", 5.0))) as resp:
                resp.read()
            return i + 1
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                break
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if i + 1 < attempts:
            sleep(float(hook.get("backoff", 1.0)) * 2 ** i)
    raise ChannelError(f"webhook {_safe_url(hook['url'])}: {last} after {i + 1} attempt(s)")


def _safe_url(url: str) -> str:
    """Scheme, host and port only: webhook paths carry secrets (Slack, Discord)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."


def send_email(cfg: dict, subject: str, text: str, html: str | None = None) -> None:
    """Send one message through ``cfg`` (the ``[channels.email]`` table): STARTTLS unless
    ``starttls = false`` (then no login is allowed), login when ``username`` is set (password
    from ``$<password_env>``), server certificate verified against the system CAs or
    ``ca_file``. Raises ChannelError (one line) on any failure."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg["from"]
    msg["To"] = ", ".join(cfg["to"])
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    where = f"smtp {cfg['host']}:{cfg['port']}"
    try:
        with smtplib.SMTP(cfg["host"], int(cfg["port"]), timeout=float(cfg.get("timeout", 10.0))) as smtp:
            smtp.ehlo()
            if cfg.get("starttls", True):
                ctx = ssl.create_default_context(cafile=cfg.get("ca_file") or None)
                smtp.starttls(context=ctx)
                smtp.ehlo()
            elif cfg.get("username"):
                raise ChannelError(f"{where}: refusing to send a password without STARTTLS")
            if cfg.get("username"):
                smtp.login(cfg["username"], os.environ.get(cfg.get("password_env") or "", ""))
            smtp.send_message(msg)
    except ChannelError:
        raise
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        first = str(exc).strip().splitlines()
        raise ChannelError(f"{where}: {type(exc).__name__}: {first[0] if first else ''}") from None


def deliver(channels: dict, notes: list[Notification], log: bool = True, sleep=time.sleep) -> list[dict]:
    """Send every notification through every configured channel; returns one dict per
    notification, channel name (``log``, ``webhook#1``, ``email``) -> ``ok`` or the error text.
    Errors are also printed as ``warning: ...`` on stderr."""
    results = []
    for n in notes:
        res: dict[str, str] = {}
        if log and channels.get("log", True):
            print(f"alert: {notification_text(n)}", file=sys.stderr, flush=True)
            res["log"] = "ok"
        for i, hook in enumerate(channels.get("webhook") or []):
            try:
                send_webhook(hook, n, sleep=sleep)
                res[f"webhook#{i + 1}"] = "ok"
            except ChannelError as exc:
                res[f"webhook#{i + 1}"] = str(exc)
                print(f"warning: alert not delivered: {exc}", file=sys.stderr, flush=True)
        email = channels.get("email")
        if email:
            try:
                send_email(email, f"GPT-Trader {n.state}: {n.rule} {n.target}", notification_text(n))
                res["email"] = "ok"
            except ChannelError as exc:
                res["email"] = str(exc)
                print(f"warning: alert not delivered: {exc}", file=sys.stderr, flush=True)
        results.append(res)
    return results
