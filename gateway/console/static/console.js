// voicegate console: live updates by Server-Sent Events (calls, a campaign's results), a CSV file into the campaign form,
// confirmations. No framework, no build step; everything from the page's own origin.
"use strict";

const STAGES = ["turn_decision_ms", "transcript_final_ms", "llm_first_token_ms", "first_clause_ms",
                "first_tts_audio_ms", "first_rtp_ms"];

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

function hangupForm(callId) {
  const form = el("form", {method: "post", action: "/console/calls/" + encodeURIComponent(callId) + "/hangup",
                           class: "inline", "data-confirm": "Hang up this call?"});
  form.appendChild(el("input", {type: "hidden", name: "csrf", value: document.body.dataset.csrf}));
  form.appendChild(el("button", {type: "submit", class: "danger"}, "Hang up"));
  return form;
}

function callCard(call) {
  const card = el("article", {class: "call", "data-call-id": call.call_id});
  const head = el("header");
  head.appendChild(el("strong", {class: "remote"}, call.remote || "unknown caller"));
  head.appendChild(el("span", {class: "agent"}, call.agent || ""));
  head.appendChild(el("span", {class: "direction"}, call.direction || ""));
  head.appendChild(el("span", {class: "duration", "data-started": String(call.started_at || 0)}, "0:00"));
  head.appendChild(el("span", {class: "state"}, call.state || ""));
  if (document.body.dataset.role === "admin") head.appendChild(hangupForm(call.call_id));
  card.appendChild(head);
  card.appendChild(el("ol", {class: "transcript"}));
  const table = el("table", {class: "latency"});
  const headRow = el("tr");
  for (const name of ["turn", "turn decision", "transcript", "LLM first token", "first clause", "TTS", "first RTP"]) {
    headRow.appendChild(el("th", {}, name));
  }
  table.appendChild(el("thead")).appendChild(headRow);
  table.appendChild(el("tbody"));
  card.appendChild(table);
  return card;
}

// Events of a call the page has no card for yet (the call list is compared once a second, the
// greeting is said at once): kept until its card appears.
const early = new Map();

function cardOf(callId) {
  for (const card of document.querySelectorAll("article.call")) {
    if (card.dataset.callId === callId) return card;
  }
  return null;
}

function showCalls(calls) {
  const section = document.getElementById("calls");
  const live = new Set(calls.map((c) => c.call_id));
  for (const card of section.querySelectorAll("article.call")) {
    if (!live.has(card.dataset.callId)) card.remove();
  }
  for (const call of calls) {
    let card = cardOf(call.call_id);
    if (!card) {
      section.appendChild(card = callCard(call));
      for (const replay of early.get(call.call_id) || []) replay();
      early.delete(call.call_id);
    }
    card.querySelector(".state").textContent = call.state || "";
  }
  const none = document.getElementById("no-calls");
  if (none) none.hidden = calls.length > 0;
  else if (!calls.length) section.before(el("p", {class: "empty", id: "no-calls"}, "No call is up."));
  tick();
}

function later(data, replay) {
  if (!early.has(data.call_id)) early.set(data.call_id, []);
  if (early.size <= 100) early.get(data.call_id).push(replay);
}

function addLine(data, who) {
  const card = cardOf(data.call_id);
  if (!card) return later(data, () => addLine(data, who));
  const cls = who + (data.interrupted ? " interrupted" : "");
  const li = el("li", {class: cls});
  li.appendChild(el("span", {class: "who"}, who));
  li.appendChild(document.createTextNode(" " + data.text));
  const list = card.querySelector(".transcript");
  list.appendChild(li);
  list.scrollTop = list.scrollHeight;
}

function addTurn(data) {
  const card = cardOf(data.call_id);
  if (!card) return later(data, () => addTurn(data));
  const row = el("tr", {class: data.cancelled ? "cancelled" : ""});
  row.appendChild(el("td", {}, String(data.turn)));
  for (const key of STAGES) {
    const v = data.stages[key];
    row.appendChild(el("td", {}, v === null || v === undefined ? "-" : Math.round(v) + " ms"));
  }
  card.querySelector(".latency tbody").appendChild(row);
}

function tick() {
  const now = Date.now() / 1000;
  for (const span of document.querySelectorAll(".duration[data-started]")) {
    const started = parseFloat(span.dataset.started);
    if (started > 0) span.textContent = clock(now - started);
  }
}

function live() {
  const status = document.getElementById("stream-status");
  const source = new EventSource("/console/events");
  source.addEventListener("calls", (e) => {
    const calls = JSON.parse(e.data);
    if (!status.dataset.started) {  // a (re)connect replays each live call's transcript: start clean
      for (const list of document.querySelectorAll("article.call .transcript, article.call .latency tbody")) {
        list.replaceChildren();
      }
      status.dataset.started = "1";
    }
    showCalls(calls);
  });
  source.addEventListener("ready", () => { status.textContent = "Live updates: on"; });
  source.addEventListener("caller", (e) => addLine(JSON.parse(e.data), "caller"));
  source.addEventListener("bot", (e) => addLine(JSON.parse(e.data), "bot"));
  source.addEventListener("turn", (e) => addTurn(JSON.parse(e.data)));
  source.addEventListener("ended", (e) => {
    const data = JSON.parse(e.data);
    const card = cardOf(data.call_id);
    if (card) card.classList.add("ended");
    early.delete(data.call_id);
  });
  source.addEventListener("resync", () => { delete status.dataset.started; });
  source.addEventListener("busy", (e) => { status.textContent = "Live updates: " + JSON.parse(e.data).error; });
  source.onerror = () => {
    status.textContent = "Live updates: reconnecting…";
    delete status.dataset.started;
  };
  setInterval(tick, 1000);
}

// A campaign's page: progress and per-contact results from its event stream, drawn with the same
// columns as gateway/console/campaign_page.py's result_cells.
const FACTS = {"state": "state", "contacts": "total", "done": "done", "calls up": "active",
               "waiting to retry": "scheduled", "not tried yet": "not_attempted", "calls placed": "started"};

function resultRow(c) {
  const row = el("tr", {"data-row": String(c.row)});
  const next = (c.next_attempt_at || "").replace("T", " ").replace("+00:00", " UTC");
  const cells = [c.row, c.name || "", c.to, c.status, c.outcome || "", c.amd || "", c.attempts,
                 c.duration_s === null || c.duration_s === undefined ? "-" : clock(c.duration_s), next];
  for (const value of cells) row.appendChild(el("td", {}, String(value === null || value === undefined ? "" : value)));
  const link = el("td");
  if (c.call_id) {
    link.appendChild(el("a", {class: "call-link", href: "/console/history/" + encodeURIComponent(c.call_id)},
                        "call & transcript"));
  }
  row.appendChild(link);
  return row;
}

function showProgress(status) {
  const bar = document.getElementById("campaign-progress");
  if (bar) { bar.max = status.total; bar.value = status.done; bar.textContent = status.done + "/" + status.total; }
  for (const [label, key] of Object.entries(FACTS)) {
    const dd = document.querySelector('dd[data-fact="' + label + '"]');
    const value = status[key];
    if (dd) dd.textContent = value === null || value === undefined ? "-" : String(value);
  }
  const outcomes = document.querySelector('dd[data-fact="outcomes"]');
  if (outcomes) {
    const parts = Object.entries(status.outcomes || {}).map(([k, v]) => k + ": " + v);
    outcomes.textContent = parts.length ? parts.join(", ") : "-";
  }
}

function campaignLive() {
  const view = document.querySelector("section.campaign-view");
  const status = document.getElementById("stream-status");
  const source = new EventSource("/console/campaigns/" + encodeURIComponent(view.dataset.campaignId) + "/events");
  source.addEventListener("progress", (e) => {
    const data = JSON.parse(e.data);
    showProgress(data.status);
    const body = document.querySelector("table.results tbody");
    if (body) {  // only the contacts that changed come: replace each one's row, by its number
      const rows = new Map(Array.from(body.rows, (tr) => [tr.cells[0].textContent, tr]));
      for (const contact of data.contacts) {
        const old = rows.get(String(contact.row));
        if (old) old.replaceWith(resultRow(contact));
        else body.appendChild(resultRow(contact));
      }
    }
    status.textContent = "Live updates: on";
  });
  source.addEventListener("done", (e) => {
    status.textContent = "Campaign " + JSON.parse(e.data).state + ": no more updates";
    for (const form of view.querySelectorAll("form.inline")) form.remove();
    source.close();
  });
  source.addEventListener("failed", (e) => {
    status.textContent = "Live updates: " + JSON.parse(e.data).error;
    source.close();
  });
  source.onerror = () => { status.textContent = "Live updates: reconnecting…"; };
}

function csvFile() {
  const input = document.getElementById("csv-file");
  if (!input) return;
  input.addEventListener("change", () => {
    const file = input.files[0];
    if (!file) return;
    file.text().then((text) => { input.form.querySelector("textarea[name=csv]").value = text; });
  });
}

document.addEventListener("submit", (e) => {
  const question = e.target.dataset && e.target.dataset.confirm;
  if (question && !window.confirm(question)) e.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("page-live")) live();
  if (document.getElementById("page-campaign")) campaignLive();
  csvFile();
});
