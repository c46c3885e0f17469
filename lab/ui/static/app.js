// The lab view: draws /api/steps and /api/runs/N (the CLI's run model) and follows
// /api/events. No framework, no build step; every string goes in as text, never as HTML.
"use strict";

const LANES = ["user", "agent", "IdP", "PDP", "MCP server", "document API"];
const state = { steps: [], current: null, run: null, openHop: null, token: null, busy: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    // Through the CSSOM: the page's CSP allows no inline style attributes.
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function readToken() {
  // The launch token arrives in the URL fragment (never sent to a server, never logged);
  // keep it for this tab and take it out of the address bar.
  const match = /token=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("lab-ui-token", match[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
  state.token = sessionStorage.getItem("lab-ui-token");
  document.getElementById("mode").textContent = state.token
    ? "You can run and reset steps from this page."
    : "Read-only: open the URL `lab ui` printed to run steps from here.";
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Lab-UI-Token": state.token || "" },
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await response.json(); } catch (e) { /* an empty body */ }
  return { status: response.status, data };
}

function statusClass(status) { return String(status || "not run").replace(/\s+/g, "-"); }

function drawSteps() {
  const list = document.getElementById("steps");
  list.replaceChildren();
  for (const step of state.steps) {
    const current = state.current === step.number;
    list.append(el("li", {},
      el("button", {
        type: "button", "data-step": step.number, "aria-current": current ? "true" : "false",
        onclick: () => selectStep(step.number),
      },
      el("span", { class: `status ${statusClass(step.status)}` }, step.status),
      ` ${step.number}. ${step.title}`)));
  }
}

let stepsAsked = 0;

async function loadSteps() {
  // Live updates and the end of a run both ask; an answer to an older question must not
  // redraw over a newer one (step 20 back to "not run" after the run said all passed).
  const asked = ++stepsAsked;
  const data = await getJson("/api/steps");
  if (asked !== stepsAsked) return;
  state.steps = data ? data.steps : [];
  drawSteps();
}

async function selectStep(number) {
  state.current = number;
  state.openHop = null;
  drawSteps();
  const step = state.steps.find((s) => s.number === number);
  document.getElementById("step-heading").textContent = `Step ${number}: ${step.title}`;
  document.getElementById("step-teaches").textContent = step.teaches || "";
  document.getElementById("step-opening").textContent = step.opening || "";
  document.getElementById("run-step").disabled = !state.token;
  document.getElementById("reset-step").disabled = !state.token;
  document.getElementById("token-detail").hidden = true;
  await loadRun();
}

async function loadRun() {
  if (state.current === null) return;
  state.run = await getJson(`/api/runs/${state.current}`);
  drawRun();
}

function drawRun() {
  const sequence = document.getElementById("sequence");
  const checks = document.getElementById("checks");
  sequence.replaceChildren();
  checks.replaceChildren();
  document.getElementById("hop-detail").hidden = true;
  const run = state.run;
  drawLineage(run);
  if (!run) {
    sequence.append(el("p", {}, "This step has not run yet."));
    return;
  }
  sequence.setAttribute("data-status", run.status);
  LANES.forEach((lane, i) => sequence.append(
    el("div", { class: "lane", style: `grid-column: ${i + 1}` }, lane)));
  const hops = run.sequence || [];
  if (!hops.length) {
    sequence.append(el("p", { style: "grid-column: 1 / -1" },
      "This step makes no calls of the chain (its checks are below)."));
  }
  hops.forEach((hop, i) => sequence.append(hopButton(hop, i)));
  for (const check of run.checks || []) {
    const text = `${check.action}: ${check.check}` + (check.passed ? "" :
      ` — got ${JSON.stringify(check.actual)}${check.why ? " (" + check.why + ")" : ""}`);
    checks.append(el("li", { class: check.passed ? "passed" : "failed" }, text));
  }
  if (state.openHop !== null && hops[state.openHop]) openHop(state.openHop);
}

function hopButton(hop, i) {
  const from = LANES.indexOf(hop.from), to = LANES.indexOf(hop.to);
  const left = Math.min(from, to), right = Math.max(from, to);
  const toRight = to >= from;
  const refused = Boolean(hop.refusal) || (typeof hop.status === "number" && hop.status >= 400);
  const code = hop.status === null || hop.status === undefined ? "no answer" : hop.status;
  // The arrowhead sits at the receiving lane's end of the line.
  const head = (side) => el("span", { class: "head", "aria-hidden": "true" },
    side === "left" ? (toRight ? "" : "◀") : (toRight ? "▶" : ""));
  const button = el("button", {
    type: "button",
    class: `hop${toRight ? "" : " left"}${refused ? " refused" : ""}`,
    style: `grid-column: ${left + 1} / ${right + 2}`,
    "data-hop": i, "data-from": hop.from, "data-to": hop.to,
    "aria-expanded": "false", "aria-controls": "hop-detail",
    "aria-label": `${hop.from} to ${hop.to}: ${hop.call}, status ${code}` +
      (hop.refusal ? `, refused: ${hop.refusal}` : ""),
    onclick: () => openHop(i),
  }, head("left"),
  el("span", { class: "label" }, `${hop.call} `, el("span", { class: "code" }, `(${code})`),
    hop.refusal ? el("span", { class: "refusal" }, hop.refusal) : null),
  head("right"));
  return button;
}

function kvTable(caption, data) {
  const table = el("table", { class: "kv" }, el("caption", {}, caption));
  for (const [key, value] of Object.entries(data || {})) {
    const shown = typeof value === "string" ? value : JSON.stringify(value);
    table.append(el("tr", {}, el("th", { scope: "row" }, key), el("td", {}, shown)));
  }
  return table;
}

function pretty(text) {
  if (!text) return "(empty)";
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
}

// The call a hop of the sequence stands for: one of the action's calls, or a call the MCP
// server made itself while answering it (``hop.hop`` indexes that call's ``hops``).
function callOf(hop) {
  const action = (state.run.actions || [])[hop.action] || { tokens: [], calls: [] };
  if (hop.index === null || hop.index === undefined) return { action, call: null };
  const outer = action.calls[hop.index];
  if (hop.hop === null || hop.hop === undefined) return { action, call: outer };
  return { action, call: (outer.hops || [])[hop.hop] || null };
}

function openHop(i) {
  state.openHop = i;
  const hop = state.run.sequence[i];
  document.querySelectorAll(".hop").forEach((b) =>
    b.setAttribute("aria-expanded", String(b.dataset.hop === String(i))));
  const { action, call } = callOf(hop);
  const body = document.getElementById("hop-body");
  body.replaceChildren();
  document.getElementById("hop-heading").textContent = `${hop.from} → ${hop.to}: ${hop.call}`;
  if (hop.refusal) body.append(el("p", { class: "refusal", role: "alert" }, `Refused: ${hop.refusal}`));
  if (action.say) body.append(el("p", {}, action.say));
  if (call) {
    if (call.by) {
      body.append(el("p", { class: "by" }, `The ${call.by} made this call itself while ` +
        "answering the agent's tools/call; it reported the request and the response in the " +
        "tool result (tokens redacted)."));
    }
    body.append(el("h3", {}, "Request"), el("p", { class: "request-line" }, `${call.method} ${call.url}`),
      kvTable("Request headers", call.request_headers),
      el("pre", { class: "request-body" }, pretty(call.request_body)),
      el("h3", {}, "Response"),
      el("p", { class: "response-line" }, call.status === null
        ? `No response: ${call.error || "the call failed"}`
        : `HTTP ${call.status} ${call.summary || ""}`),
      kvTable("Response headers", call.response_headers),
      el("pre", { class: "response-body" }, pretty(call.response_body)));
  } else {
    body.append(el("p", {}, "The MCP server made this call itself; its tool result reports the " +
      "token it used (in the lineage below)."));
  }
  const tokens = call && call.by ? (call.tokens || []) : (action.tokens || []);
  if (tokens.length) {
    body.append(el("h3", {}, call && call.by ? "Token the MCP server obtained (decoded)"
      : "Tokens of this action (decoded)"));
  }
  for (const token of tokens) body.append(tokenSection(token, "h4"));
  const detail = document.getElementById("hop-detail");
  detail.hidden = false;
}

function signatureLine(signature) {
  if (!signature) return el("p", { class: "sig unknown" }, "signature not checked");
  const who = signature.checked_by === "MCP server"
    ? " — checked by the MCP server, which holds this token" : "";
  if (signature.valid) {
    return el("p", { class: "sig valid", "data-valid": "true" },
      `✓ signature valid (kid ${signature.kid}, ${signature.keys || "the issuer's JWKS"})${who}`);
  }
  return el("p", { class: "sig invalid", "data-valid": "false" },
    `✗ signature not valid: ${signature.reason || "unknown reason"}` +
    (signature.keys ? ` (${signature.keys})` : "") + who);
}

function countdownText(exp) {
  const left = Math.round(exp - Date.now() / 1000);
  const span = (n) => {
    const h = Math.floor(n / 3600), m = Math.floor((n % 3600) / 60), sec = n % 60;
    return (h ? `${h} h ` : "") + (h || m ? `${m} min ` : "") + `${sec} s`;
  };
  return left >= 0 ? `expires in ${span(left)}` : `expired ${span(-left)} ago`;
}

function countdown(exp) {
  if (typeof exp !== "number") return el("p", { class: "countdown" }, "no exp claim: no expiry");
  const node = el("p", { class: "countdown", "data-exp": exp }, countdownText(exp));
  node.dataset.left = String(Math.round(exp - Date.now() / 1000));
  return node;
}

function tickCountdowns() {
  for (const node of document.querySelectorAll(".countdown[data-exp]")) {
    const exp = Number(node.dataset.exp);
    node.textContent = countdownText(exp);
    node.dataset.left = String(Math.round(exp - Date.now() / 1000));
    node.classList.toggle("expired", exp < Date.now() / 1000);
  }
}

function show(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function diffTable(token) {
  const diff = token.diff || [];
  const against = token.relation === "exchanged from"
    ? `the token it was exchanged from, ${token.previous}`
    : `the token the run saw before it, ${token.previous}`;
  if (!token.previous) return el("p", { class: "diff-none" }, "The first token of this run: nothing to compare with.");
  if (!diff.length) return el("p", { class: "diff-none" }, `No claim changed against ${against}.`);
  const table = el("table", { class: "kv diff" },
    el("caption", {}, `What changed against ${against}`),
    el("tr", {}, el("th", { scope: "col" }, "claim"), el("th", { scope: "col" }, "change"),
      el("th", { scope: "col" }, "before"), el("th", { scope: "col" }, "after")));
  for (const d of diff) {
    table.append(el("tr", { class: d.kind, "data-claim": d.claim },
      el("th", { scope: "row" }, d.claim), el("td", {}, d.kind),
      el("td", {}, d.kind === "added" ? "" : show(d.before)),
      el("td", {}, d.kind === "removed" ? "" : show(d.after))));
  }
  return table;
}

function tokenSection(token, level) {
  return el("section", { class: "token", "data-typ": token.typ, "data-label": token.label },
    el(level, {}, `${token.label} — typ ${token.typ}`),
    signatureLine(token.signature),
    countdown((token.claims || {}).exp),
    kvTable("Header", token.header), kvTable("Claims", token.claims),
    diffTable(token));
}

// The token a lineage entry points at (``where`` in the run model).
function tokenAt(where) {
  if (!where || !state.run) return null;
  const action = (state.run.actions || [])[where.action];
  if (!action) return null;
  if (where.call === undefined) return (action.tokens || [])[where.token] || null;
  const call = (action.calls || [])[where.call];
  const hop = call && (call.hops || [])[where.hop];
  return hop ? (hop.tokens || [])[where.token] || null : null;
}

function drawLineage(run) {
  const list = document.getElementById("lineage");
  list.replaceChildren();
  const entries = (run && run.lineage) || [];
  document.getElementById("lineage-empty").hidden = entries.length > 0;
  entries.forEach((entry, i) => {
    const from = entry.from ? ` ← exchanged from ${entry.from}` : "";
    list.append(el("li", {}, el("button", {
      type: "button", class: "link", "data-lineage": i, "data-typ": entry.typ,
      "aria-controls": "token-detail", disabled: entry.where ? null : "disabled",
      onclick: () => openToken(i),
    }, `${entry.label} (${entry.typ})`), el("span", { class: "from" }, from)));
  });
  if (!entries.length) document.getElementById("token-detail").hidden = true;
}

function openToken(i) {
  const entry = state.run.lineage[i];
  const token = tokenAt(entry.where);
  const body = document.getElementById("token-body");
  body.replaceChildren();
  document.getElementById("token-heading").textContent = `Token: ${entry.label} (${entry.typ})`;
  body.append(token ? tokenSection(token, "h3") : kvTable(entry.label, entry.claims));
  document.getElementById("token-detail").hidden = false;
}

function shortTime(iso) {
  // The time of day is enough within one run; the full stamp is the cell's title.
  const match = typeof iso === "string" ? /T(\d\d:\d\d:\d\d)/.exec(iso) : null;
  return match ? match[1] : "";
}

// The PDP answers each token request with the X-Correlation-Id it wrote into its audit record:
// the records of the shown step's calls (the MCP server's own included) are marked by it.
function stepCorrelationIds() {
  const ids = new Set();
  for (const action of (state.run && state.run.actions) || []) {
    for (const call of action.calls || []) {
      for (const c of [call, ...(call.hops || [])]) {
        const id = (c.response_headers || {})["x-correlation-id"];
        if (id) ids.add(id);
      }
    }
  }
  return ids;
}

async function loadAudit() {
  const verdict = document.getElementById("audit-verdict");
  const table = document.getElementById("audit-records");
  verdict.textContent = "Checking the audit trail (lab audit --verify)…";
  verdict.className = "";
  delete verdict.dataset.valid;
  const response = await fetch("/api/audit", { cache: "no-store" });
  let data = {};
  try { data = await response.json(); } catch (e) { /* no body */ }
  table.replaceChildren();
  if (!response.ok) {
    verdict.textContent = `The audit trail could not be read: ${data.error_description || "HTTP " + response.status}`;
    verdict.className = "audit-broken";
    return;
  }
  const records = data.records || [];
  if (data.valid) {
    verdict.textContent = "✓ verified: the whole hash chain is intact (lab audit --verify); " +
      `${records.length} record(s) of the current run, since the last lab reset.`;
    verdict.className = "audit-ok";
  } else {
    verdict.textContent = `✗ not verified: ${(data.problems || []).join("; ") || "the chain is broken"}`;
    verdict.className = "audit-broken";
  }
  verdict.dataset.valid = String(Boolean(data.valid));
  table.append(el("caption", {}, "The current run's decisions, newest last (◆: a call of the step shown above)"),
    el("tr", {}, ...["#", "time", "decision", "who", "action", "resource", "reason", "correlation id"]
      .map((h) => el("th", { scope: "col" }, h))));
  const mine = stepCorrelationIds();
  for (const r of records.slice(-200)) {
    const who = r.subject && r.subject !== r.client ? `${r.client} for ${r.subject}` : (r.client || "");
    const ofStep = mine.has(r.correlation_id);
    table.append(el("tr", {
      class: (r.decision === "allow" ? "allow" : "deny") + (ofStep ? " of-step" : ""),
      title: ofStep ? "decided for a call of the step shown above" : null,
    },
      el("td", {}, r.seq), el("td", { title: r.time || "" }, shortTime(r.time)),
      el("td", { class: "decision" }, r.decision), el("td", {}, who), el("td", {}, r.action || ""),
      el("td", {}, r.resource || ""), el("td", {}, r.reason || ""),
      el("td", {}, (r.correlation_id || "") + (ofStep ? " ◆ this step" : ""))));
  }
  const scroller = table.parentElement;
  scroller.scrollTop = scroller.scrollHeight;  // the newest decisions in view
}

async function runCurrent() {
  const status = document.getElementById("run-status");
  status.textContent = `Running step ${state.current}…`;
  const { status: code, data } = await post(`/api/steps/${state.current}/run`);
  if (code !== 200) {
    status.textContent = `Not run: ${data.error_description || "HTTP " + code}`;
    return;
  }
  status.textContent = `Step ${state.current}: ${data.run.status}`;
  state.openHop = null;
  await loadRun();  // the saved model, with each token's signature checked
  await loadSteps();
  await loadAudit();
}

async function runAll() {
  const status = document.getElementById("run-status");
  const buttons = ["run-all", "run-step", "reset-step"].map((id) => document.getElementById(id));
  status.textContent = "Running every step from the baseline (lab run)…";
  for (const button of buttons) button.disabled = true;
  buttons[0].dataset.running = "true";
  let answer;
  try {
    answer = await post("/api/run-all");
  } finally {
    delete buttons[0].dataset.running;
    buttons[0].disabled = !state.token;
    buttons[1].disabled = buttons[2].disabled = !state.token || state.current === null;
  }
  const { status: code, data } = answer;
  if (code !== 200) {
    status.textContent = `Not run: ${data.error_description || "HTTP " + code}`;
    return;
  }
  const passed = data.steps.filter((s) => s.status === "passed").length;
  // The list first: the verdict must never be on screen beside a list that still says "not run".
  await loadSteps();
  status.textContent = data.exit_code === 0
    ? `The whole lab: all ${data.steps.length} steps passed.`
    : `The whole lab stopped: ${passed} of ${data.steps.length} steps passed. ${data.message || ""}`;
  await loadRun();
  await loadAudit();
}

async function resetToCurrent() {
  const status = document.getElementById("run-status");
  status.textContent = `Resetting to just before step ${state.current}…`;
  const { status: code, data } = await post("/api/reset", { to: state.current });
  status.textContent = code === 200
    ? `The lab is ready for step ${state.current}.`
    : `Not reset: ${data.error_description || "HTTP " + code}`;
  await loadSteps();
}

// A step run from a terminal adds decisions too: the audit view follows, at most once every few
// seconds (each check is a `lab audit --verify`), and not while the whole lab runs from here
// (that run checks it once at its end).
let auditTimer = null;
function refreshAuditSoon() {
  if (auditTimer !== null || document.getElementById("run-all").dataset.running) return;
  auditTimer = setTimeout(async () => {
    auditTimer = null;
    await loadAudit();
  }, 3000);
}

function follow() {
  const events = new EventSource("/api/events");
  let first = true;
  events.addEventListener("changed", async () => {
    await loadSteps();
    await loadRun();
    if (!first) refreshAuditSoon();
    first = false;
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  readToken();
  document.getElementById("run-step").addEventListener("click", runCurrent);
  document.getElementById("reset-step").addEventListener("click", resetToCurrent);
  document.getElementById("run-all").addEventListener("click", runAll);
  document.getElementById("run-all").disabled = !state.token;
  document.getElementById("audit-check").addEventListener("click", loadAudit);
  setInterval(tickCountdowns, 1000);
  await loadSteps();
  const wanted = Number(new URLSearchParams(location.search).get("step"));
  if (wanted) await selectStep(wanted);
  follow();
  document.body.setAttribute("data-ready", "true");
  await loadAudit();
});
