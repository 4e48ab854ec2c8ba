// The cabinet dashboard page: the live street from /api/events (server-sent events), commands to
// /api/command with the session's CSRF token, plots from /api/history. Plain JavaScript, no library.
"use strict";

const page = { view: null, nodes: new Map(), units: {}, plotted: {}, csrf: "", selected: null, skew: 0 };
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fmt(value) {
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(Math.abs(value) < 10 ? 2 : 1);
  return String(value);
}

function clock(ts) { return new Date(ts * 1000).toLocaleTimeString(); }

// --- the street: lamps in configuration order, coloured by light level and fault -----------------------
function lampColour(node) {
  const level = Number(node.values.level_actual ?? node.values.dim_level ?? 0);
  const lit = node.values.relay === false || node.values.relay === 0 ? 0 : level;
  const light = 20 + Math.round(lit * 0.65);  // HSL lightness: dark when off, bright yellow at 100 %
  return `hsl(48, ${lit ? 95 : 5}%, ${light}%)`;
}

function drawStreet() {
  const street = $("#street");
  for (const node of page.nodes.values()) {
    if (node.role !== "lamp") continue;
    let lamp = document.getElementById(`lamp-${node.id}`);
    if (!lamp) {
      lamp = el("div", { id: `lamp-${node.id}`, class: "lamp", title: node.id, role: "button" });
      lamp.addEventListener("click", () => select(node.id));
      street.append(lamp);
    }
    lamp.style.background = lampColour(node);
    lamp.textContent = node.id.replace(/^\D+-?/, "");
    lamp.classList.toggle("fault", node.state === "alarm" || node.state === "safe_mode");
    lamp.classList.toggle("gone", node.state === "offline");
    lamp.classList.toggle("selected", page.selected === node.id);
    lamp.title = `${node.id}: ${node.state}, level ${node.values.level_actual ?? "?"} %, ${fmt(node.values.power ?? "?")} W`;
  }
}

// --- the node table --------------------------------------------------------------------------------------
const SHOWN = { lamp: ["dim_level", "level_actual", "power", "energy", "voltage", "temperature"],
                meter: ["flow", "volume", "battery"], env: ["temperature", "humidity", "pm25", "pm10", "noise"] };

function valuesText(node) {
  const units = page.units[node.role] || {};
  // A BLE node's role is its firmware role's with "-ble": it carries a subset of the same values.
  const names = SHOWN[node.role.replace(/-ble$/, "")] || Object.keys(node.values).slice(0, 6);
  return names.filter((n) => n in node.values)
    .map((n) => `${n}=${fmt(node.values[n])}${units[n] ? " " + units[n] : ""}`).join("  ");
}

function age(node) {
  if (node.last_poll == null) return "never";
  const seconds = `${Math.max(0, page.view.ts - node.last_poll).toFixed(1)} s`;
  return node.transport === "BLE" ? `advert ${seconds}` : seconds;
}

function link(node) {  // RS-485 bus/unit, Modbus TCP bus/unit, or BLE with its address and signal
  if (node.transport !== "BLE") return `${node.transport} ${node.bus}/${node.unit}`;
  return `BLE ${node.address}${node.rssi == null ? "" : ` ${node.rssi} dBm`}`;
}

function drawNode(node) {
  const body = $("#nodes tbody");
  let row = document.getElementById(`node-${node.id}`);
  if (!row) {
    row = el("tr", { id: `node-${node.id}` });
    for (const name of ["id", "role", "link", "state", "age", "values"]) row.append(el("td", { class: name }));
    row.addEventListener("click", () => select(node.id));
    body.append(row);
  }
  row.className = node.state;
  row.querySelector(".id").textContent = node.id;
  row.querySelector(".role").textContent = node.role;
  row.querySelector(".link").textContent = link(node);
  const state = el("span", { class: node.state }, node.state.replace("_", " "));
  if (node.alarms.length) state.append(`: ${node.alarms.join(", ")}`);
  row.querySelector(".state").replaceChildren(state);
  row.querySelector(".age").textContent = age(node);
  row.querySelector(".values").textContent = node.error ? node.error : valuesText(node);
}

function select(id) {
  page.selected = page.selected === id ? null : id;
  drawStreet();
  const detail = $("#detail");
  const node = page.nodes.get(page.selected);
  detail.hidden = !node;
  if (!node) return;
  $("#target").value = node.id;
  detail.replaceChildren(el("h3", {}, `${node.id} (${node.role})`),
    el("p", { class: "values" }, valuesText(node)));
  for (const name of page.plotted[node.role] || []) plot(detail, { name, node: node.id }, `${node.id} ${name}`);
}

// --- links, counters, who did what ------------------------------------------------------------------------
function drawLinks(view) {
  $("#title").textContent = `streetedge ${view.site}/${view.gateway}`;
  const broker = $("#broker");
  broker.textContent = view.broker.connected ? "broker connected" : "broker down";
  broker.className = `pill ${view.broker.connected ? "ok" : "bad"}`;
  $("#outbox").textContent = `outbox ${view.outbox.depth} · queue ${view.outbox.queue}`;
  $("#buses tbody").replaceChildren(...view.buses.map((b) => el("tr", {},
    el("td", {}, b.name), el("td", {}, b.connected ? "yes" : "no"),
    el("td", {}, `${(b.error_rate * 100).toFixed(1)} %`), el("td", {}, `${(b.skip_rate * 100).toFixed(1)} %`))));
  const c = view.commands;
  $("#counters").textContent = `commands: ${c.done || 0} done, ${c.rejected || 0} rejected, ${c.failed || 0} failed`;
}

async function loadActions() {
  const response = await fetch("/api/actions");
  if (!response.ok) return;
  const rows = await response.json();
  $("#actions tbody").replaceChildren(...rows.map((a) => el("tr", {},
    el("td", {}, clock(a.ts)), el("td", { class: "who" }, a.user),
    el("td", {}, `${a.action} ${a.target} ${a.params === "{}" ? "" : a.params}`),
    el("td", { class: a.status }, `${a.status}: ${a.detail}`))));
}

// --- events ------------------------------------------------------------------------------------------------
function eventText(e) {
  if (e.kind === "alarm") return `${e.node}: ${e.alarm.replaceAll("_", " ")} ${e.raised ? "RAISED" : "cleared"}`;
  if (e.kind === "link") return `${e.node} ${e.online ? "back online" : "OFFLINE" + (e.error ? ": " + e.error : "")}`;
  if (e.kind === "command") return `${e.user} asked: ${e.action} ${e.target} ${JSON.stringify(e.params)}`;
  if (e.kind === "result") return `command ${e.id} ${e.status}: ${e.detail}`;
  if (e.kind === "analytics") {
    const evidence = e.evidence.slice(-4).map(([t, v]) => `${fmt(v)} at ${clock(t)}`).join(", ");
    return `${e.node}: ${e.rule} FLAGGED (baseline ${fmt(e.baseline)}, observed ${fmt(e.observed)}): ${e.detail}` +
      (evidence ? `; evidence ${evidence}` : "");
  }
  return JSON.stringify(e);
}

function addEvent(e) {
  // A flag carries the time its detector fired (the reading's), which may be earlier than its arrival.
  const item = el("li", { class: `${e.kind} ${e.raised ? "raised" : ""}` }, `${clock(e.at ?? e.ts)} ${eventText(e)}`);
  $("#events").prepend(item);
  while ($("#events").children.length > 200) $("#events").lastChild.remove();
}

// --- energy saved (edge analytics' nightly street reports) ---------------------------------------------------
function night(n) { return new Date(n * 86400000).toISOString().slice(0, 10); }  // the date of its evening

function drawEnergy(rows) {
  $("#energy-section").hidden = rows.length === 0;
  $("#energy tbody").replaceChildren(...rows.map((r) => el("tr", { "data-street": r.street }, el("td", {}, r.street),
    el("td", {}, night(r.night)), el("td", {}, String(r.lamps)), el("td", {}, `${fmt(r.used_wh / 1000)} kWh`),
    el("td", {}, `${fmt(r.full_wh / 1000)} kWh`),
    el("td", { class: "saved" }, `${fmt(r.saved_wh / 1000)} kWh (${(r.share * 100).toFixed(1)} %)`))));
}

// --- plots (inline SVG) ---------------------------------------------------------------------------------------
async function plot(parent, query, caption) {
  const box = el("div", { class: "plot" });
  parent.append(box);
  const response = await fetch(`/api/history?${new URLSearchParams(query)}`);
  if (!response.ok) return;
  const { points } = await response.json();
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  let text = `${caption}: no samples yet`;
  if (points.length) {
    const ts = points.map((p) => p[0]), vs = points.map((p) => p[1]);
    const t0 = Math.min(...ts), t1 = Math.max(...ts), lo = Math.min(...vs), hi = Math.max(...vs);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.map(([t, v]) =>
      `${t1 > t0 ? ((t - t0) / (t1 - t0)) * 100 : 50},${38 - (hi > lo ? ((v - lo) / (hi - lo)) * 36 : 18)}`).join(" "));
    svg.append(line);
    const unit = (page.units[query.role || page.nodes.get(query.node)?.role] || {})[query.name] || "";
    text = `${caption}: ${fmt(vs[vs.length - 1])} ${unit} now (${fmt(lo)}…${fmt(hi)}), ${clock(t0)}–${clock(t1)}`;
  }
  box.append(svg, el("div", { class: "caption" }, text));
}

const STREET_PLOTS = [["lamp", "power", "street lighting power"], ["meter", "flow", "water flow"],
                      ["env", "pm25", "PM2.5 (sum of sensors)"]];

function drawPlots() {
  const plots = $("#plots");
  plots.replaceChildren();
  for (const [role, name, caption] of STREET_PLOTS) {
    if ((page.plotted[role] || []).includes(name)) plot(plots, { role, name }, caption);
  }
}

// --- commands ----------------------------------------------------------------------------------------------------
function showParams() {
  const action = $("#action").value;
  for (const label of document.querySelectorAll(".param")) label.hidden = !label.dataset.for.split(" ").includes(action);
}

function setupCommands(state) {
  const target = $("#target");
  target.replaceChildren(el("option", { value: "all" }, "the whole street"),
    ...state.groups.map((g) => el("option", { value: `group:${g}` }, `group ${g}`)),
    ...state.nodes.map((n) => el("option", { value: n.id }, n.id)));
  $("#action").replaceChildren(...state.actions.map((a) => el("option", { value: a }, a)));
  $("#act").hidden = state.actions.length === 0;
  showParams();
}

async function send(event) {
  event.preventDefault();
  const action = $("#action").value;
  const params = {};
  if (action === "dim" || action === "override") params.level = Number($("#level").value);
  if (action === "override") params.minutes = Number($("#minutes").value);
  if (action === "switch") params.on = $("#on").checked;
  // An empty id is not sent: the router names the missing parameter rather than guessing a roll-out.
  if (action === "cancel_update" && $("#rollout").value.trim()) params.rollout = $("#rollout").value.trim();
  const result = $("#result");
  result.className = "";
  result.textContent = `${action} ${$("#target").value}: sent, waiting for the nodes' read-back…`;
  $("#send").disabled = true;
  try {
    const response = await fetch("/api/command", {
      method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": page.csrf },
      body: JSON.stringify({ target: $("#target").value, action, params }) });
    if (!response.ok) {
      result.className = "rejected";
      result.textContent = `refused (${response.status}): ${await response.text()}`;
      return;
    }
    const answer = await response.json();
    result.className = answer.status;
    result.textContent = `${answer.status}: ${answer.detail}`;
    loadActions();
  } finally {
    $("#send").disabled = false;
  }
}

// --- the live stream ------------------------------------------------------------------------------------------------
function apply(update, whole) {
  page.view = { ...(page.view || {}), ...update };
  if (whole) {
    page.nodes.clear();
    $("#nodes tbody").replaceChildren();
    $("#street").replaceChildren();
    page.units = update.units;
    page.plotted = update.plotted;
  }
  for (const node of update.nodes) {  // a whole node (state) or what changed of it (update)
    const known = whole ? undefined : page.nodes.get(node.id);
    page.nodes.set(node.id, known ? { ...known, ...node, values: { ...known.values, ...(node.values || {}) } } : node);
  }
  for (const node of page.nodes.values()) drawNode(node);
  drawStreet();
  drawLinks(page.view);
  document.body.dataset.nodes = String(page.nodes.size);
}

function connect() {
  const live = $("#live");
  const stream = new EventSource("/api/events");
  stream.addEventListener("state", (m) => {
    const state = JSON.parse(m.data);
    apply(state, true);
    $("#events").replaceChildren();
    for (const e of state.events) addEvent(e);
    drawEnergy(state.energy);
    live.textContent = "live"; live.className = "pill ok";
  });
  stream.addEventListener("update", (m) => apply(JSON.parse(m.data), false));
  stream.addEventListener("event", (m) => {
    const e = JSON.parse(m.data);
    addEvent(e);
    if (e.kind === "result" || e.kind === "command") loadActions();
  });
  stream.addEventListener("energy", (m) => drawEnergy(JSON.parse(m.data)));
  stream.onerror = () => { live.textContent = "reconnecting"; live.className = "pill bad"; };
}

async function start() {
  const response = await fetch("/api/state");
  if (response.status === 401) { location.href = "/login"; return; }
  const state = await response.json();
  page.csrf = state.csrf;
  $("#logout-csrf").value = state.csrf;
  $("#user").textContent = state.user;
  apply(state, true);
  drawEnergy(state.energy);
  setupCommands(state);
  $("#action").addEventListener("change", showParams);
  $("#command").addEventListener("submit", send);
  drawPlots();
  setInterval(drawPlots, 60000);
  loadActions();
  connect();
}

start();
