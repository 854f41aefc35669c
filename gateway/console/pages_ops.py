"""The operator's other pages: messages taken, caller memory, campaigns, health.

Campaigns go through the control API itself (`POST /campaigns`, `GET /campaigns/{id}`, and
`GET /campaigns` when the gateway offers a list), called in-process with the gateway's token, so
the console shows whatever the API reports and never depends on how campaigns run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gateway.console.auth import Session
from gateway.console.html import action_button, csrf_field, esc, table, when
from gateway.console.sources import ConsoleSources
from gateway.metrics import TURN_STAGES
from gateway.store.caller_ids import normalize_caller_id

if TYPE_CHECKING:
    from gateway.store import Store

# (method, path, JSON payload or None) -> (status, JSON answer): the control API, in-process
ControlApi = Callable[[str, str, Mapping[str, object] | None], tuple[int, Any]]

NO_MEMORY = '<p class="empty">Caller memory is off (no conversation agent, or memory.enabled is false).</p>'


# --------------------------------------------------------------------------- messages


def messages_body(store: Store | None) -> str:
    if store is None:
        return NO_MEMORY
    rows = [[esc(when(m.created_at)), esc(m.caller_name), esc(m.caller_id), esc(m.callback_number),
             f'<span class="message">{esc(m.text)}</span>', esc(m.agent),
             f'<a href="/console/history/{quote(m.call_id, safe="")}">call</a>' if m.call_id else ""]
            for m in reversed(store.messages())]
    return table(["taken", "name", "caller ID", "call back on", "message", "agent", ""], rows, css="messages",
                 empty="No message taken.")


# --------------------------------------------------------------------------- caller memory


def callers_body(store: Store | None, caller: str, recent: list[str], session: Session) -> str:
    if store is None:
        return NO_MEMORY
    form = (f'<form method="get" action="/console/callers" class="search"><label>Caller ID '
            f'<input name="caller" value="{esc(caller)}" placeholder="+15551234 or sip:2002@pbx"></label>'
            f'<button type="submit">Look up</button></form>')
    found = ""
    if caller:
        key = normalize_caller_id(caller)
        record = store.caller(key) if key else None
        if record is None:
            found = f'<p class="empty">Nothing is remembered about {esc(caller)}.</p>'
        else:
            facts = [("caller ID", record.caller_id), ("name", record.name), ("last reason", record.last_reason),
                     ("last call", when(record.last_call_at)), ("calls", record.call_count),
                     ("open requests", "; ".join(record.open_requests) or "none")]
            dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
            forget = action_button(session, f"/console/callers/{quote(record.caller_id, safe='')}/forget",
                                   "Forget this caller", css="danger",
                                   confirm="Delete everything remembered about this caller, and their messages?")
            found = f'<dl class="facts caller-record">{dl}</dl>{forget}'
    links = "".join(f'<li><a href="/console/callers?caller={quote(r, safe="")}">{esc(r)}</a></li>' for r in recent)
    recent_html = f"<h2>Recent callers</h2><ul class=\"recent\">{links}</ul>" if links else ""
    return form + found + recent_html


# --------------------------------------------------------------------------- campaigns


@dataclass
class CampaignDesk:
    """The campaigns started from this console (the API may not list them), newest last."""

    ids: list[str]

    def remember(self, campaign_id: str) -> None:
        if campaign_id not in self.ids:
            self.ids.append(campaign_id)
            del self.ids[:-50]

    def known(self, api: ControlApi) -> list[str]:
        status, answer = api("GET", "/campaigns", None)
        listed: list[str] = []
        if status == HTTPStatus.OK and isinstance(answer, dict) and isinstance(answer.get("campaigns"), list):
            listed = [str(c.get("campaign_id")) for c in answer["campaigns"] if isinstance(c, dict)]
        return list(dict.fromkeys(listed + self.ids[::-1]))


def campaigns_body(api: ControlApi | None, desk: CampaignDesk, agents: tuple[str, ...], session: Session) -> str:
    if api is None:
        return '<p class="empty">Campaigns need the control API: set <code>http.token</code>.</p>'
    form = ""
    if session.can_act:
        options = "".join(f'<option value="{esc(a)}">{esc(a)}</option>' for a in agents)
        form = (f'<form method="post" action="/console/campaigns" class="campaign">{csrf_field(session)}'
                f'<label>CSV file <input type="file" id="csv-file" accept=".csv,text/csv"></label>'
                f'<label>CSV (first column or "to": the number) <textarea name="csv" rows="5" required>'
                f'</textarea></label>'
                f'<label>Agent <select name="agent"><option value="">the account\'s</option>{options}</select></label>'
                f'<label>Concurrent calls <input type="number" name="concurrency" value="1" min="1" max="100"></label>'
                f'<label>Calls per second <input type="number" name="calls_per_second" value="1" min="0.01" '
                f'max="50" step="0.01"></label><button type="submit">Start campaign</button></form>')
    cards = []
    for campaign_id in desk.known(api):
        status, answer = api("GET", f"/campaigns/{quote(campaign_id, safe='')}", None)
        if status != HTTPStatus.OK or not isinstance(answer, dict):
            continue
        stop = action_button(session, f"/console/campaigns/{quote(campaign_id, safe='')}/stop", "Stop",
                             css="danger") if answer.get("running") else ""
        cards.append(f'<article class="campaign" data-campaign-id="{esc(campaign_id)}">'
                     f"<h2>Campaign {esc(campaign_id)} {stop}</h2>{_campaign_status(answer)}</article>")
    return form + ("".join(cards) or '<p class="empty">No campaign yet.</p>')


def _campaign_status(answer: Mapping[str, Any]) -> str:
    """Whatever the API reports: numbers and flags as facts, a progress bar, lists of rows as tables."""
    scalars = {k: v for k, v in answer.items() if not isinstance(v, dict | list) and k != "campaign_id"}
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in scalars.items())
    total, done = answer.get("total"), answer.get("completed", 0)
    bar = ""
    if isinstance(total, int) and total > 0 and isinstance(done, int):
        bar = f'<progress max="{total}" value="{done}">{done}/{total}</progress>'
    tables = []
    for key, value in answer.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for row in value for k in row))
            rows = [[esc(_cell(row.get(c))) for c in columns] for row in value]
            tables.append(f"<h3>{esc(key)}</h3>" + table(columns, rows, css="campaign-rows"))
    return f'{bar}<dl class="facts">{dl}</dl>' + "".join(tables)


def _cell(value: object) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else ("" if value is None else str(value))


# --------------------------------------------------------------------------- health


def health_body(sources: ConsoleSources, subscribers: int) -> str:
    try:
        ready = sources.control.readiness()
    except Exception as exc:  # the page must show something even when the gateway's state cannot be read
        ready = {"ready": False, "error": str(exc)}
    registrations = ready.get("registrations") if isinstance(ready.get("registrations"), dict) else {}
    servers = ready.get("model_servers") if isinstance(ready.get("model_servers"), dict) else {}
    verdict = "ready" if ready.get("ready") is True else "NOT ready"
    parts = [f'<p class="verdict {"ok" if ready.get("ready") is True else "bad"}" id="readiness">{verdict}</p>',
             "<h2>Gateway</h2>" + _facts({k: v for k, v in ready.items() if not isinstance(v, dict)}),
             "<h2>Registrations</h2>" + table(["account", "state"], [[esc(a), esc(s)] for a, s in
                                                                       registrations.items()],
                                              empty="No account to register (calls come directly)."),
             "<h2>Model servers</h2>" + (table(["engine", "problem"], [[esc(k), esc(v)] for k, v in servers.items()])
                                         if servers else '<p class="empty">Every model is loaded and reachable.</p>')]
    if sources.clock_stats is not None:
        stats = sources.clock_stats()
        parts.append("<h2>Media clock</h2>" + _facts({
            "ticks": stats.ticks, "skipped ticks": stats.skipped, "sessions": stats.sessions,
            "lateness p50": f"{stats.lateness_p50_ms:.2f} ms", "lateness p99": f"{stats.lateness_p99_ms:.2f} ms",
            "lateness max": f"{stats.lateness_max_ms:.2f} ms", "work p99": f"{stats.work_p99_ms:.2f} ms"}))
    parts.append("<h2>Metrics</h2>" + _facts(metrics_summary(sources)))
    parts.append(f'<p class="note">Live pages open: {subscribers}. Full metrics: <code>GET /metrics</code>.</p>')
    return "".join(parts)


def metrics_summary(sources: ConsoleSources) -> dict[str, str]:
    """A few figures from the metrics registry: calls by outcome, latencies (mean), errors."""
    samples: dict[str, float] = {}
    calls: dict[str, float] = {}
    for family in sources.metrics.registry.collect():
        for s in family.samples:
            if s.name == "voicegate_calls_total":
                key = s.labels.get("outcome", "?")
                calls[key] = calls.get(key, 0.0) + s.value
            elif s.name.endswith(("_sum", "_count", "_total")) or s.name == "voicegate_active_calls":
                label = ",".join(f"{v}" for v in s.labels.values())
                samples[f"{s.name}{'[' + label + ']' if label else ''}"] = s.value
    out = {"active calls": f"{samples.get('voicegate_active_calls', 0):.0f}",
           "calls ended": ", ".join(f"{k}: {v:.0f}" for k, v in sorted(calls.items())) or "none"}
    out["voice-to-voice (mean)"] = _mean(samples, "voicegate_voice_to_voice_seconds")
    for stage in TURN_STAGES:
        out[f"{stage} (mean)"] = _mean(samples, "voicegate_turn_stage_seconds", f"[{stage}]")
    out["barge-ins"] = f"{samples.get('voicegate_barge_ins_total', 0):.0f}"
    errors = {k: v for k, v in samples.items() if k.startswith("voicegate_model_errors_total")}
    out["model errors"] = ", ".join(f"{k.split('[')[-1].rstrip(']')}: {v:.0f}" for k, v in errors.items()) or "none"
    out["media clock lateness (mean p99 per report)"] = _mean(samples, "voicegate_media_clock_lateness_seconds")
    return out


def _mean(samples: Mapping[str, float], name: str, label: str = "") -> str:
    count = samples.get(f"{name}_count{label}", 0.0)
    if not count:
        return "no data"
    return f"{samples.get(f'{name}_sum{label}', 0.0) / count * 1000:.0f} ms over {count:.0f}"


def _facts(values: Mapping[str, object]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in values.items()) + "</dl>"
