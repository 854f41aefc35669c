// voicegate console: live updates by Server-Sent Events, a CSV file into the campaign form,
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
  csvFile();
});
