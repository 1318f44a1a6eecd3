// Warden policy playground: the warden-filter core compiled to WebAssembly (crate
// warden-playground) evaluates in the browser what `warden policy eval` evaluates on the
// command line. Values are inserted as text, never as HTML.
"use strict";

const SAMPLE = `package envoy.authz

import rego.v1

default allow := false

frontend := "spiffe://example.org/ns/demo/sa/frontend"

# The frontend may read the backend's API.
allow if {
	input.attributes.source.principal == frontend
	input.attributes.request.http.method in {"GET", "HEAD"}
	startswith(input.attributes.request.http.path, "/api/")
}
`;

const ws = {
  modules: [{ name: "policies/authz.rego", source: SAMPLE }],
  tests: [],
  workloads: { backend: "spiffe://example.org/ns/demo/sa/backend" },
  selected: 0,
};
let engine = null;
let loads = 0;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function files() {
  return [...ws.modules.map((m) => ({ kind: "module", m })), ...ws.tests.map((m) => ({ kind: "test", m }))];
}

function renderFiles() {
  const list = files();
  ws.selected = Math.min(ws.selected, list.length - 1);
  $("file-select").replaceChildren(...list.map((f, i) => {
    const o = el("option", { value: String(i) }, f.m.name);
    o.selected = i === ws.selected;
    return o;
  }));
  $("module-source").value = list[ws.selected] ? list[ws.selected].m.source : "";
}

function renderWorkloads(selected) {
  const names = Object.keys(ws.workloads);
  $("req-workload").replaceChildren(...names.map((n) => {
    const o = el("option", { value: n }, n);
    o.selected = n === selected;
    return o;
  }));
  $("known-ids").replaceChildren(...Object.values(ws.workloads).map((id) => el("option", { value: id })));
  syncDestination();
}

function syncDestination() {
  $("req-destination").value = ws.workloads[$("req-workload").value] || "";
}

function headers() {
  const out = [];
  for (const line of $("req-headers").value.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":", line.startsWith(":") ? 1 : 0);
    out.push(at < 0 ? { name: line.trim(), value: "" } : { name: line.slice(0, at).trim(), value: line.slice(at + 1).trim() });
  }
  return out;
}

// The playground's input (warden-playground's Workspace).
function workspace() {
  let data;
  try { data = JSON.parse($("data-source").value || "{}"); } catch (e) { data = { __invalid_json__: String(e) }; }
  const source = $("req-source").value.trim();
  const host = $("req-host").value.trim();
  return {
    modules: ws.modules, tests: ws.tests, data,
    settings: { entrypoint: $("entrypoint").value.trim(), mode: $("mode").value, deny_status: ws.denyStatus || 403, expose_reason: !!ws.exposeReason },
    request: {
      source: source || null, workload: $("req-workload").value, destination: $("req-destination").value.trim(),
      method: $("req-method").value.trim(), path: $("req-path").value, host: host || null, headers: headers(),
    },
  };
}

function showProblems(problems) {
  $("problems").replaceChildren(...problems.map((p) => {
    const where = p.module ? `${p.module}${p.line ? `:${p.line}:${p.column}` : ""}: ` : "";
    const file = p.module && files().find((f) => f.m.name === p.module);
    const lineText = file && p.line ? file.m.source.split("\n")[p.line - 1] : null;
    return el("li", { class: "problem", "data-line": p.line || "", "data-module": p.module || "" },
      where, p.message, p.hint ? el("div", { class: "muted" }, `hint: ${p.hint}`) : null,
      lineText !== null && lineText !== undefined ? el("pre", {}, `${p.line} | ${lineText}\n${" ".repeat(String(p.line).length + 3 + Math.max(0, (p.column || 1) - 1))}^`) : null);
  }));
  const first = problems.find((p) => p.module && p.line);
  if (first) selectLine(first.module, first.line);
}

function selectLine(module, line) {
  const i = files().findIndex((f) => f.m.name === module);
  if (i < 0) return;
  ws.selected = i;
  renderFiles();
  const text = $("module-source").value;
  let start = 0;
  for (let n = 1; n < line && start >= 0; n++) start = text.indexOf("\n", start) + 1;
  const end = text.indexOf("\n", start);
  const area = $("module-source");
  area.setSelectionRange(start, end < 0 ? text.length : end);
  // Scroll the line into view (a selection alone does not scroll an unfocused textarea).
  const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 16;
  area.scrollTop = Math.max(0, (line - 4) * lineHeight);
}

function evaluateNow() {
  if (!engine) return;
  const data = workspace();
  if (data.data && data.data.__invalid_json__) {
    return showResult({ ok: false, problems: [{ message: `data is not JSON: ${data.data.__invalid_json__}` }] });
  }
  const out = callEngine((e) => e.evaluate(JSON.stringify(data)));
  if (out) showResult(out);
}

// A trap inside the module (a panic: none is expected) leaves the instance unusable:
// report it and load a fresh one.
function callEngine(fn) {
  try {
    return JSON.parse(fn(engine));
  } catch (e) {
    showResult({ ok: false, problems: [{ message: `the filter engine failed: ${e.message}; it is being reloaded` }] });
    engine = null;
    loadEngine();
    return null;
  }
}

function showResult(out) {
  window.lastResult = out;
  const card = $("result-card");
  card.dataset.state = out.ok ? out.decision : "error";
  $("problems").replaceChildren();
  $("matched").replaceChildren();
  if (!out.ok) {
    $("verdict").className = "deny";
    $("verdict").textContent = "cannot evaluate";
    $("reason").textContent = "";
    $("input").textContent = "";
    return showProblems(out.problems);
  }
  $("verdict").className = out.decision;
  $("verdict").textContent = `${out.decision.toUpperCase()} · the filter ${out.filter_action === "continue" ? "lets the request through" : `answers ${out.status}`} · engine ${out.engine}`;
  $("reason").textContent = out.reason || `${out.entrypoint} is ${JSON.stringify(out.result)} for this input (policy version ${out.policy_version})`;
  $("input").textContent = JSON.stringify(out.input, null, 2);
  $("matched").replaceChildren(el("p", { class: "muted" }, out.matched_rules.length ? "Rules that hold for this input:" : "No rule of the package holds for this input."),
    el("ul", {}, out.matched_rules.map((r) => el("li", { class: "matched", "data-rule": r.rule }, el("code", {}, r.rule), " = ",
      el("code", {}, JSON.stringify(r.value)), r.defined_at.length ? el("span", { class: "muted" }, ` (${r.defined_at.join(", ")})`) : null))));
}

function runTestsNow() {
  if (!engine) return;
  const out = callEngine((e) => e.runTests(JSON.stringify(workspace())));
  if (!out) return;
  if (!out.ok) {
    $("tests-summary").textContent = "the tests cannot run:";
    $("tests").querySelector("tbody").replaceChildren();
    return showProblems(out.problems);
  }
  $("tests-summary").textContent = `PASS: ${out.passed}/${out.results.length}` + (out.failed ? ` · FAIL: ${out.failed}` : "");
  $("tests-summary").className = out.failed ? "deny" : "allow";
  $("tests").querySelector("tbody").replaceChildren(...out.results.map((r) =>
    el("tr", {}, el("td", { class: r.status === "pass" ? "allow" : "deny" }, r.status.toUpperCase()), el("td", { class: "mono" }, r.rule),
      el("td", { class: "muted" }, r.message || ""))));
}

async function loadLive(quiet) {
  try {
    const r = await fetch("api/policy", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const live = await r.json();
    ws.modules = live.modules;
    ws.tests = live.tests;
    ws.workloads = live.workloads;
    ws.denyStatus = live.settings.deny_status;
    ws.exposeReason = live.settings.expose_reason;
    ws.selected = 0;
    $("data-source").value = JSON.stringify(live.data, null, 2);
    $("entrypoint").value = live.settings.entrypoint;
    $("mode").value = live.settings.mode;
    const params = new URLSearchParams(location.search);
    renderFiles();
    renderWorkloads(params.get("workload") || Object.keys(ws.workloads)[0]);
    $("source-note").textContent = `Live config of the control plane (${ws.modules.length} modules, ${ws.tests.length} test files). Edits stay in this page.`;
    document.body.dataset.live = "true";
  } catch (e) {
    if (!quiet) $("source-note").textContent = `cannot load the live config: ${e.message}`;
  }
}

async function start() {
  renderFiles();
  renderWorkloads("backend");
  const params = new URLSearchParams(location.search);
  await loadLive(true);
  if (params.has("source")) $("req-source").value = params.get("source");
  await loadEngine();
  evaluateNow();
}

async function loadEngine() {
  try {
    // A fresh module instance each time (after a trap the old one is unusable): the glue
    // keeps one instance per module record, so each load imports a distinct URL.
    loads += 1;
    const started = performance.now();
    const mod = await import(`./pkg/warden_playground.js${loads > 1 ? `?reload=${loads}` : ""}`);
    const bytes = await (await fetch(new URL("pkg/warden_playground_bg.wasm", location.href))).arrayBuffer();
    await mod.default({ module_or_path: bytes });
    engine = mod;
    document.body.dataset.engineMs = String(Math.round(performance.now() - started));
    $("engine-status").textContent = `filter engine ${mod.version()} (WebAssembly) ready in ${document.body.dataset.engineMs} ms`;
    document.body.dataset.ready = "true";
  } catch (e) {
    $("engine-status").textContent = "the filter engine is not available";
    $("verdict").textContent = `The playground module did not load (${e.message}). Build it with ./dev build.`;
  }
}

$("file-select").addEventListener("change", () => { ws.selected = Number($("file-select").value); renderFiles(); });
$("module-source").addEventListener("input", () => {
  const f = files()[ws.selected];
  if (f) f.m.source = $("module-source").value;
});
$("add-module").addEventListener("click", () => {
  const name = prompt("Module name (a name ending in _test.rego is a test file)", "policies/extra.rego");
  if (!name) return;
  (name.endsWith("_test.rego") ? ws.tests : ws.modules).push({ name, source: "package envoy.authz\n" });
  ws.selected = files().findIndex((f) => f.m.name === name);
  renderFiles();
});
$("load-live").addEventListener("click", () => loadLive(false).then(evaluateNow));
$("req-workload").addEventListener("change", syncDestination);
$("evaluate").addEventListener("click", evaluateNow);
$("run-tests").addEventListener("click", runTestsNow);
start();
