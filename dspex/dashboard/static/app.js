// The dashboard page: one snapshot at load, then server-sent events; no polling loop.
"use strict";
const csrf = document.querySelector('meta[name="csrf"]').content;
const state = { tree: [], clients: [], runs: {}, events: [], breakers: [] };
let selectedRun = null, rows = {}, refreshPending = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "onclick") node.addEventListener("click", v); else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}
const fmt = (x, d = 2) => (x == null ? "" : typeof x === "number" ? x.toFixed(d) : String(x));
const short = (v) => { const s = typeof v === "string" ? v : JSON.stringify(v); return s && s.length > 80 ? s.slice(0, 77) + "…" : s; };
function fill(id, trs) { const body = document.querySelector(`#${id} tbody`); body.replaceChildren(...trs); }

async function post(url) {
  const r = await fetch(url, { method: "POST", headers: { "X-CSRF-Token": csrf } });
  return r.json();
}

async function load() {
  const s = await (await fetch("api/state")).json();
  state.tree = s.tree; state.clients = s.clients; state.events = s.events; state.breakers = s.breaker_history;
  state.runs = {}; for (const r of s.runs) state.runs[r.run] = r;
  render();
  if (selectedRun) await selectRun(selectedRun);
}

function refreshSoon() {  // a change the events do not carry in full (client states): one snapshot, at most 1/s
  if (refreshPending) return;
  refreshPending = true;
  setTimeout(async () => { refreshPending = false; await load(); }, 1000);
}

const runEls = {};  // run -> its row, updated in place (a row being clicked is never replaced)
function runCells(r) {
  const p = r.progress || {};
  const done = r.kind === "evaluation" ? `${p.done}/${p.total}` : `${p.phase || ""} ${p.candidate ?? ""}`;
  const status = p.finished ? (p.aborted ? `stopped: ${p.aborted}` : "finished") : "running";
  const score = r.kind === "evaluation" ? "" : `${fmt(p.score, 3)} / ${fmt(p.best, 3)}`;
  const errors = Object.entries(r.errors || {}).map(([t, n]) => `${t} ×${n}`).join(", ");
  return [r.run, r.kind, `${done} ${status}`, fmt(p.rate_per_s, 1), fmt(p.eta_s, 0), score,
          `${p.failed ?? ""}${errors ? " (" + errors + ")" : ""}`, fmt(p.spend_usd, 4)];
}
function renderRuns() {
  const body = document.querySelector("#runs tbody");
  for (const r of Object.values(state.runs)) {
    let tr = runEls[r.run];
    const cells = runCells(r);
    if (!tr) {
      tr = el("tr", { class: "row", "data-run": r.run, onclick: () => selectRun(r.run) },
        ...cells.map((c, i) => el("td", { class: ["run", "kind", "progress", "rate", "eta", "score", "failed", "spend"][i] }, c)),
        el("td", {}, el("button", { class: "cancel", "data-run": r.run, onclick: async (e) => {
          e.stopPropagation(); await post(`api/runs/${encodeURIComponent(r.run)}/cancel`); } }, "cancel")));
      runEls[r.run] = tr; body.prepend(tr);
    } else {
      cells.forEach((c, i) => { if (tr.children[i].textContent !== String(c)) tr.children[i].textContent = c; });
    }
    tr.classList.toggle("selected", r.run === selectedRun);
    const button = tr.querySelector("button.cancel");
    if (button && r.progress && r.progress.finished) button.remove();
  }
  const compile = Object.values(state.runs).filter((r) => r.kind === "compile").pop();
  const chart = document.getElementById("best-chart");
  if (compile && compile.best.length > 1) {
    const pts = compile.best.map((b, i) => `${(i / (compile.best.length - 1)) * 100},${80 - (b || 0) * 75}`).join(" ");
    chart.innerHTML = "";  // static markup only; numbers below are ours
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 100 80"); svg.setAttribute("preserveAspectRatio", "none");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts); line.setAttribute("fill", "none"); line.setAttribute("stroke", "#47a");
    svg.append(line); chart.append(el("div", {}, `best so far: ${compile.run}`), svg);
  }
}

function rowTr(r) {
  return el("tr", { class: "row", "data-index": r.index, onclick: () => showRow(r.index) },
    el("td", {}, r.index), el("td", {}, short(r.inputs)), el("td", {}, short(r.prediction)), el("td", {}, fmt(r.score)),
    el("td", { class: "failed" }, r.error ? `${r.error.type}: ${short(r.error.message)}` : ""),
    el("td", {}, r.attempts), el("td", {}, r.worker));
}
const rowEls = {};  // index -> its row in the table, replaced only when that row changes
function renderRows() {
  document.getElementById("rows-run").textContent = selectedRun || "";
  const body = document.querySelector("#rows tbody");
  for (const r of Object.values(rows)) {
    if (rowEls[r.index] && rowEls[r.index].dataset.score === String(r.score)) continue;
    const tr = rowTr(r); tr.dataset.score = String(r.score);
    if (rowEls[r.index]) rowEls[r.index].replaceWith(tr);
    else {
      const after = Object.keys(rowEls).map(Number).filter((i) => i > r.index).sort((a, b) => a - b)[0];
      if (after === undefined) body.append(tr); else body.insertBefore(tr, rowEls[after]);
    }
    rowEls[r.index] = tr;
  }
}
async function selectRun(run) {
  if (run !== selectedRun) { for (const k of Object.keys(rowEls)) delete rowEls[k]; document.querySelector("#rows tbody").replaceChildren(); }
  selectedRun = run; rows = {};
  for (const r of await (await fetch(`api/runs/${encodeURIComponent(run)}/rows`)).json()) rows[r.index] = r;
  renderRuns(); renderRows();
}
async function showRow(index) {
  const r = await (await fetch(`api/runs/${encodeURIComponent(selectedRun)}/rows/${index}`)).json();
  const box = document.getElementById("detail");
  box.replaceChildren(el("h3", {}, `example ${r.index}: score ${fmt(r.score)}`),
    el("pre", {}, `inputs: ${JSON.stringify(r.inputs, null, 1)}\nprediction: ${JSON.stringify(r.prediction, null, 1)}` +
      (r.feedback ? `\nfeedback: ${r.feedback}` : "") + (r.error ? `\nerror: ${r.error.type}: ${r.error.message}` : "") +
      (r.raw ? `\nraw answer:\n${r.raw}` : "") +
      `\ntokens ${r.tokens}  cost $${fmt(r.cost, 6)}  attempts ${r.attempts}  worker ${r.worker}`),
    ...r.trace.map((s) => el("div", { class: "step" }, el("h4", {}, `${s.predictor} (${s.model})`),
      el("pre", {}, `in: ${JSON.stringify(s.inputs, null, 1)}\nout: ${JSON.stringify(s.outputs, null, 1)}\n` +
        `tokens ${s.prompt_tokens} + ${s.completion_tokens}  cost $${fmt(s.cost, 6)}`))));
}

function renderClients() {
  fill("clients", state.clients.map((c) => {
    const budget = c.budget_usd, spent = c.totals.cost;
    const bar = el("span", { class: "bar" + (budget && spent >= budget ? " over" : "") },
      el("span", { style: `width:${budget ? Math.min(100, (100 * spent) / budget) : 0}%` }));
    return el("tr", { "data-client": c.id },
      el("td", {}, c.client), el("td", { class: `breaker ${c.breaker}` }, `${c.breaker} (${c.breaker_trips} trips)`),
      el("td", {}, c.rpm == null ? `no cap (${c.rate_source})` : `${fmt(c.rpm, 0)} rpm (${c.rate_source})`),
      el("td", {}, `${c.in_flight} / ${c.queued}`), el("td", {}, `${fmt(c.latency_p50, 3)} / ${fmt(c.latency_p95, 3)}`),
      el("td", {}, `${c.totals.requests} (${c.throttled})`),
      el("td", { class: "errors" }, (c.errors || []).map(([t, n]) => `${t} ×${n}`).join(", ")),
      el("td", {}, c.totals.prompt_tokens + c.totals.completion_tokens),
      el("td", {}, `$${fmt(spent, 4)}${budget ? " of $" + fmt(budget, 2) : ""} `, bar),
      el("td", {}, el("button", { class: "reset", "data-client": c.id, onclick: async () => { await post(`api/clients/${encodeURIComponent(c.id)}/reset`); refreshSoon(); } }, "reset breaker")));
  }));
  document.getElementById("breaker-history").replaceChildren(...state.breakers.slice(-10).map((b) =>
    el("li", {}, `${new Date(b.at * 1000).toLocaleTimeString()} ${b.kind} ${b.subject} ${b.reason}`)));
}

function renderTree() {
  fill("tree", state.tree.map((n) => el("tr", { "data-path": n.path },
    el("td", { style: `padding-left:${6 + 14 * n.depth}px` }, n.id), el("td", {}, n.kind), el("td", { class: "status" }, n.status),
    el("td", {}, n.restarts), el("td", {}, short(n.last_exit)), el("td", {}, n.pid || ""), el("td", {}, n.address || ""))));
}
function renderEvents() {
  document.getElementById("events").replaceChildren(...state.events.slice(-40).reverse().map((e) =>
    el("li", {}, `${new Date((e.at || 0) * 1000).toLocaleTimeString()} ${e.kind} ${e.supervisor || e.actor || ""}/${e.child || e.subject || ""} ${e.reason || ""}`)));
}
function render() { renderRuns(); renderClients(); renderTree(); renderEvents(); }

async function loadPast() {
  const past = await (await fetch("api/past")).json();
  fill("past", past.map((p) => el("tr", { "data-name": p.name },
    el("td", {}, el("input", { type: "checkbox", value: p.name, class: "pick" })), el("td", {}, p.name), el("td", {}, p.kind),
    el("td", {}, p.examples ?? p.steps), el("td", {}, fmt(p.score ?? p.best, 3)), el("td", {}, p.failed ?? ""), el("td", {}, fmt(p.cost, 4)))));
}
document.getElementById("compare-button").addEventListener("click", async () => {
  const names = [...document.querySelectorAll("input.pick:checked")].map((i) => i.value).slice(0, 2);
  if (names.length !== 2) return;
  const [a, b] = await Promise.all(names.map(async (n) => (await fetch(`api/past/${n}`)).json()));
  const diff = [];
  if (a.rows && b.rows) {
    const bi = Object.fromEntries(b.rows.map((r) => [r.index, r]));
    for (const r of a.rows) if (bi[r.index] && bi[r.index].score !== r.score) diff.push(`#${r.index}: ${r.score} → ${bi[r.index].score}`);
  }
  document.getElementById("compare").replaceChildren(el("pre", {},
    `${names[0]}: score ${fmt(a.score ?? a.best, 3)}, cost $${fmt(a.cost, 4)}\n${names[1]}: score ${fmt(b.score ?? b.best, 3)}, cost $${fmt(b.cost, 4)}\n` +
    `examples scored differently: ${diff.length}\n${diff.slice(0, 50).join("\n")}`));
});

function apply(u) {
  if (u.type === "resync") return load();
  if (u.type === "tree") {
    const i = state.tree.findIndex((n) => n.path === u.key);
    if (i >= 0) Object.assign(state.tree[i], { status: u.node.status, restarts: u.node.restarts, last_exit: u.node.last_exit, pid: u.node.pid, address: u.node.address });
    else refreshSoon();
    state.events.push(u.event); renderTree(); renderEvents();
  } else if (u.type === "run") {
    const known = state.runs[u.run];
    state.runs[u.run] = Object.assign(known || { best: [], candidates: [] }, { run: u.run, kind: u.kind, progress: u.progress });
    if (u.kind === "compile" && u.progress.best != null) state.runs[u.run].best.push(u.progress.best);
    renderRuns(); refreshSoon();
  } else if (u.type === "row") {
    if (u.run === selectedRun) { rows[u.row.index] = u.row; renderRows(); }
  } else if (u.type === "actor") {
    state.events.push(u.event); renderEvents();
    if (u.event.kind.startsWith("breaker")) { state.breakers.push(u.event); refreshSoon(); }
  }
}

const stream = new EventSource("events");
stream.addEventListener("open", () => { document.getElementById("conn").textContent = "live"; });
stream.addEventListener("error", () => { document.getElementById("conn").textContent = "disconnected"; });
stream.addEventListener("update", (e) => apply(JSON.parse(e.data)));
load(); loadPast();
