// The tsunagi dashboard: reads /status every second and /v1/dlq every few seconds, and acts
// through the admin API's /v1 endpoints. Every cell is set as text (never parsed as markup):
// errors and targets come from upstreams.
"use strict";

const STATUS_EVERY_MS = 1000;
const DLQ_EVERY_MS = 2000;
const DLQ_SHOWN = 200;

const $ = (id) => document.getElementById(id);
let previous = null; // { at: ms, calls: Map(connector → calls) } for the rates

function token() {
  return sessionStorage.getItem("tsunagi-token") || "";
}

async function api(method, path, body) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* a plain-text answer */ }
  return { ok: response.ok, status: response.status, json, text };
}

function say(text, good) {
  const message = $("message");
  message.textContent = text;
  message.className = "shown " + (good ? "good" : "bad");
}

function why(result) {
  if (result.json && result.json.error) return result.json.error;
  if (result.status === 401) return "the admin token is missing or wrong";
  return (result.text || "").trim() || "HTTP " + result.status;
}

async function act(label, method, path, body) {
  try {
    const result = await api(method, path, body);
    if (result.ok) {
      say(label + ": done" + summary(result.json), true);
    } else {
      say(label + ": refused (HTTP " + result.status + "): " + why(result), false);
    }
    refreshStatus();
    refreshDeadLetters();
  } catch (error) {
    say(label + ": the host did not answer (" + error + ")", false);
  }
}

function summary(json) {
  if (!json) return "";
  if (Array.isArray(json.connectors)) {
    const parts = json.connectors.map((c) => c.connector + " " + c.outcome.replace("_", " "));
    return parts.length ? " — " + parts.join(", ") : " — nothing changed";
  }
  if (typeof json.done === "number") {
    const missing = json.missing && json.missing.length ? ", not dead: " + json.missing.join(", ") : "";
    return " — " + json.done + " entr" + (json.done === 1 ? "y" : "ies") + missing;
  }
  return "";
}

function button(label, testid, onClick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.dataset.testid = testid;
  b.addEventListener("click", onClick);
  return b;
}

// Keeps one row per key, setting cells as text; the last cell holds the row's buttons, made
// again only when what they are changes (so a click is never lost to a refresh).
function syncRows(tbody, rows) {
  const kept = new Map();
  for (const tr of tbody.querySelectorAll("tr[data-key]")) kept.set(tr.dataset.key, tr);
  const empty = tbody.querySelector("tr.none");
  if (empty) empty.remove();
  for (const row of rows) {
    let tr = kept.get(row.key);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.key = row.key;
      if (row.testid) tr.dataset.testid = row.testid;
      for (let i = 0; i < row.cells.length + (row.actions ? 1 : 0); i++) tr.appendChild(document.createElement("td"));
    }
    kept.delete(row.key);
    row.cells.forEach((cell, i) => {
      const td = tr.children[i];
      const text = String(cell.text !== undefined ? cell.text : cell);
      if (td.textContent !== text) td.textContent = text;
      td.className = cell.className || (typeof cell === "number" ? "n" : "");
    });
    if (row.actions) {
      const td = tr.children[row.cells.length];
      const signature = row.actions.map((a) => a[1]).join(" ");
      if (td.dataset.signature !== signature) {
        td.replaceChildren(...row.actions.map((a) => button(a[0], a[1], a[2])));
        td.dataset.signature = signature;
        td.className = "actions";
      }
    }
    tbody.appendChild(tr); // in order
  }
  for (const tr of kept.values()) tr.remove();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "none";
    const td = document.createElement("td");
    td.colSpan = 20;
    td.className = "empty";
    td.textContent = "none";
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
}

function span(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 100) return s + " s";
  if (s < 6000) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h";
}
const ago = (at, now) => span(now - at) + " ago";
function fromNow(at, now) {
  const wait = at - now;
  if (wait <= 0) return "now";
  if (wait < 1000) return "in under 1 s";
  return "in " + span(wait);
}

function explainTrip(trip, now) {
  let reason;
  switch (trip.cause) {
    case "failure_rate":
      reason = `${trip.failures} of ${trip.calls} calls failed (${trip.failure_rate.toFixed(0)}% ≥ ${trip.failure_rate_threshold.toFixed(0)}%)`;
      break;
    case "slow_call_rate":
      reason = `${trip.slow} of ${trip.calls} calls slow (${trip.slow_rate.toFixed(0)}% ≥ ${trip.slow_rate_threshold.toFixed(0)}%)`;
      break;
    case "trial_calls":
      reason = `trial calls: ${trip.failures} of ${trip.calls} failed, ${trip.slow} slow`;
      break;
    case "trial_deadline":
      reason = "trial calls did not report in time";
      break;
    default:
      reason = trip.cause;
  }
  return `opened ${ago(trip.at, now)}: ${reason}`;
}

function nextAttempt(b, now) {
  if (b.state !== "open") return "";
  if (b.probing) return b.next_probe_at ? "next probe " + fromNow(b.next_probe_at, now) : "a probe decides";
  return b.retry_at ? "next trial call " + fromNow(b.retry_at, now) : "";
}

function upstream(u) {
  const codes = Object.entries(u.responses || {}).sort((a, b) => b[1] - a[1]).slice(0, 4);
  const parts = codes.map(([code, n]) => code + "×" + n);
  if (u.unanswered) parts.push("none×" + u.unanswered);
  return parts.join(" ") || "–";
}

function calls(c) {
  if (c.handler) return c.handler.jobs.done + c.handler.jobs.failed + c.handler.jobs.dead;
  return c.polls_ok + c.polls_failed;
}

function renderBreakers(breakers, now) {
  const holder = $("breakers");
  const names = Object.keys(breakers);
  if (names.length === 0) {
    holder.replaceChildren(Object.assign(document.createElement("p"), { className: "empty", textContent: "none declared" }));
    return;
  }
  const cards = names.map((name) => {
    const b = breakers[name];
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.testid = "breaker-" + name;
    const title = document.createElement("h3");
    const label = document.createElement("span");
    label.textContent = name;
    const badge = document.createElement("span");
    badge.className = "badge " + b.state;
    badge.dataset.testid = "breaker-" + name + "-state";
    badge.textContent = b.state.replace("_", "-");
    title.append(label, badge);
    const lines = [
      `window: ${b.window_calls} calls, ${b.failure_rate.toFixed(0)}% failed, ${b.slow_rate.toFixed(0)}% slow`,
      `permitted ${b.permitted_total}, rejected ${b.rejected_total}, ${b.transitions} state changes`,
      b.last_trip ? explainTrip(b.last_trip, now) : "never opened",
      nextAttempt(b, now),
      b.last_probe ? `last probe ${ago(b.last_probe[0], now)}: ${b.last_probe[1] ? "ok" : "failed"}` : "",
    ].filter(Boolean);
    card.append(title, ...lines.map((text, i) => {
      const p = document.createElement("p");
      p.textContent = text;
      if (i === 2 && b.last_trip) p.dataset.testid = "breaker-" + name + "-trip";
      return p;
    }));
    return card;
  });
  holder.replaceChildren(...cards);
}

function render(status) {
  const now = Date.parse(status.now) || Date.now();
  $("host").textContent = `${status.worker_id} · ${status.backend} · up since ${status.started_at}`;
  const rates = new Map();
  const counted = new Map(status.connectors.map((c) => [c.name, calls(c)]));
  if (previous && now > previous.at) {
    for (const [name, n] of counted) {
      if (previous.calls.has(name)) rates.set(name, ((n - previous.calls.get(name)) * 1000) / (now - previous.at));
    }
  }
  previous = { at: now, calls: counted };

  syncRows($("connectors").tBodies[0], status.connectors.map((c) => {
    const ok = c.handler ? c.handler.jobs.done : c.polls_ok;
    const failed = c.handler ? c.handler.jobs.failed + c.handler.jobs.dead : c.polls_failed;
    const actions = [
      ["Reload", "reload-" + c.name, () => act("reload " + c.name, "POST", `/v1/connectors/${encodeURIComponent(c.name)}/reload`)],
    ];
    if (c.previous_plugin) {
      actions.push(["Rollback", "rollback-" + c.name, () => act("rollback " + c.name, "POST", `/v1/connectors/${encodeURIComponent(c.name)}/rollback`)]);
    }
    if (c.paused) {
      actions.push(["Resume", "resume-" + c.name, () => act("resume " + c.name, "POST", `/v1/connectors/${encodeURIComponent(c.name)}/resume`)]);
    }
    const rate = rates.get(c.name);
    return {
      key: c.name,
      testid: "connector-" + c.name,
      cells: [
        c.name, c.role, c.plugin.sha256.slice(0, 12), c.plugin.code, c.targets, c.targets_due,
        c.in_flight, ok, failed, c.polls_deferred, c.items_new,
        { text: rate === undefined ? "–" : rate.toFixed(1), className: "n" },
        { text: c.latency.p50_ms.toFixed(1), className: "n" },
        upstream(c.upstream || {}),
        c.paused ? { text: "paused: " + c.paused.reason, className: "state-paused" } : "serving",
      ],
      actions,
    };
  }));

  renderBreakers(status.breakers || {}, now);

  syncRows($("budgets").tBodies[0], Object.entries(status.budgets || {}).map(([name, b]) => ({
    key: name,
    cells: [name, b.rate, b.per, b.waits || 0, { text: ((b.waited_ms || 0) / 1000).toFixed(1), className: "n" }, b.deferred || 0],
  })));

  const queues = status.connectors.filter((c) => c.handler).map((c) => {
    const h = c.handler;
    const path = `/v1/queues/${encodeURIComponent(h.queue)}/`;
    return {
      key: "handler:" + h.queue,
      cells: [h.queue, h.counts.queued, h.counts.leased, h.counts.done, h.counts.dead, h.paused ? "paused" : "running"],
      actions: [h.paused
        ? ["Resume", "resume-queue-" + h.queue, () => act("resume queue " + h.queue, "POST", path + "resume")]
        : ["Pause", "pause-queue-" + h.queue, () => act("pause queue " + h.queue, "POST", path + "pause")]],
    };
  });
  for (const sink of status.sinks || []) {
    queues.push({
      key: "sink:" + sink.name,
      cells: ["sink:" + sink.name, sink.queue.queued, sink.queue.leased, sink.queue.done, sink.queue.dead, "delivering"],
      actions: [],
    });
  }
  syncRows($("queues").tBodies[0], queues);

  const cluster = status.cluster;
  $("cluster-section").hidden = !cluster;
  if (cluster) {
    syncRows($("cluster").tBodies[0], cluster.hosts.map((h) => ({
      key: h.worker_id,
      cells: [h.worker_id + (h.this_host ? " (this host)" : ""), h.behind, h.heartbeat_age_ms, (h.differs_from_this_host || []).join(", ")],
    })));
  }

  const errors = status.connectors
    .flatMap((c) => (c.last_errors || []).map((e) => ({ connector: c.name, ...e })))
    .sort((a, b) => b.at - a.at)
    .slice(0, 20);
  syncRows($("errors").tBodies[0], errors.map((e, i) => ({
    key: i + ":" + e.connector + ":" + e.at + ":" + e.target,
    cells: [e.connector, ago(e.at, now), { text: e.target, className: "target" }, { text: e.error, className: "error" }],
  })));
}

function renderDeadLetters(listing) {
  const note = $("dlq-note");
  const counted = `${listing.targets} target(s), ${listing.jobs} job(s) given up on`;
  note.textContent = listing.entries.length > DLQ_SHOWN ? counted + `; the first ${DLQ_SHOWN} shown` : counted;
  syncRows($("dlq").tBodies[0], listing.entries.slice(0, DLQ_SHOWN).map((e) => ({
    key: e.entry,
    testid: "dlq-" + e.entry,
    cells: [
      e.entry, e.connector || e.queue || "", { text: e.target || "", className: "target" }, e.died_at, e.attempts,
      { text: e.last_error || "", className: "error" },
    ],
    actions: [
      ["Retry", "retry-" + e.entry, () => act("retry " + e.entry, "POST", "/v1/dlq/retry", { entries: [e.entry] })],
      ["Drop", "drop-" + e.entry, () => {
        if (window.confirm(`Delete ${e.entry} for good?`)) act("drop " + e.entry, "POST", "/v1/dlq/drop", { entries: [e.entry] });
      }],
    ],
  })));
}

let statusBusy = false;
async function refreshStatus() {
  if (statusBusy) return;
  statusBusy = true;
  try {
    const result = await api("GET", "/status");
    if (result.ok && result.json) {
      render(result.json);
    } else {
      $("host").textContent = "status: " + why(result);
    }
  } catch (error) {
    $("host").textContent = "the host does not answer (" + error + ")";
  } finally {
    statusBusy = false;
  }
}

let dlqBusy = false;
async function refreshDeadLetters() {
  if (dlqBusy) return;
  dlqBusy = true;
  try {
    const result = await api("GET", "/v1/dlq?limit=" + (DLQ_SHOWN + 1));
    if (result.ok && result.json) {
      renderDeadLetters(result.json);
    } else {
      $("dlq-note").textContent = result.status === 401
        ? "enter the admin token to see dead letters"
        : "dead letters: " + why(result);
    }
  } catch (error) {
    $("dlq-note").textContent = "the host does not answer (" + error + ")";
  } finally {
    dlqBusy = false;
  }
}

function setTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

document.addEventListener("DOMContentLoaded", () => {
  const input = $("token");
  input.value = token();
  input.addEventListener("change", () => {
    sessionStorage.setItem("tsunagi-token", input.value.trim());
    refreshStatus();
    refreshDeadLetters();
  });
  $("reload-all").addEventListener("click", () => act("reload", "POST", "/v1/reload"));
  $("retry-all").addEventListener("click", () => act("retry all dead letters", "POST", "/v1/dlq/retry", { all: true }));
  setTheme(localStorage.getItem("tsunagi-theme"));
  $("theme").addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === "dark"
      : window.matchMedia("(prefers-color-scheme: dark)").matches;
    const next = dark ? "light" : "dark";
    localStorage.setItem("tsunagi-theme", next);
    setTheme(next);
  });
  refreshStatus();
  refreshDeadLetters();
  setInterval(refreshStatus, STATUS_EVERY_MS);
  setInterval(refreshDeadLetters, DLQ_EVERY_MS);
});
