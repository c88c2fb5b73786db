// The dashboard page: one snapshot at load, then server-sent events; past runs re-read every few seconds.
"use strict";
const csrf = document.querySelector('meta[name="csrf"]').content;
const state = { tree: [], clients: [], runs: {}, events: [], breakers: [] };
// what the page shows: the selected top-level run, the evaluation whose rows fill the examples table
// (a run, a compile's step, or a past journal), and whether the user chose it (else the newest run is followed)
const view = { run: null, rowsOf: null, chosen: false, stepChosen: false, candidate: null, pastRows: null };
let rows = {}, refreshPending = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "onclick") node.addEventListener("click", v); else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}
function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
const fmt = (x, d = 2) => (x == null ? "" : typeof x === "number" ? x.toFixed(d) : String(x));
const short = (v, n = 80) => { const s = typeof v === "string" ? v : JSON.stringify(v); return s && s.length > n ? s.slice(0, n - 3) + "…" : s; };
function fill(id, trs) { const body = document.querySelector(`#${id} tbody`); body.replaceChildren(...trs); }
const getJSON = async (url) => (await fetch(url)).json();

async function post(url) {
  const r = await fetch(url, { method: "POST", headers: { "X-CSRF-Token": csrf } });
  return r.json();
}

async function load() {
  const s = await getJSON("api/state");
  state.tree = s.tree; state.clients = s.clients; state.events = s.events; state.breakers = s.breaker_history;
  state.runs = {};
  for (const r of s.runs) state.runs[r.run] = { ...r, steps: Object.fromEntries(r.steps.map((x) => [x.run, x])) };
  render();
  if (view.pastRows) return;  // a past journal is open: it stays until a run is clicked
  if (view.run && state.runs[view.run]) await selectRun(view.run, false);
  else followNewest();
}

function refreshSoon() {  // a change the events do not carry in full (client states): one snapshot, at most 1/s
  if (refreshPending) return;
  refreshPending = true;
  setTimeout(async () => { refreshPending = false; await load(); }, 1000);
}

// --- runs ----------------------------------------------------------------------------------------------

const runEls = {};  // run -> its row, updated in place (a row being clicked is never replaced)
function runCells(r) {
  const p = r.progress || {};
  const steps = Object.values(r.steps || {});
  const done = r.kind === "evaluation" ? `${p.done ?? 0}/${p.total ?? "?"}` : `${p.phase || ""} ${p.candidate ?? ""} · ${steps.length} evaluations`;
  const status = p.finished ? (p.aborted ? `stopped: ${p.aborted}` : "finished") : "running";
  const score = r.kind === "evaluation" ? "" : `${fmt(p.score, 1)} / ${fmt(p.best, 1)}`;
  const errors = Object.entries(r.errors || {}).map(([t, n]) => `${t} ×${n}`).join(", ");
  const failed = `${p.failed ?? ""}${errors ? " (" + errors + ")" : ""}${p.cancelled ? ` · ${p.cancelled} not run` : ""}`;
  return [r.run, r.kind, `${done} ${status}`, fmt(p.rate_per_s, 1), fmt(p.eta_s, 0), score, failed, fmt(p.spend_usd, 4)];
}
const RUN_COLUMNS = ["run", "kind", "progress", "rate", "eta", "score", "failed", "spend"];
function renderRuns() {
  const body = document.querySelector("#runs tbody");
  for (const r of Object.values(state.runs)) {
    let tr = runEls[r.run];
    const cells = runCells(r);
    if (!tr) {
      tr = el("tr", { class: "row", "data-run": r.run, onclick: () => selectRun(r.run, true) },
        ...cells.map((c, i) => el("td", { class: RUN_COLUMNS[i], title: String(c) }, c)),
        el("td", {}, el("button", { class: "cancel", "data-run": r.run, onclick: async (e) => {
          e.stopPropagation(); await post(`api/runs/${encodeURIComponent(r.run)}/cancel`); } }, "cancel")));
      runEls[r.run] = tr; body.prepend(tr);
    } else {
      cells.forEach((c, i) => { if (tr.children[i].textContent !== String(c)) { tr.children[i].textContent = c; tr.children[i].title = String(c); } });
    }
    tr.classList.toggle("selected", r.run === view.run);
    tr.children[6].classList.toggle("failed", Boolean(r.progress && r.progress.failed));
    const button = tr.querySelector("button.cancel");
    if (button && r.progress && r.progress.finished) button.remove();
  }
}

function followNewest() {  // the examples table fills without a click: the newest run, until the user picks one
  if (view.chosen) return;
  const running = Object.values(state.runs).filter((r) => !(r.progress && r.progress.finished));
  const newest = (running.length ? running : Object.values(state.runs)).slice(-1)[0];
  if (newest && newest.run !== view.run) selectRun(newest.run, false);
  else if (newest && newest.kind === "compile") followStep(newest);
}
function followStep(r) {  // a compile's rows: its newest evaluation's, until the user opens one
  if (view.stepChosen || view.pastRows) return;
  const steps = Object.values(r.steps || {});
  const latest = steps.slice(-1)[0];
  if (latest && latest.run !== view.rowsOf) showRowsOf(latest.run);
}

async function selectRun(run, chosen) {
  if (run !== view.run) { view.stepChosen = false; view.candidate = null; }
  view.run = run; view.chosen = view.chosen || chosen; view.pastRows = null;
  const r = state.runs[run];
  document.getElementById("compile-view").hidden = !(r && r.kind === "compile");
  if (r && r.kind === "compile") {
    renderCompile();
    const latest = Object.values(r.steps || {}).slice(-1)[0];
    if (!view.stepChosen) await showRowsOf(latest ? latest.run : null);
  } else await showRowsOf(run);
  renderRuns();
}

// --- examples and their drill-down ------------------------------------------------------------------

const rowEls = {};  // index -> its row in the table, replaced only when that row changes
function clearRows() { for (const k of Object.keys(rowEls)) delete rowEls[k]; document.querySelector("#rows tbody").replaceChildren(); rows = {}; }
async function showRowsOf(run) {
  if (run !== view.rowsOf) clearRows();
  view.rowsOf = run;
  document.getElementById("rows-run").textContent = run || "";
  if (!run) return;
  for (const r of await getJSON(`api/runs/${encodeURIComponent(run)}/rows`)) rows[r.index] = r;
  renderRows();
}
function rowTr(r) {
  const error = r.error ? `${r.error.type}: ${short(r.error.message)}` : "";
  return el("tr", { class: "row" + (r.skipped ? " skipped" : ""), "data-index": r.index, onclick: () => showRow(r.index) },
    el("td", {}, r.index), el("td", { title: JSON.stringify(r.inputs) }, short(r.inputs)),
    el("td", { title: JSON.stringify(r.prediction) }, short(r.prediction)), el("td", {}, fmt(r.score)),
    el("td", { class: r.skipped ? "skipped" : "failed", title: error }, r.skipped ? "not run" : error),
    el("td", {}, r.attempts), el("td", {}, r.worker));
}
function renderRows() {
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
function messagesBox(messages) {
  return el("div", { class: "messages" }, ...messages.map((m) =>
    el("div", { class: `message ${m.role}` }, el("span", { class: "role" }, m.role), el("pre", {}, m.content))));
}
async function showRow(index) {
  const box = document.getElementById("detail");
  if (view.pastRows) {
    const r = view.pastRows.find((x) => x.index === index);
    box.replaceChildren(el("h3", {}, `example ${r.index}: score ${fmt(r.score)}`),
      el("pre", {}, `example: ${JSON.stringify(r.example, null, 1)}\nprediction: ${JSON.stringify(r.prediction, null, 1)}` +
        (r.error ? `\nerror: ${r.error.type}: ${r.error.message}` : "")));
    return;
  }
  const r = await getJSON(`api/runs/${encodeURIComponent(view.rowsOf)}/rows/${index}`);
  box.replaceChildren(el("h3", {}, `example ${r.index}: score ${fmt(r.score)}`),
    el("pre", {}, `inputs: ${JSON.stringify(r.inputs, null, 1)}\nprediction: ${JSON.stringify(r.prediction, null, 1)}` +
      (r.feedback ? `\nfeedback: ${r.feedback}` : "") + (r.error ? `\nerror: ${r.error.type}: ${r.error.message}` : "") +
      `\ntokens ${r.tokens}  cost $${fmt(r.cost, 6)}  attempts ${r.attempts}  worker ${r.worker}`),
    ...r.trace.map((s) => el("div", { class: "step" }, el("h4", {}, `${s.predictor} (${s.model})`),
      el("details", { open: true }, el("summary", {}, `messages sent (${s.messages.length})`), messagesBox(s.messages)),
      el("details", { open: true }, el("summary", {}, "raw answer"), el("pre", { class: "raw" }, s.raw)),
      el("pre", {}, `parsed: ${JSON.stringify(s.outputs, null, 1)}\n` +
        `tokens ${s.prompt_tokens} + ${s.completion_tokens}  cost $${fmt(s.cost, 6)}`))));
}

// --- a compile: its candidates, their lineage, the best so far, a diff of two prompts ------------------

function candidatesOf(r) {
  // one candidate per prompt (digest): its minibatch scores and its full-set score; bootstrap runs are not candidates
  const steps = Object.values(r.steps || {}).filter((s) => s.digest && s.phase !== "bootstrap");
  const full = Math.max(0, ...steps.map((s) => s.examples || 0));
  const byDigest = {};
  for (const s of steps) {
    const c = byDigest[s.digest] || (byDigest[s.digest] = { digest: s.digest, n: Object.keys(byDigest).length, mini: [], full: null, phases: new Set(), steps: [] });
    c.steps.push(s); c.phases.add(s.phase);
    if (s.score == null) continue;
    if (s.examples === full) c.full = s.score; else c.mini.push(s.score);
  }
  return Object.values(byDigest);
}
const promptOf = (r, digest) => (r.prompts || {})[digest] || [];
function promptText(prompt) {
  return prompt.map((p) => [`## ${p.predictor}: ${p.signature}`, p.instructions,
    ...p.demos.map((d, i) => `demo ${i + 1}: ${JSON.stringify(d)}`)].join("\n")).join("\n\n");
}
function renderCompile() {
  const r = state.runs[view.run];
  if (!r || r.kind !== "compile") return;
  document.getElementById("compile-run").textContent = `${r.run} (${(r.progress || {}).optimizer || ""})`;
  const cands = candidatesOf(r);
  const best = Math.max(...cands.map((c) => (c.full ?? -1)));
  const picked = new Set([...document.querySelectorAll("input.cand-pick:checked")].map((i) => i.value));
  fill("candidates", cands.map((c) => {
    const prompt = promptOf(r, c.digest);
    const instructions = prompt.map((p) => p.instructions).join(" | ");
    const demos = prompt.reduce((n, p) => n + p.demo_count, 0);
    const mean = c.mini.length ? c.mini.reduce((a, b) => a + b, 0) / c.mini.length : null;
    return el("tr", { class: "row" + (c.digest === view.candidate ? " selected" : "") + (c.full === best && best >= 0 ? " best" : ""),
                      "data-digest": c.digest, onclick: () => { view.candidate = c.digest; renderCompile(); } },
      el("td", {}, el("input", { type: "checkbox", class: "cand-pick", value: c.digest, checked: picked.has(c.digest),
                                 onclick: (e) => e.stopPropagation() })),
      el("td", {}, c.n), el("td", { class: "instructions", title: instructions }, short(instructions, 120)), el("td", {}, demos),
      el("td", {}, c.mini.length ? `${fmt(100 * mean, 1)} (${c.mini.length}×)` : ""), el("td", { class: "full" }, c.full == null ? "" : fmt(100 * c.full, 1)),
      el("td", {}, [...c.phases].join(", ")));
  }));
  const boot = Object.values(r.steps || {}).filter((s) => s.phase === "bootstrap").length;
  document.getElementById("compile-summary").textContent =
    `${cands.length} candidates · ${Object.keys(r.steps || {}).length} evaluations${boot ? ` (${boot} bootstrap)` : ""}`;
  renderCandidate(r, cands);
  renderBest(r);
  renderLineage(r);
}
function renderCandidate(r, cands) {
  const box = document.getElementById("candidate");
  const c = cands.find((x) => x.digest === view.candidate);
  if (!c) { box.replaceChildren(); return; }
  box.replaceChildren(el("h4", {}, `candidate ${c.n}`),
    ...promptOf(r, c.digest).map((p) => el("div", { class: "prompt" },
      el("h5", {}, `${p.predictor}: ${p.signature}`), el("pre", { class: "instructions" }, p.instructions),
      el("div", {}, `${p.demo_count} demos`), ...p.demos.map((d) => el("pre", { class: "demo" }, JSON.stringify(d, null, 1))))),
    el("h5", {}, "its evaluations"),
    el("ul", {}, ...c.steps.map((s) => el("li", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); view.stepChosen = true; showRowsOf(s.run); } },
      `${s.phase} ${s.name}: ${s.examples} examples, ${s.score == null ? "cut short" : fmt(100 * s.score, 1)}`)))));
}
function diffLines(a, b) {  // a line diff (longest common subsequence): [[" " | "-" | "+", line], ...]
  const n = a.length, m = b.length, lcs = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = []; let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(["-", a[i++]]); else out.push(["+", b[j++]]);
  }
  while (i < n) out.push(["-", a[i++]]); while (j < m) out.push(["+", b[j++]]);
  return out;
}
document.getElementById("diff-button").addEventListener("click", () => {
  const r = state.runs[view.run];
  const picked = [...document.querySelectorAll("input.cand-pick:checked")].map((i) => i.value).slice(0, 2);
  if (!r || picked.length !== 2) return;
  const [a, b] = picked.map((d) => promptText(promptOf(r, d)).split("\n"));
  document.getElementById("diff").replaceChildren(el("pre", { class: "diff" }, ...diffLines(a, b).map(([k, line]) =>
    el("div", { class: k === "-" ? "del" : k === "+" ? "ins" : "same" }, `${k} ${line}`))));
});
function renderBest(r) {
  const chart = document.getElementById("best-chart");
  const best = (r.best || []).filter((b) => b != null);
  chart.replaceChildren();
  if (best.length < 2) return;
  const top = Math.max(1, ...best);
  const svg = svgEl("svg", { viewBox: "0 0 100 60", preserveAspectRatio: "none" });
  svg.append(svgEl("polyline", { points: best.map((b, i) => `${(i / (best.length - 1)) * 100},${58 - (b / top) * 55}`).join(" "),
                                 fill: "none", stroke: "#47a", "stroke-width": "1.5", "vector-effect": "non-scaling-stroke" }));
  chart.append(el("div", {}, `best so far: ${fmt(best[best.length - 1], 1)}%`), svg);
}
function renderLineage(r) {  // GEPA: each candidate a node (x: order, y: score), an edge from each parent
  const box = document.getElementById("lineage");
  const cands = (r.candidates || []).filter((c) => c.candidate != null);
  box.replaceChildren();
  if (!cands.some((c) => c.parents && c.parents.length)) return;
  const byId = Object.fromEntries(cands.map((c) => [c.candidate, c]));
  const n = Math.max(...cands.map((c) => c.candidate)) + 1;
  const x = (id) => 8 + (id / Math.max(1, n - 1)) * 284, y = (s) => 92 - ((s ?? 0) / 100) * 84;
  const svg = svgEl("svg", { viewBox: "0 0 300 100", class: "lineage" });
  for (const c of cands) for (const p of c.parents || []) if (byId[p])
    svg.append(svgEl("line", { x1: x(p), y1: y(byId[p].score), x2: x(c.candidate), y2: y(c.score), stroke: "#999" }));
  for (const c of cands) {
    const dot = svgEl("circle", { cx: x(c.candidate), cy: y(c.score), r: 4, fill: "#47a", "data-candidate": c.candidate });
    const label = svgEl("title", {}); label.textContent = `candidate ${c.candidate}: ${fmt(c.score, 1)}% from ${(c.parents || []).join(", ") || "the student"}`;
    dot.append(label); svg.append(dot);
  }
  box.append(el("div", {}, "lineage (GEPA)"), svg);
}

// --- clients, tree, events -----------------------------------------------------------------------------

function spark(points, pick, label) {  // a small line of one client's cost or tokens over time
  const svg = svgEl("svg", { viewBox: "0 0 100 20", preserveAspectRatio: "none", class: "spark", "data-series": label });
  if (points.length > 1) {
    const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1, top = Math.max(1e-12, ...points.map(pick));
    svg.append(svgEl("polyline", { points: points.map((p) => `${((p[0] - t0) / Math.max(1e-9, t1 - t0)) * 100},${19 - (pick(p) / top) * 18}`).join(" "),
                                   fill: "none", stroke: "#4a7", "vector-effect": "non-scaling-stroke" }));
  }
  return svg;
}
function renderClients() {
  fill("clients", state.clients.map((c) => {
    const budget = c.budget_usd, spent = c.totals.cost;
    const bar = el("span", { class: "bar" + (budget && spent >= budget ? " over" : "") },
      el("span", { style: `width:${budget ? Math.min(100, (100 * spent) / budget) : 0}%` }));
    const series = c.series || [];
    return el("tr", { "data-client": c.id },
      el("td", { title: c.client }, c.client), el("td", { class: `breaker ${c.breaker}` }, `${c.breaker} (${c.breaker_trips} trips)`),
      el("td", {}, c.rpm == null ? `no cap (${c.rate_source})` : `${fmt(c.rpm, 0)} rpm (${c.rate_source})`),
      el("td", {}, `${c.in_flight} / ${c.queued}`), el("td", {}, `${fmt(c.latency_p50, 3)} / ${fmt(c.latency_p95, 3)}`),
      el("td", {}, `${c.totals.requests} (${c.throttled})`),
      el("td", { class: "errors", title: (c.errors || []).map(([t, n]) => `${t} ×${n}`).join(", ") }, (c.errors || []).map(([t, n]) => `${t} ×${n}`).join(", ")),
      el("td", {}, c.totals.prompt_tokens + c.totals.completion_tokens, spark(series, (p) => p[2], "tokens")),
      el("td", {}, `$${fmt(spent, 4)}${budget ? " of $" + fmt(budget, 2) : ""} `, bar, spark(series, (p) => p[1], "cost")),
      el("td", {}, el("button", { class: "reset", "data-client": c.id, onclick: async () => { await post(`api/clients/${encodeURIComponent(c.id)}/reset`); refreshSoon(); } }, "reset breaker")));
  }));
  document.getElementById("breaker-history").replaceChildren(...state.breakers.slice(-10).map((b) =>
    el("li", {}, `${new Date(b.at * 1000).toLocaleTimeString()} ${b.kind} ${b.subject} ${b.reason}`)));
}

function renderTree() {
  fill("tree", state.tree.map((n) => el("tr", { "data-path": n.path },
    el("td", { style: `padding-left:${6 + 14 * n.depth}px`, title: n.path }, n.id), el("td", {}, n.kind), el("td", { class: "status" }, n.status),
    el("td", {}, n.restarts), el("td", { title: n.last_exit }, short(n.last_exit, 40)), el("td", {}, n.pid || ""), el("td", {}, n.address || ""))));
}
function renderEvents() {
  document.getElementById("events").replaceChildren(...state.events.slice(-40).reverse().map((e) =>
    el("li", {}, `${new Date((e.at || 0) * 1000).toLocaleTimeString()} ${e.kind} ${e.supervisor || e.actor || ""}/${e.child || e.subject || ""} ${e.reason || ""}`)));
}
function render() { renderRuns(); renderCompile(); renderClients(); renderTree(); renderEvents(); }

// --- nodes: the hosts that joined this runtime, asked every few seconds whether they answer ---------------

async function loadNodes() {
  const n = await getJSON("api/nodes");
  document.getElementById("nodes-leader").textContent = n.leader ? `leader ${n.leader}, ${n.nodes.length} joined` : `${n.base} runtime: no hosts`;
  fill("nodes", n.nodes.map((x) => el("tr", { "data-node": x.address, class: x.state },
    el("td", {}, x.address), el("td", {}, x.host ? "dspex host" : (x.state === "unreachable" ? "" : "node")), el("td", { class: "status" }, x.state),
    el("td", {}, x.answered_in == null ? "" : `${Math.round(x.answered_in * 1000)} ms`))));
}

// --- past runs: re-read every few seconds, opened on click, two compared row by row -------------------

async function loadPast() {
  const past = await getJSON("api/past");
  const picked = new Set([...document.querySelectorAll("input.pick:checked")].map((i) => i.value));
  fill("past", past.map((p) => el("tr", { class: "row", "data-name": p.name, onclick: () => openPast(p.name) },
    el("td", {}, el("input", { type: "checkbox", value: p.name, class: "pick", checked: picked.has(p.name), onclick: (e) => e.stopPropagation() })),
    el("td", { title: p.name }, p.name), el("td", {}, p.kind),
    el("td", {}, p.examples ?? p.steps), el("td", {}, fmt(p.score ?? p.best, 2)), el("td", {}, p.failed ?? ""), el("td", {}, fmt(p.cost, 4)))));
}
async function openPast(name) {
  const p = await getJSON(`api/past/${name}`);
  view.chosen = true; view.stepChosen = true;
  const box = document.getElementById("compare");
  if (p.kind === "evaluation") {
    clearRows(); view.rowsOf = null; view.pastRows = p.rows;
    document.getElementById("rows-run").textContent = `${name} (journal)`;
    for (const r of p.rows) rows[r.index] = { ...r, inputs: r.example, attempts: "", worker: "", skipped: false };
    renderRows();
    box.replaceChildren(el("div", {}, `${name}: ${p.examples} examples, score ${fmt(p.score, 2)}, ${p.failed} failed, $${fmt(p.cost, 4)}`));
  } else {
    box.replaceChildren(el("h4", {}, `${name}: ${p.optimizer}, ${p.steps} steps, best ${fmt(p.best, 2)}`),
      el("table", { class: "entries" }, el("tbody", {}, ...(p.entries || []).map((e) =>
        el("tr", {}, el("td", {}, e.kind), el("td", { title: JSON.stringify(e) }, short(e, 140)))))));
  }
}
document.getElementById("compare-button").addEventListener("click", async () => {
  const names = [...document.querySelectorAll("input.pick:checked")].map((i) => i.value).slice(0, 2);
  if (names.length !== 2) return;
  const [a, b] = await Promise.all(names.map((n) => getJSON(`api/past/${n}`)));
  const box = document.getElementById("compare");
  const head = el("div", {}, `${names[0]}: ${fmt(a.score ?? a.best, 2)} · ${names[1]}: ${fmt(b.score ?? b.best, 2)}`);
  if (!(a.rows && b.rows)) { box.replaceChildren(head); return; }
  const bi = Object.fromEntries(b.rows.map((r) => [r.index, r]));
  const indices = [...new Set([...a.rows.map((r) => r.index), ...b.rows.map((r) => r.index)])].sort((x, y) => x - y);
  const ai = Object.fromEntries(a.rows.map((r) => [r.index, r]));
  const changed = indices.filter((i) => (ai[i] || {}).score !== (bi[i] || {}).score).length;
  const cell = (r) => r ? `${fmt(r.score)} ${r.error ? r.error.type : short(r.prediction, 60)}` : "—";
  box.replaceChildren(head, el("div", {}, `examples scored differently: ${changed}`),
    el("table", { id: "compare-rows" },
      el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "example"), el("th", {}, names[0]), el("th", {}, names[1]))),
      el("tbody", {}, ...indices.map((i) => {
        const x = ai[i], y = bi[i];
        const diff = (x || {}).score !== (y || {}).score;
        return el("tr", { class: diff ? ((y || {}).score > (x || {}).score ? "better" : "worse") : "" },
          el("td", {}, i), el("td", {}, short((x || y).example, 60)), el("td", {}, cell(x)), el("td", {}, cell(y)));
      }))));
});

// --- live updates ------------------------------------------------------------------------------------

function apply(u) {
  if (u.type === "resync") return load();
  if (u.type === "tree") {
    const i = state.tree.findIndex((n) => n.path === u.key);
    if (i >= 0) Object.assign(state.tree[i], { status: u.node.status, restarts: u.node.restarts, last_exit: u.node.last_exit, pid: u.node.pid, address: u.node.address });
    else refreshSoon();
    state.events.push(u.event); renderTree(); renderEvents();
  } else if (u.type === "run") {
    const known = state.runs[u.run];
    state.runs[u.run] = Object.assign(known || { best: [], candidates: [], steps: {}, prompts: {} }, { run: u.run, kind: u.kind, progress: u.progress });
    const r = state.runs[u.run];
    if (u.kind === "compile" && u.progress.score != null) {
      r.best.push(u.progress.best);
      r.candidates.push({ candidate: u.progress.candidate, phase: u.progress.phase, score: u.progress.score, parents: u.progress.parents || [] });
    }
    renderRuns(); if (u.run === view.run) renderCompile();
    followNewest(); refreshSoon();
    if (u.progress.finished) loadPast();
  } else if (u.type === "step") {
    const r = state.runs[u.run] || (state.runs[u.run] = { run: u.run, kind: "compile", progress: {}, best: [], candidates: [], steps: {}, prompts: {} });
    r.steps[u.step.run] = Object.assign(r.steps[u.step.run] || {}, u.step);
    if (u.digest) r.prompts[u.digest] = u.prompt;
    renderRuns();
    if (u.run === view.run) { renderCompile(); followStep(r); }
    else followNewest();
  } else if (u.type === "row") {
    if (u.run === view.rowsOf) { rows[u.row.index] = u.row; renderRows(); }
  } else if (u.type === "actor") {
    state.events.push(u.event); renderEvents();
    if (u.event.kind.startsWith("breaker")) { state.breakers.push(u.event); refreshSoon(); }
  }
}

const stream = new EventSource("events");
stream.addEventListener("open", () => { document.getElementById("conn").textContent = "live"; });
stream.addEventListener("error", () => { document.getElementById("conn").textContent = "disconnected"; });
stream.addEventListener("update", (e) => apply(JSON.parse(e.data)));
load(); loadPast(); loadNodes();
setInterval(loadPast, 5000);
setInterval(loadNodes, 3000);
