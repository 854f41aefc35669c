"""The console's HTML: one page layout (a stdlib `string.Template`) and small escaping helpers.

Why no template library: the pages are a handful of tables and forms, and every value that comes
from a caller (transcripts, caller IDs, messages) goes through `esc()` on its way into the page,
which is easy to check by eye here. No inline scripts or styles: the Content-Security-Policy the
console sends allows only its own /console/static files.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from string import Template

from gateway.console.auth import Session

NAV = (("/", "Live calls"), ("/console/history", "History"), ("/console/messages", "Messages"),
       ("/console/callers", "Caller memory"), ("/console/campaigns", "Campaigns"), ("/console/health", "Health"))

_LAYOUT = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · voicegate</title>
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
</head>
<body data-csrf="$csrf" data-role="$role">
<header>
<span class="brand">voicegate</span>
<nav>$nav</nav>
$account
</header>
<main id="page-$page">
<h1>$title</h1>
$flash
$body
</main>
</body>
</html>
""")


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, session: Session | None, *, page_id: str, flash: str = "") -> bytes:
    nav = "".join(f'<a href="{href}">{esc(label)}</a>' for href, label in NAV) if session else ""
    account = ""
    if session is not None:
        account = (f'<form method="post" action="/console/logout" class="logout">{csrf_field(session)}'
                   f'<span class="role">{esc(session.role)}</span><button type="submit">Log out</button></form>')
    return _LAYOUT.substitute(
        title=esc(title), nav=nav, account=account, page=esc(page_id), body=body,
        flash=f'<p class="flash">{esc(flash)}</p>' if flash else "",
        csrf=esc(session.csrf if session else ""), role=esc(session.role if session else ""),
    ).encode()


def csrf_field(session: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(session.csrf)}">'


def action_button(session: Session, action: str, label: str, *, css: str = "", confirm: str = "") -> str:
    """A one-button POST form (with the CSRF token); nothing for a read-only session."""
    if not session.can_act:
        return ""
    data = f' data-confirm="{esc(confirm)}"' if confirm else ""
    return (f'<form method="post" action="{esc(action)}" class="inline"{data}>{csrf_field(session)}'
            f'<button type="submit" class="{esc(css)}">{esc(label)}</button></form>')


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, css: str = "", empty: str = "Nothing yet.") -> str:
    """Cells are HTML already (escape values with `esc` when building them)."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f'<table class="{esc(css)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def when(unix: float | None) -> str:
    if unix is None or unix <= 0:
        return "-"
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
