// Warden dashboard: polls the admin endpoint's read-only JSON (and /metrics) every two
// seconds and renders four pages. Every value is inserted as text, never as HTML.
"use strict";

const POLL_MS = 2000;
const state = { mesh: null, lastEdges: new Map(), reloads: null, lastReloadAt: null, denies: 0 };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function getText(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.text();
}

// Prometheus text → [{name, labels, value}].
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)$/);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function human(secs) {
  if (!isFinite(secs)) return "?";
  const sign = secs < 0 ? "-" : "";
  secs = Math.abs(Math.round(secs));
  if (secs < 120) return `${sign}${secs}s`;
  if (secs < 7200) return `${sign}${Math.round(secs / 60)}m`;
  if (secs < 172800) return `${sign}${(secs / 3600).toFixed(1)}h`;
  return `${sign}${(secs / 86400).toFixed(1)}d`;
}

function showPage() {
  const page = (location.hash || "#mesh").slice(1);
  for (const s of document.querySelectorAll("section.page")) s.classList.toggle("active", s.id === `page-${page}`);
  for (const a of document.querySelectorAll("header nav a[data-page]")) a.classList.toggle("active", a.dataset.page === page);
}

function renderMesh(mesh, traffic) {
  const bySidecar = new Map((traffic ? traffic.sidecars : []).map((s) => [s.workload, s]));
  fill(document.querySelector("#workloads tbody"), mesh.workloads.map((w) => {
    const s = bySidecar.get(w.name);
    const d = s && s.decisions;
    const counts = !s ? "…" : s.error ? el("span", { class: "warn", title: s.error }, "sidecar unreachable")
      : el("span", {}, el("span", { class: "allow" }, `${d.allowed} allowed`), " · ",
        el("span", { class: "deny" }, `${d.denied} denied`),
        d.dry_run_denied ? ` · ${d.dry_run_denied} dry-run denied` : "", d.errors ? ` · ${d.errors} errors` : "");
    return el("tr", { "data-workload": w.name }, el("td", {}, el("b", {}, w.name)),
      el("td", { class: "mono" }, w.spiffe_id), el("td", { class: "mono" }, w.node_id), el("td", {}, counts));
  }));
  if (!traffic) return;
  fill(document.querySelector("#edges tbody"), traffic.edges.map((e) =>
    el("tr", { "data-edge": `${e.from}->${e.to}` }, el("td", {}, `${e.from} → ${e.to}`),
      el("td", { class: "allow" }, e.allowed), el("td", { class: "deny" }, e.denied), el("td", {}, e.other))));
  document.getElementById("edges-note").textContent =
    `From each caller's sidecar: 2xx responses allowed, HTTP ${traffic.deny_status} denied (read ${new Date(traffic.at_unix * 1000).toLocaleTimeString()}).`;
  const ids = new Map(mesh.workloads.map((w) => [w.name, w.spiffe_id]));
  for (const e of traffic.edges) {
    const key = `${e.from}->${e.to}`;
    const before = state.lastEdges.get(key);
    if (before !== undefined && e.denied > before) addDeny(e, e.denied - before, ids, mesh, traffic.deny_status);
    state.lastEdges.set(key, e.denied);
  }
}

function addDeny(edge, count, ids, mesh, status) {
  document.getElementById("no-denies")?.remove();
  const params = new URLSearchParams({ source: ids.get(edge.from) || "", workload: edge.to });
  const item = el("li", { class: "deny-event", "data-from": edge.from, "data-to": edge.to },
    el("span", { class: "muted" }, new Date().toLocaleTimeString(), " "),
    el("span", { class: "pill deny" }, `DENY ×${count}`), " ",
    el("b", {}, `${edge.from} → ${edge.to}`), " ",
    el("span", { class: "reason" },
      `refused by ${edge.to}'s sidecar with HTTP ${status}: ${mesh.entrypoint} did not allow ${ids.get(edge.from) || edge.from} (policy version ${mesh.policy_version}, mode ${mesh.mode})`),
    " ", el("a", { href: `/ui/playground?${params}` }, "explain in the playground"));
  document.getElementById("denies").prepend(item);
  state.denies += count;
}

function renderSidecars(mesh, dump) {
  const byNode = new Map(mesh.workloads.map((w) => [w.node_id, w]));
  const rows = [];
  for (const [node, n] of Object.entries(dump.nodes)) {
    const w = byNode.get(node);
    const types = Object.entries(n.types);
    types.forEach(([t, s], i) => {
      const behind = s.version_acked !== s.version_current;
      const nack = s.last_nack ? el("span", { class: s.rejected ? "deny" : "muted", title: s.last_nack.error_detail },
        `${s.last_nack.rejected_version} at ${new Date(s.last_nack.at_unix * 1000).toLocaleTimeString()}: ${s.last_nack.error_detail}`) : "—";
      const first = i === 0;
      rows.push(el("tr", first ? { "data-node": node, "data-workload": w ? w.name : "" } : {},
        el("td", { class: "mono" }, first ? node : ""),
        el("td", {}, first ? (w ? w.name : "(not in config)") : ""),
        el("td", {}, first ? el("span", { class: n.connected_streams ? "pill allow" : "pill warn" },
          n.connected_streams ? `${n.connected_streams} ${n.protocol || ""}` : "disconnected") : ""),
        el("td", {}, first && w ? w.attestation.join(", ") : ""),
        el("td", {}, t.toUpperCase()),
        el("td", { class: "mono" }, s.version_current || "—"),
        el("td", { class: "mono" }, s.version_sent || "—"),
        el("td", { class: `mono ${behind ? "warn" : ""}` }, s.version_acked || "—"),
        el("td", {}, nack)));
    });
  }
  fill(document.querySelector("#sidecars tbody"), rows);
}

function renderIdentity(ca, metrics) {
  const box = document.getElementById("ca");
  if (!ca) { box.replaceChildren(el("p", { class: "muted" }, "CA status unavailable")); return; }
  const waits = ca.activation_blocked_by && ca.activation_blocked_by.length
    ? `activation waits for: ${ca.activation_blocked_by.join(", ")}` : "activation waits for no node";
  box.replaceChildren(
    el("p", {}, "Phase: ", el("span", { id: "ca-phase", class: "pill" }, String(ca.phase)),
      " · bundle sequence ", ca.bundle_sequence, " · ", ca.bundle_authorities, " authorities in the bundle"),
    el("table", {}, el("tbody", {},
      el("tr", {}, el("th", {}, "current CA"), el("td", { class: "mono" }, `${ca.current.serial.slice(0, 16)}… expires ${ca.current.not_after} (in ${human(ca.current.not_after_unix - ca.now_unix)})`)),
      el("tr", {}, el("th", {}, "next CA"), el("td", { class: "mono" }, ca.next ? `${ca.next.serial.slice(0, 16)}… expires ${ca.next.not_after}` : "none")),
      el("tr", {}, el("th", {}, "prepare at"), el("td", {}, ca.prepare_at)),
      el("tr", {}, el("th", {}, "activate at"), el("td", {}, ca.activate_at, ca.activate_by ? ` (at the latest ${ca.activate_by})` : "")),
      el("tr", {}, el("th", {}, "waits for"), el("td", { id: "ca-waits" }, waits)),
      el("tr", {}, el("th", {}, "retired"), el("td", {}, ca.retired.length ? ca.retired.map((r) => `${r.serial.slice(0, 12)}… until ${r.retire_after}`).join("; ") : "none")),
      el("tr", {}, el("th", {}, "left behind"), el("td", {}, ca.left_behind.length ? ca.left_behind.join(", ") : "none")))));
  const svids = metrics.filter((m) => m.name === "warden_svid_expiry_seconds");
  const caLeft = metrics.find((m) => m.name === "warden_ca_expiry_seconds" && m.labels.slot === "current");
  const scale = Math.max(1, ...svids.map((m) => m.value));
  fill(document.querySelector("#svids tbody"), svids.map((m) =>
    el("tr", { "data-svid": m.labels.workload }, el("td", {}, m.labels.workload), el("td", {}, human(m.value)),
      el("td", {}, el("div", { class: `bar ${m.value < scale / 4 ? "soon" : ""}` },
        el("span", { style: "" }))))));
  document.querySelectorAll("#svids .bar span").forEach((span, i) => {
    span.style.width = `${Math.max(1, Math.min(100, (100 * svids[i].value) / scale))}%`;
  });
  if (caLeft) box.append(el("p", { class: "muted" }, `Signing CA expires in ${human(caLeft.value)}.`));
}

function renderConfig(mesh, dump, metrics) {
  const value = (name) => (metrics.find((m) => m.name === name) || {}).value;
  const reloads = value("warden_config_reloads_total");
  const failures = value("warden_config_reload_failures_total");
  if (state.reloads !== null && reloads + failures !== state.reloads) state.lastReloadAt = new Date();
  state.reloads = reloads + failures;
  const rows = [
    ["config directory", mesh.config_dir], ["trust domain", mesh.trust_domain],
    ["policy version", mesh.policy_version], ["decision rule", mesh.entrypoint], ["mode", mesh.mode],
    ["reloads applied / refused", `${reloads} / ${failures}`],
    ["last reload", state.lastReloadAt ? state.lastReloadAt.toLocaleTimeString() : "none since this page opened"],
    ["policy playground", mesh.playground ? "built in" : "not in this binary (build with ./dev build)"],
  ];
  fill(document.querySelector("#config tbody"), rows.map(([k, v]) =>
    el("tr", {}, el("th", {}, k), el("td", { class: "mono", "data-key": k }, v))));
  document.getElementById("diagnostics").textContent = dump.config.last_reload_error || "none: the last reload applied";
}

async function poll() {
  const live = document.getElementById("live");
  try {
    const [mesh, dump, metricsText, ca, traffic] = await Promise.all([
      getJson("/ui/api/mesh"), getJson("/config_dump"), getText("/metrics"),
      getJson("/ca/status").catch(() => null), getJson("/ui/api/traffic").catch(() => null),
    ]);
    const metrics = parseMetrics(metricsText);
    state.mesh = mesh;
    renderMesh(mesh, traffic);
    renderSidecars(mesh, dump);
    renderIdentity(ca, metrics);
    renderConfig(mesh, dump, metrics);
    live.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (e) {
    live.textContent = `cannot reach the control plane: ${e.message}`;
  }
}

window.addEventListener("hashchange", showPage);
showPage();
poll();
setInterval(poll, POLL_MS);
