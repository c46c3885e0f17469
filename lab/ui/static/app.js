// The lab view: draws /api/steps and /api/runs/N (the CLI's run model) and follows
// /api/events. No framework, no build step; every string goes in as text, never as HTML.
"use strict";

const LANES = ["user", "agent", "IdP", "PDP", "MCP server", "document API"];
const state = { steps: [], current: null, run: null, openHop: null, token: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
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

async function loadSteps() {
  const data = await getJson("/api/steps");
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
  // The arrowhead sits at the receiving lane's end of the line.
  const head = (side) => el("span", { class: "head", "aria-hidden": "true" },
    side === "left" ? (toRight ? "" : "◀") : (toRight ? "▶" : ""));
  const button = el("button", {
    type: "button",
    class: `hop${toRight ? "" : " left"}${refused ? " refused" : ""}`,
    style: `grid-column: ${left + 1} / ${right + 2}`,
    "data-hop": i, "data-from": hop.from, "data-to": hop.to,
    "aria-expanded": "false", "aria-controls": "hop-detail",
    "aria-label": `${hop.from} to ${hop.to}: ${hop.call}, status ${hop.status}` +
      (hop.refusal ? `, refused: ${hop.refusal}` : ""),
    onclick: () => openHop(i),
  }, head("left"),
  el("span", { class: "label" }, `${hop.call} `, el("span", { class: "code" }, `(${hop.status})`),
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

function openHop(i) {
  state.openHop = i;
  const hop = state.run.sequence[i];
  document.querySelectorAll(".hop").forEach((b) =>
    b.setAttribute("aria-expanded", String(b.dataset.hop === String(i))));
  const action = (state.run.actions || [])[hop.action] || { tokens: [] };
  const call = hop.index === null || hop.index === undefined ? null : action.calls[hop.index];
  const body = document.getElementById("hop-body");
  body.replaceChildren();
  document.getElementById("hop-heading").textContent = `${hop.from} → ${hop.to}: ${hop.call}`;
  if (hop.refusal) body.append(el("p", { class: "refusal", role: "alert" }, `Refused: ${hop.refusal}`));
  if (action.say) body.append(el("p", {}, action.say));
  if (call) {
    body.append(el("h3", {}, "Request"), el("p", {}, `${call.method} ${call.url}`),
      kvTable("Request headers", call.request_headers),
      el("pre", {}, pretty(call.request_body)),
      el("h3", {}, "Response"), el("p", {}, `HTTP ${call.status} ${call.summary || ""}`),
      kvTable("Response headers", call.response_headers),
      el("pre", {}, pretty(call.response_body)));
  } else {
    body.append(el("p", {}, "The MCP server made this call itself; its tool result reports the " +
      "token it used (in the lineage below)."));
  }
  const tokens = action.tokens || [];
  if (tokens.length) body.append(el("h3", {}, "Tokens of this action (decoded)"));
  for (const token of tokens) {
    const section = el("section", { class: "token", "data-typ": token.typ },
      el("h4", {}, `${token.label} — typ ${token.typ}`),
      kvTable("Header", token.header), kvTable("Claims", token.claims));
    if ((token.changes || []).length) {
      section.append(el("p", {}, "Changed since the previous token: " +
        token.changes.map((c) => `${c.claim} ${JSON.stringify(c.before)} → ${JSON.stringify(c.after)}`)
          .join("; ")));
    }
    body.append(section);
  }
  if (!call && (state.run.lineage || []).length) {
    for (const link of state.run.lineage) body.append(kvTable(`${link.label} (${link.typ})`, link.claims));
  }
  const detail = document.getElementById("hop-detail");
  detail.hidden = false;
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
  state.run = data.run;
  state.openHop = null;
  drawRun();
  await loadSteps();
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

function follow() {
  const events = new EventSource("/api/events");
  events.addEventListener("changed", async () => {
    await loadSteps();
    await loadRun();
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  readToken();
  document.getElementById("run-step").addEventListener("click", runCurrent);
  document.getElementById("reset-step").addEventListener("click", resetToCurrent);
  await loadSteps();
  const wanted = Number(new URLSearchParams(location.search).get("step"));
  if (wanted) await selectStep(wanted);
  follow();
  document.body.setAttribute("data-ready", "true");
});
