"""The operator's other pages: messages taken, caller memory, health (campaigns: campaigns.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from gateway.console.auth import Session
from gateway.console.html import action_button, esc, table, when
from gateway.console.sources import ConsoleSources
from gateway.metrics import TURN_STAGES
from gateway.store.caller_ids import normalize_caller_id

if TYPE_CHECKING:
    from gateway.store import Store

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
