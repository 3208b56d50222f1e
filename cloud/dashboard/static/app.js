// RoadSense dashboard: draws the network, the city panel and a segment's
// charts from the cloud's JSON, then keeps them live from /api/events (SSE).
"use strict";

// Viridis, reversed so that free flow is light and severe congestion dark:
// distinguishable for the common colour-vision deficiencies, and every
// segment also shows its level as a number.
const PALETTE = ["#fde725", "#bddf26", "#7ad151", "#44bf70", "#22a884", "#21918c",
  "#2a788e", "#355f8d", "#414487", "#482475", "#440154"];
const NO_DATA = "#6b7480";
const SVG = "http://www.w3.org/2000/svg";
const BANDS = ["free", "light", "moderate", "heavy", "severe"];
const BAND_LEVEL = { free: 1, light: 3, moderate: 5, heavy: 7, severe: 9 };

let network = null;
let selected = null;

function colour(level) {
  return level == null ? NO_DATA : PALETTE[Math.max(0, Math.min(10, Math.round(level)))];
}
function textColour(level) {
  return level == null || Math.round(level) <= 5 ? "#000" : "#fff";
}
function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
function time(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "–";
}
async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (response.status === 401) { window.location = "/login"; throw new Error("logged out"); }
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

// Evidence stills: on request only (each asks the device for a snapshot, which the
// device refuses unless its privacy settings allow snapshots).
let evidenceFor = null;
function showEvidenceButtons(s) {
  const status = document.getElementById("evidence-status");
  const buttons = document.getElementById("evidence-cameras");
  const image = document.getElementById("evidence");
  if (evidenceFor !== s.id) { image.hidden = true; image.removeAttribute("src"); }
  evidenceFor = s.id;
  buttons.replaceChildren();
  if (!s.evidence) { status.textContent = "evidence stills are off on this cloud"; return; }
  if (!s.cameras.length) { status.textContent = "no camera of this segment measures"; return; }
  if (image.hidden) status.textContent = "a still of a camera, its vehicles boxed, on request";
  for (const c of s.cameras) {
    const button = document.createElement("button");
    button.textContent = c.camera;
    button.addEventListener("click", () => loadEvidence(s.id, c.camera));
    buttons.append(button);
  }
}
async function loadEvidence(segmentId, camera) {
  const status = document.getElementById("evidence-status");
  const image = document.getElementById("evidence");
  const [device, cam] = camera.split("/");
  status.textContent = `asking ${camera} for a still…`;
  const response = await fetch(`/api/evidence/${encodeURIComponent(device)}/${encodeURIComponent(cam)}`,
    { credentials: "same-origin" });
  if (response.status === 401) { window.location = "/login"; return; }
  if (evidenceFor !== segmentId) return; // the panel moved on to another segment
  if (!response.ok) {
    let why = String(response.status);
    try { why = (await response.json()).error; } catch (e) { /* not JSON */ }
    status.textContent = `${camera}: ${why}`;
    image.hidden = true;
    return;
  }
  const h = (name) => response.headers.get(name);
  if (image.src) URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(await response.blob());
  image.hidden = false;
  status.textContent = `${camera} at ${time(Number(h("X-Capture-Time-Ms")))}: ` +
    `${h("X-Vehicles")} vehicles in its region, occupancy ${Number(h("X-Occupancy")).toFixed(2)} ` +
    `(detector ${h("X-Detector-Version")}; one still: nothing called stopped)`;
}

function drawLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  PALETTE.forEach((c, level) => {
    const span = document.createElement("span");
    span.style.background = c;
    span.style.color = textColour(level);
    span.textContent = level;
    legend.appendChild(span);
  });
  const none = document.createElement("span");
  none.style.background = NO_DATA;
  none.textContent = "no level";
  legend.appendChild(none);
}

function drawNetwork(data) {
  network = data;
  const svg = document.getElementById("network");
  svg.replaceChildren();
  const points = data.segments.flatMap((s) => s.shape);
  const width = Math.max(1000, ...points.map((p) => p[0] + 40));
  svg.setAttribute("viewBox", `0 0 ${width} 1000`);
  const where = Object.fromEntries(data.segments.map((s) => [s.id, s.shape]));
  const middle = (shape) => shape[Math.floor(shape.length / 2)];
  for (const [a, b] of data.links) {
    if (!where[a] || !where[b] || !where[a].length || !where[b].length) continue;
    const [x1, y1] = middle(where[a]);
    const [x2, y2] = middle(where[b]);
    el("line", { class: "link", x1, y1, x2, y2 }, svg);
  }
  for (const segment of data.segments) {
    if (!segment.shape.length) continue;
    const group = el("g", { class: "segment", tabindex: "0", "data-segment": segment.id }, svg);
    const title = el("title", {}, group);
    title.textContent = segment.name;
    if (segment.shape.length > 1) {
      el("polyline", { points: segment.shape.map((p) => p.join(",")).join(" "), fill: "none",
        "stroke-width": 14, "stroke-linecap": "round" }, group);
    }
    const [x, y] = middle(segment.shape);
    el("circle", { cx: x, cy: y, r: 22 }, group);
    el("text", { x, y }, group);
    group.addEventListener("click", () => select(segment.id));
    group.addEventListener("keydown", (e) => { if (e.key === "Enter") select(segment.id); });
    group.addEventListener("mouseenter", () => { if (!selected) select(segment.id, true); });
    paintSegment(segment.id, segment.state, segment.speed);
  }
}

function paintSegment(id, state, speed) {
  const group = document.querySelector(`#network .segment[data-segment="${CSS.escape(id)}"]`);
  if (!group) return false;
  const level = state ? state.level : null;
  const fill = colour(level);
  group.dataset.level = level == null ? "" : level.toFixed(1);
  group.dataset.colour = fill;
  group.classList.toggle("stale", Boolean(state && state.stale));
  group.querySelector("circle").setAttribute("fill", fill);
  const line = group.querySelector("polyline");
  if (line) line.setAttribute("stroke", fill);
  const text = group.querySelector("text");
  text.setAttribute("fill", textColour(level));
  if (level != null) text.textContent = Math.round(level);
  else if (speed != null) text.textContent = Math.round(speed);
  else text.textContent = "–";
  return true;
}

function applyState(state) {
  const segment = network && network.segments.find((s) => s.id === state.id);
  if (!segment) { loadNetwork(); return; }  // a new segment: lay the network out again
  segment.state = state;
  paintSegment(state.id, state, segment.speed);
  if (selected === state.id) loadSegment(state.id);
}

function drawCity(city) {
  document.getElementById("city-index").textContent = city.congestion_index.toFixed(1);
  document.getElementById("as-of").textContent = "as of " + time(city.as_of_ms);
  const bands = document.getElementById("bands");
  bands.replaceChildren();
  for (const band of BANDS) {
    const li = document.createElement("li");
    li.style.background = colour(BAND_LEVEL[band]);
    li.style.color = textColour(BAND_LEVEL[band]);
    li.innerHTML = `<span>${band}</span><span>${city.segments_per_band[band] || 0}</span>`;
    bands.appendChild(li);
  }
  const stale = document.createElement("li");
  stale.innerHTML = `<span>stale</span><span>${city.stale_segments}</span>`;
  bands.appendChild(stale);
  document.getElementById("device-counts").textContent =
    `${city.devices_online} online, ${city.devices_offline} offline, ${city.devices_revoked} revoked`;
  const devices = document.getElementById("devices");
  devices.replaceChildren();
  for (const d of city.devices) {
    const li = document.createElement("li");
    li.className = d.revoked ? "revoked" : d.online ? "online" : "offline";
    const r = d.rollout;
    const model = r && r.model_version ? r.model_version : d.model_version;
    li.textContent = `${d.id} — model ${model || "?"} — last seen ${time(d.last_seen_ms)}`;
    if (r) {
      const part = document.createElement("span");
      part.className = `rollout rollout-${r.state}`;
      part.textContent = ` — rollout ${r.stage}: ${r.state.replace("_", " ")}` +
        (r.error ? ` (${r.error})` : "");
      li.appendChild(part);
    }
    devices.appendChild(li);
  }
  const rollout = document.getElementById("rollout");
  rollout.textContent = city.rollout
    ? `Rollout ${city.rollout.rollout_id} of ${city.rollout.model_version}: ` +
      `${city.rollout.state.replace("_", " ")} — ${city.rollout.reason}`
    : "No rollout";
  const ingest = city.ingest;
  document.getElementById("ingest").textContent =
    `${ingest.rate_per_s} msg/s; ${ingest.received} received, ${ingest.accepted} accepted, ` +
    `${ingest.duplicates} duplicates, ${ingest.rejected} rejected`;
  const codes = Object.entries(city.dead_letters.by_code).map(([c, n]) => `${c} ${n}`).join(", ");
  document.getElementById("dead-letters").textContent =
    `Dead letters: ${city.dead_letters.total}${codes ? " (" + codes + ")" : ""}`;
  lineChart(document.getElementById("index-chart"),
    [{ points: city.index_history.map((p) => [p.start_ms, p.index]), cls: "line" }], [0, 10]);
}

// A small SVG chart: series of [time_ms, value]; markers are labelled points.
function lineChart(svg, series, range, markers) {
  svg.replaceChildren();
  const w = 400, h = 150, pad = 28;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const all = series.flatMap((s) => s.points).concat((markers || []).map((m) => [m.t, m.v]));
  svg.dataset.points = all.length;
  if (!all.length) {
    el("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, svg).textContent = "no data yet";
    return;
  }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const lo = range ? range[0] : Math.min(0, ...all.map((p) => p[1]));
  const hi = range ? range[1] : Math.max(1, ...all.map((p) => p[1])) * 1.1;
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (w - 2 * pad);
  const y = (v) => h - pad + 10 - ((v - lo) / (hi - lo)) * (h - pad - 10);
  el("text", { x: 2, y: 12 }, svg).textContent = hi.toFixed(0);
  el("text", { x: 2, y: h - 18 }, svg).textContent = lo.toFixed(0);
  el("text", { x: pad, y: h - 4 }, svg).textContent = time(t0);
  el("text", { x: w - pad, y: h - 4, "text-anchor": "end" }, svg).textContent = time(t1);
  for (const s of series) {
    if (!s.points.length) continue;
    el("polyline", { class: s.cls, points: s.points.map((p) => `${x(p[0])},${y(p[1])}`).join(" ") }, svg);
  }
  for (const m of markers || []) {
    el("circle", { class: m.cls, cx: x(m.t), cy: y(m.v), r: 4 }, svg);
    el("text", { x: x(m.t), y: y(m.v) - 7, "text-anchor": "middle" }, svg).textContent = m.label;
  }
}

async function loadSegment(id) {
  const s = await getJson("/api/segments/" + encodeURIComponent(id));
  if (selected !== id) return;
  const panel = document.getElementById("segment");
  panel.hidden = false;
  document.getElementById("segment-name").textContent = s.name;
  const state = s.state;
  const lastSpeed = s.observations.length ? s.observations[s.observations.length - 1] : null;
  const facts = [
    ["Segment", s.id],
    ["Level", state ? `${state.level.toFixed(1)} / 10 (${state.label})` : "no camera reports"],
    ["Stale", state && state.stale ? "STALE — no recent reports" : state ? "no" : "–"],
    ["Cameras", state && state.cameras.length ? state.cameras.join(", ") : "none"],
    ["Measured", state && state.measured_cameras ? `${state.vehicles.toFixed(1)} vehicles, ` +
      `${state.stopped.toFixed(1)} stopped, occupancy ${state.occupancy.toFixed(2)} ` +
      `(${state.measured_cameras} camera${state.measured_cameras > 1 ? "s" : ""})` : "–"],
    ...s.cameras.map((c) => [c.camera, `${c.vehicles.toFixed(1)} vehicles, ` +
      `${c.stopped.toFixed(1)} stopped, ${c.level} by ${c.rule} at ${time(c.time_ms)}`]),
    ["Speed", lastSpeed ? `${lastSpeed.value.toFixed(1)} ${lastSpeed.unit} at ${time(lastSpeed.time_ms)}` : "–"],
    ["Last update", state ? time(state.updated_ms) : lastSpeed ? time(lastSpeed.time_ms) : "–"],
  ];
  const dl = document.getElementById("segment-facts");
  dl.replaceChildren();
  for (const [k, v] of facts) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    if (k === "Stale" && v.startsWith("STALE")) dd.className = "stale-flag";
    dl.append(dt, dd);
  }
  lineChart(document.getElementById("level-chart"),
    [{ points: s.history.map((p) => [p.start_ms, p.level]), cls: "line" }], [0, 10]);
  document.getElementById("measured-status").textContent = s.measured.length
    ? "per 15 minutes, cameras added up (line: vehicles; dashed: stopped)"
    : "no camera of this segment measures";
  lineChart(document.getElementById("measured-chart"), [
    { points: s.measured.map((b) => [b.start_ms, b.vehicles]), cls: "line" },
    { points: s.measured.map((b) => [b.start_ms, b.stopped]), cls: "forecast-line" },
  ]);
  showEvidenceButtons(s);
  const f = s.forecast;
  const status = document.getElementById("forecast-status");
  const chart = document.getElementById("forecast-chart");
  const observed = s.observations.map((o) => [o.time_ms, o.value]);
  if (!f) {
    status.textContent = s.forecast_unavailable;
    chart.dataset.stale = "";
    lineChart(chart, [{ points: observed, cls: "line" }]);
    return;
  }
  const cls = f.stale ? "stale" : "";
  status.innerHTML = "";
  status.textContent = `model ${f.model_version}, from ${time(f.origin_ms)}, ` +
    `${Math.round(f.missing_fraction * 100)}% of inputs missing`;
  if (f.stale) {
    const flag = document.createElement("span");
    flag.className = "stale-flag"; flag.textContent = "STALE forecast";
    status.append(" ", flag);
  }
  chart.dataset.stale = f.stale ? "true" : "false";
  const minutes = f.interval_ms / 60000;
  const ahead = f.points.map((p) => [p.target_ms, p.value]);
  const last = observed.length ? [observed[observed.length - 1]] : [];
  lineChart(chart, [
    { points: observed, cls: "line" },
    { points: last.concat(ahead), cls: "forecast-line " + cls },
  ], null, f.points.map((p) => ({ t: p.target_ms, v: p.value, cls: "horizon " + cls,
    label: `+${p.horizon * minutes}′` })));
}

function select(id, hover) {
  if (!hover) {
    selected = id;
    document.querySelectorAll("#network .segment.selected").forEach((g) => g.classList.remove("selected"));
    const group = document.querySelector(`#network .segment[data-segment="${CSS.escape(id)}"]`);
    if (group) group.classList.add("selected");
  }
  const previous = selected;
  selected = id;
  loadSegment(id).catch(console.error).finally(() => { if (hover) selected = previous; });
}

async function loadNetwork() { drawNetwork(await getJson("/api/network")); }
async function loadCity() { drawCity(await getJson("/api/city")); }

function connect() {
  const banner = document.getElementById("connection");
  const events = new EventSource("/api/events");
  events.onopen = () => {
    // After a drop, catch up on whatever changed while we were away.
    if (!banner.hidden) { loadNetwork(); loadCity(); }
    banner.hidden = true;
    document.body.dataset.live = "true";
  };
  events.onerror = () => {
    banner.hidden = false;
    document.body.dataset.live = "false";
    if (events.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  };
  events.addEventListener("segment", (e) => applyState(JSON.parse(e.data)));
  events.addEventListener("states", (e) => JSON.parse(e.data).forEach(applyState));
  events.addEventListener("city", (e) => drawCity(JSON.parse(e.data)));
}

drawLegend();
Promise.all([loadNetwork(), loadCity()]).then(connect).catch(console.error);
