/* airtrace one map: the central operator's view of the domain.
 *
 * Reads /api/v1/map/snapshot (stations, sites, areas, alerts, events, the stored inversion
 * hours), /api/v1/map/inversion (one hour: sources, heat layers, wind),
 * /api/v1/events/{id} (trail, orders, evidence) and /api/v1/stations/{id}/means.
 * Everything arrives in the domain's local metric frame (x east, y north, metres). Without a
 * tile server the map is that plane itself (L.CRS.Simple, 1 unit = 1 m); with one
 * ([api] map_tiles) the same points are projected to lat/lon with the frame's formula
 * (protocols/geo.py) and drawn on Web Mercator over the tiles.
 */
(function () {
  "use strict";

  const API = new URL("../api/v1/", window.location.href).href;
  const TOKEN_KEY = "airtrace.token";
  const EARTH_RADIUS_M = 6371008.8; // protocols/geo.py
  const params = new URLSearchParams(window.location.search);
  const REFRESH_S = Number(params.get("refresh") ?? 60);

  const LEVEL_COLOUR = { blue: "#1e88e5", yellow: "#fdd835", orange: "#fb8c00", red: "#e53935" };
  const CONDITION = {
    online: { stroke: "#263238", dash: "", width: 1.5, label: "online" },
    stale: { stroke: "#9e9e9e", dash: "3 2", width: 2, label: "stale (no recent data)" },
    offline: { stroke: "#616161", dash: "3 2", width: 2, label: "offline", fill: "#bdbdbd" },
    stuck: { stroke: "#6a1b9a", dash: "", width: 3, label: "stuck (flat signal)" },
    drift: { stroke: "#c2185b", dash: "1 2", width: 3, label: "drifting from neighbours" },
    unknown: { stroke: "#9e9e9e", dash: "1 2", width: 1.5, label: "unknown" },
  };
  // HJ 633-2012 IAQI breakpoints (ug/m3, 24 h) and the usual grade colours.
  const GRADES = {
    pm25: [35, 75, 115, 150, 250],
    pm10: [50, 150, 250, 350, 420],
  };
  const GRADE_COLOURS = ["#00e400", "#ffff00", "#ff7e00", "#ff0000", "#99004c", "#7e0023"];
  const SITE_STYLE = {
    construction: { letter: "C", colour: "#8d6e63" },
    industrial: { letter: "I", colour: "#546e7a" },
    restaurant: { letter: "R", colour: "#00897b" },
    traffic: { letter: "T", colour: "#9e7d0a" },
    other: { letter: "O", colour: "#757575" },
  };
  const OPEN_STATES = ["new", "filed", "dispatched", "acknowledged", "in_progress", "verifying"];

  const $ = (id) => document.getElementById(id);
  const esc = (v) =>
    String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const fmt = (v, d = 1) => (v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toFixed(d));
  const when = (iso) => {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? esc(iso) : d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
  };

  // -- the API, with the token asked once and kept in this tab ------------------------
  let tokenWait = null;
  function askToken(why) {
    if (!tokenWait) {
      tokenWait = new Promise((resolve) => {
        $("loginwhy").textContent = why || "This service needs an API token.";
        $("login").hidden = false;
        $("token").focus();
        $("loginform").onsubmit = (e) => {
          e.preventDefault();
          sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
          $("login").hidden = true;
          tokenWait = null;
          resolve();
        };
      });
    }
    return tokenWait;
  }

  async function api(path) {
    for (;;) {
      const token = sessionStorage.getItem(TOKEN_KEY);
      const headers = token ? { Authorization: "Bearer " + token } : {};
      const r = await fetch(API + path, { headers });
      if (r.status === 401) {
        if (token) sessionStorage.removeItem(TOKEN_KEY);
        await askToken(token ? "That token was refused; give another." : null);
        continue;
      }
      if (!r.ok) {
        let detail = r.statusText;
        try { detail = (await r.json()).detail || detail; } catch (_) { /* not JSON */ }
        const err = new Error(`${path}: ${r.status} ${detail}`);
        err.status = r.status;
        throw err;
      }
      return r.json();
    }
  }

  function status(text, bad) {
    $("status").textContent = text || "";
    $("status").className = bad ? "bad" : "";
  }

  // -- the map and its frame ----------------------------------------------------------
  let map = null;
  let frame = null; // {simple, origin}
  const layers = {};
  let snap = null;
  let hours = [];
  let current = null; // the inversion hour on the map

  function P(x, y) {
    if (frame.simple) return L.latLng(y, x);
    const o = frame.origin;
    const lat = o.lat + (y / EARTH_RADIUS_M) * (180 / Math.PI);
    const lon = o.lon + (x / (EARTH_RADIUS_M * Math.cos((o.lat * Math.PI) / 180))) * (180 / Math.PI);
    return L.latLng(lat, lon);
  }

  function extentOf(s) {
    return s.domain.extent || [0, 0, 1000, 1000];
  }

  function createMap(s) {
    const simple = !s.tiles;
    frame = { simple, origin: s.domain.origin };
    map = L.map("map", {
      crs: simple ? L.CRS.Simple : L.CRS.EPSG3857,
      minZoom: simple ? -8 : 3,
      maxZoom: simple ? 4 : 19,
      zoomSnap: 0.25,
      attributionControl: !simple,
    });
    if (!simple) {
      L.tileLayer(s.tiles.url, { attribution: s.tiles.attribution || "", maxZoom: 19 }).addTo(map);
    }
    L.control.scale({ imperial: false, metric: true, maxWidth: 160 }).addTo(map);
    const [x0, y0, x1, y1] = extentOf(s);
    map.fitBounds(L.latLngBounds(P(x0, y0), P(x1, y1)), { padding: [16, 16] });
    const canvas = L.canvas({ padding: 0.3 });
    layers.grid = L.layerGroup().addTo(map);
    layers.surface = L.layerGroup().addTo(map);
    layers.inventory = L.layerGroup();
    layers.areas = L.layerGroup().addTo(map);
    layers.sites = L.layerGroup().addTo(map);
    layers.stations = L.layerGroup().addTo(map);
    layers.sources = L.layerGroup().addTo(map);
    layers.wind = L.layerGroup().addTo(map);
    layers.alerts = L.layerGroup().addTo(map);
    layers.events = L.layerGroup().addTo(map);
    layers.canvas = canvas;
    const overlays = {
      '<span class="sw sw-grid"></span>Grid': layers.grid,
      '<span class="sw sw-heat"></span>Likelihood (first source)': layers.surface,
      '<span class="sw sw-inv"></span>Gridded inventory': layers.inventory,
      '<span class="sw sw-area"></span>Areas': layers.areas,
      '<span class="sw sw-site"></span>Sites': layers.sites,
      '<span class="sw sw-st"></span>Stations': layers.stations,
      '<span class="sw sw-src"></span>Sources': layers.sources,
      '<span class="sw sw-wind"></span>Wind': layers.wind,
      '<span class="sw sw-alert"></span>Alerts': layers.alerts,
      '<span class="sw sw-event"></span>Events': layers.events,
    };
    L.control.layers(null, overlays, { collapsed: false, position: "topright" }).addTo(map);
    legendBox = L.control({ position: "bottomright" });
    legendBox.onAdd = () => {
      const div = L.DomUtil.create("div", "legend");
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      return div;
    };
    legendBox.addTo(map);
    windBox = L.control({ position: "topleft" });
    windBox.onAdd = () => L.DomUtil.create("div", "windbox leaflet-bar");
    windBox.addTo(map);
    map.on("overlayadd overlayremove", (e) => {
      if (e.layer === layers.wind) windBox.getContainer().hidden = e.type === "overlayremove";
    });
    map.on("zoomend", zoomClasses);
    zoomClasses();
  }
  let windBox = null;
  let legendBox = null;

  function pxPerMetre() {
    const [x0, y0] = extentOf(snap);
    const p0 = map.latLngToContainerPoint(P(x0, y0));
    const p1 = map.latLngToContainerPoint(P(x0 + 1000, y0));
    return Math.abs(p1.x - p0.x) / 1000;
  }

  function zoomClasses() {
    if (!snap) return;
    const ppm = pxPerMetre();
    const el = map.getContainer();
    el.classList.toggle("near", ppm * 1000 >= 110);
    drawGrid();
  }

  // -- grid ---------------------------------------------------------------------------
  function drawGrid() {
    layers.grid.clearLayers();
    const [x0, y0, x1, y1] = extentOf(snap);
    const { cell_m: cell, grid_m: coarse } = snap.domain;
    const ppm = pxPerMetre();
    const lines = (step) => {
      const segs = [];
      for (let x = Math.ceil(x0 / step) * step; x <= x1 + 1e-6; x += step) segs.push([P(x, y0), P(x, y1)]);
      for (let y = Math.ceil(y0 / step) * step; y <= y1 + 1e-6; y += step) segs.push([P(x0, y), P(x1, y)]);
      return segs;
    };
    if (cell * ppm >= 7) {
      L.polyline(lines(cell), { renderer: layers.canvas, color: "#90a4ae", weight: 0.5, opacity: 0.6, interactive: false }).addTo(layers.grid);
    }
    L.polyline(lines(coarse), { renderer: layers.canvas, color: "#546e7a", weight: 1, opacity: 0.7, interactive: false }).addTo(layers.grid);
    L.rectangle(L.latLngBounds(P(x0, y0), P(x1, y1)), { renderer: layers.canvas, color: "#37474f", weight: 1.5, fill: false, interactive: false }).addTo(layers.grid);
    if (coarse * ppm >= 70) {
      for (let gx = Math.floor(x0 / coarse); gx * coarse < x1; gx++) {
        for (let gy = Math.floor(y0 / coarse); gy * coarse < y1; gy++) {
          const cx = Math.max(gx * coarse, x0) + 6 / ppm, cy = Math.min((gy + 1) * coarse, y1) - 6 / ppm;
          L.marker(P(cx, cy), {
            interactive: false,
            keyboard: false,
            icon: L.divIcon({ className: "cell-label", html: `g${gx}_${gy}`, iconSize: null, iconAnchor: [0, 0] }),
          }).addTo(layers.grid);
        }
      }
    }
  }

  // -- stations -----------------------------------------------------------------------
  function gradeColour(quantity, value) {
    const b = GRADES[quantity];
    if (!b) return "#4fc3f7";
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    return GRADE_COLOURS[i];
  }

  function shape(kind, fill, c) {
    const a = `fill="${fill}" stroke="${c.stroke}" stroke-width="${c.width}" stroke-dasharray="${c.dash}"`;
    switch (kind) {
      case "reference": return `<rect x="3" y="3" width="14" height="14" ${a}/>`;
      case "dust": return `<polygon points="10,2 18,17 2,17" ${a}/>`;
      case "met": return `<polygon points="10,2 18,10 10,18 2,10" ${a}/>`;
      case "high": return `<polygon points="10,2 17,6 17,14 10,18 3,14 3,6" ${a}/>`;
      case "micro": return `<circle cx="10" cy="10" r="6.5" ${a}/>`;
      default: return `<circle cx="10" cy="10" r="5" ${a}/>`;
    }
  }

  function drawStations() {
    layers.stations.clearLayers();
    const q = snap.quantity;
    for (const st of snap.stations) {
      const c = CONDITION[st.condition] || CONDITION.unknown;
      const v = st.latest;
      let fill = "#ffffff";
      if (c.fill) fill = c.fill;
      else if (v && v.valid) fill = gradeColour(q, v.value);
      const value = v && v.value !== null ? fmt(v.value, v.value < 10 ? 1 : 0) + (v.valid ? "" : v.q) : "–";
      const html =
        `<svg width="20" height="20" viewBox="0 0 20 20">${shape(st.kind, fill, c)}</svg>` +
        `<span class="val">${esc(value)}</span>`;
      const m = L.marker(P(st.x_m, st.y_m), {
        icon: L.divIcon({
          className: `at-station kind-${st.kind} cond-${st.condition}${st.status === "pending" ? " pending" : ""}`,
          html, iconSize: [20, 20], iconAnchor: [10, 10],
        }),
        title: `${st.id} (${st.kind}, ${st.condition})`,
        riseOnHover: true,
      });
      m.on("add", () => { m.getElement().dataset.id = st.id; });
      m.bindPopup(() => stationPopup(st), { minWidth: 240 });
      m.on("popupopen", () => sparkline(st));
      m.addTo(layers.stations);
    }
  }

  function stationPopup(st) {
    const v = st.latest;
    const c = CONDITION[st.condition] || CONDITION.unknown;
    return `<div class="pop"><b>${esc(st.id)}</b> ${esc(st.name || "")}<br>
      ${esc(st.kind)} station, ${esc(st.status)} · <span class="cond cond-${esc(st.condition)}">${esc(c.label)}</span>
      ${st.reasons.length ? `<br><small>${st.reasons.map(esc).join("; ")}</small>` : ""}
      <br>${esc(snap.quantity)}: <b>${v ? esc(fmt(v.value, 1)) + " " + esc(v.unit) : "no data"}</b>
      ${v ? `<small>(${esc(v.q)}, ${when(v.time)})</small>` : ""}
      <div class="spark" id="spark-${esc(st.id)}"><small>hourly means, last 24 h…</small></div></div>`;
  }

  async function sparkline(st) {
    const until = new Date(Date.parse(snap.time));
    const since = new Date(until.getTime() - 24 * 3600e3);
    const q = encodeURIComponent(snap.quantity);
    let rows;
    try {
      rows = await api(`stations/${encodeURIComponent(st.id)}/means?quantity=${q}&since=${since.toISOString()}&until=${until.toISOString()}&period=hour`);
    } catch (e) {
      rows = [];
    }
    const el = document.getElementById("spark-" + st.id);
    if (!el) return;
    const pts = rows.filter((r) => r.valid && r.value !== null);
    if (pts.length < 2) { el.innerHTML = "<small>fewer than two valid hourly means in 24 h</small>"; return; }
    const vs = pts.map((r) => r.value), lo = Math.min(...vs), hi = Math.max(...vs);
    const t0 = since.getTime(), span = 24 * 3600e3;
    const xy = pts.map((r) => `${((Date.parse(r.time) - t0) / span * 220).toFixed(1)},${(38 - ((r.value - lo) / (hi - lo || 1)) * 34).toFixed(1)}`);
    el.innerHTML = `<svg width="220" height="40"><polyline points="${xy.join(" ")}" fill="none" stroke="#1565c0" stroke-width="1.5"/></svg>
      <small>hourly means 24 h: ${fmt(lo)}–${fmt(hi)}</small>`;
  }

  // -- sites and areas ----------------------------------------------------------------
  function drawSites() {
    layers.sites.clearLayers();
    for (const s of snap.sites) {
      const st = SITE_STYLE[s.kind] || SITE_STYLE.other;
      const level = s.control_level ? `<span class="lvl">${esc(s.control_level)}</span>` : "";
      const m = L.marker(P(s.x_m, s.y_m), {
        icon: L.divIcon({
          className: `at-site kind-${s.kind}${s.control_level ? " controlled" : ""}`,
          html: `<span class="badge" style="background:${st.colour}">${st.letter}</span>${level}`,
          iconSize: [16, 16], iconAnchor: [8, 8],
        }),
        title: `${s.id} (${s.kind}${s.control_level ? ", " + s.control_level : ""})`,
      });
      m.on("add", () => { m.getElement().dataset.id = s.id; });
      m.bindPopup(`<div class="pop"><b>${esc(s.id)}</b> ${esc(s.name || "")}<br>${esc(s.kind)}
        ${s.control_level ? ` · control level <b>${esc(s.control_level)}</b>` : ""}
        ${s.enterprise ? `<br>${esc(s.enterprise)}` : ""}${s.address ? `<br><small>${esc(s.address)}</small>` : ""}
        <br><small>${s.persons} responsible person(s)</small></div>`);
      m.addTo(layers.sites);
    }
  }

  function drawAreas() {
    layers.areas.clearLayers();
    for (const a of snap.areas) {
      for (const poly of a.polygons) {
        L.polygon(poly.map((ring) => ring.map(([x, y]) => P(x, y))), {
          color: "#5e35b1", weight: 1.5, fillOpacity: 0.04, dashArray: "6 4",
        }).bindTooltip(`${esc(a.name || a.id)} (${esc(a.kind)})`, { sticky: true }).addTo(layers.areas);
      }
    }
  }

  // -- alerts and events --------------------------------------------------------------
  function drawAlerts() {
    layers.alerts.clearLayers();
    for (const a of snap.alerts) {
      const colour = LEVEL_COLOUR[a.level] || "#777";
      const cls = `at-alert level-${a.level} status-${a.status}${a.muted_by ? " muted" : ""}`;
      const dash = a.status !== "firing" || a.muted_by ? "4 3" : "";
      const m = L.marker(P(a.x_m, a.y_m), {
        icon: L.divIcon({
          className: cls,
          html: `<svg width="30" height="30"><circle cx="15" cy="15" r="12" fill="none" stroke="${colour}" stroke-width="3" stroke-dasharray="${dash}"/></svg>`,
          iconSize: [30, 30], iconAnchor: [15, 15],
        }),
        title: `${a.level} alert: ${a.summary}`,
        zIndexOffset: 500,
      });
      m.on("add", () => { m.getElement().dataset.fingerprint = a.fingerprint; });
      m.on("popupopen", (e) => {
        const link = e.popup.getElement().querySelector("a[data-event]");
        if (link) link.onclick = (ev) => { ev.preventDefault(); showEvent(link.dataset.event); };
      });
      m.bindPopup(`<div class="pop"><b class="lv" style="background:${colour}">${esc(a.level)}</b> ${esc(a.summary)}<br>
        ${esc(a.kind)} · ${esc(a.status)}${a.muted_by ? ` · muted (${esc(a.muted_by)})` : ""}<br>
        <small>since ${when(a.starts_at)}${a.value !== null ? ` · value ${fmt(a.value, 2)}` : ""}</small>
        ${a.event ? `<br><a href="#" data-event="${esc(a.event)}">event ${esc(a.event)}</a>` : ""}</div>`);
      m.addTo(layers.alerts);
    }
  }

  function drawEvents() {
    layers.events.clearLayers();
    for (const ev of snap.events) {
      const colour = LEVEL_COLOUR[ev.level] || "#777";
      const group = ev.state === "verifying" ? "verifying" : ev.open ? "open" : ev.state;
      const fill = ev.open ? colour : "#ffffff";
      const stroke = ev.open ? "#212121" : colour;
      const dash = group === "verifying" ? "3 2" : "";
      const html =
        `<svg width="24" height="24" viewBox="0 0 24 24"><polygon points="12,1 23,12 12,23 1,12" fill="${fill}" stroke="${stroke}" ` +
        `stroke-width="2" stroke-dasharray="${dash}"/><text x="12" y="16.5" text-anchor="middle">!</text></svg>`;
      const m = L.marker(P(ev.x_m, ev.y_m), {
        icon: L.divIcon({
          className: `at-event level-${ev.level} state-${ev.state}${ev.overdue ? " overdue" : ""}${ev.escalated ? " escalated" : ""}`,
          html, iconSize: [24, 24], iconAnchor: [12, 12],
        }),
        title: `${ev.level} event, ${ev.state}: ${ev.title}`,
        zIndexOffset: 1000,
      });
      m.on("add", () => { m.getElement().dataset.id = ev.id; });
      m.on("click", () => showEvent(ev.id));
      m.addTo(layers.events);
    }
  }

  async function showEvent(id) {
    $("panel").hidden = false;
    $("detail").innerHTML = `<p>event ${esc(id)}…</p>`;
    let ev;
    try {
      ev = await api(`events/${encodeURIComponent(id)}`);
    } catch (e) {
      $("detail").innerHTML = `<p class="bad">${esc(e.message)}</p>`;
      return;
    }
    const colour = LEVEL_COLOUR[ev.level] || "#777";
    const trail = (ev.log || []).map((e) => {
      const note = e.detail && (e.detail.note || e.detail.reason || e.detail.rule || "");
      const move = e.from_state || e.to_state ? `${esc(e.from_state || "")} → ${esc(e.to_state || "")}` : "";
      return `<tr><td>${when(new Date(e.ts * 1000).toISOString())}</td><td>${esc(e.actor)}<small> ${esc(e.role)}</small></td>
        <td><b>${esc(e.action)}</b> ${move}${note ? `<br><small>${esc(note)}</small>` : ""}</td></tr>`;
    }).join("");
    const orders = (ev.orders || []).map((o) =>
      `<li>${esc(o.cmd)} → ${esc(o.station)} (${esc(o.purpose)}): <b>${esc(o.status)}</b></li>`).join("");
    const evi = ev.evidence || {};
    const rate = (r) => (r ? `${fmt(r.rate_g_s, 3)} ± ${fmt(r.sigma_g_s, 3)} g/s (${r.detected_hours}/${r.hours} h)` : "–");
    const stations = (evi.stations || []).map((s) =>
      `<li>${esc(s.station)} (${fmt(s.distance_m, 0)} m): ${fmt(s.before_ug_m3)} → ${fmt(s.after_ug_m3)} µg/m³</li>`).join("");
    $("detail").innerHTML = `
      <h2 class="evtitle" data-id="${esc(ev.id)}"><span class="lv" style="background:${colour}">${esc(ev.level)}</span> ${esc(ev.title)}</h2>
      <p>${esc(ev.id)} · <b>${esc(ev.state)}</b>${ev.escalated ? " · escalated" : ""}${ev.rework ? ` · rework ×${ev.rework}` : ""}<br>
      ${esc(ev.kind)}${ev.site ? ` · site ${esc(ev.site)}` : ""}${ev.station ? ` · station ${esc(ev.station)}` : ""}${ev.cell ? ` · cell ${esc(ev.cell)}` : ""}<br>
      assignee: ${esc(ev.assignee || "nobody yet")}<br>
      <small>opened ${when(new Date(ev.created * 1000).toISOString())}
      ${ev.ack_due ? ` · ack due ${when(new Date(ev.ack_due * 1000).toISOString())}` : ""}
      ${ev.rectify_due ? ` · rectify due ${when(new Date(ev.rectify_due * 1000).toISOString())}` : ""}</small></p>
      <h3>Trail</h3><table class="trail">${trail || "<tr><td>no entries</td></tr>"}</table>
      ${orders ? `<h3>Orders to machines</h3><ul>${orders}</ul>` : ""}
      <h3>Evidence</h3>
      <p class="evidence">verdict: <b>${esc(evi.verdict || "–")}</b><br>
      before: ${rate(evi.before)}<br>after: ${rate(evi.after)}<br>
      reduction: ${evi.reduction === null || evi.reduction === undefined ? "–" : fmt(evi.reduction * 100, 0) + " %"}
      ${evi.z !== null && evi.z !== undefined ? ` (z ${fmt(evi.z, 1)})` : ""}</p>
      ${stations ? `<ul class="stch">${stations}</ul>` : ""}`;
  }

  // -- the inversion hour -------------------------------------------------------------
  function heatColour(t) {
    // a magma-like ramp, t in [0, 1]
    const stops = [[0, [252, 253, 191]], [0.35, [254, 159, 109]], [0.65, [222, 73, 104]], [0.85, [140, 41, 129]], [1, [59, 15, 112]]];
    let i = 1;
    while (i < stops.length - 1 && t > stops[i][0]) i++;
    const [ta, ca] = stops[i - 1], [tb, cb] = stops[i];
    const f = Math.min(Math.max((t - ta) / (tb - ta), 0), 1);
    const c = ca.map((v, k) => Math.round(v + f * (cb[k] - v)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function drawHeat(heat) {
    layers.surface.clearLayers();
    layers.inventory.clearLayers();
    if (!heat) return;
    const cellRect = (x0, y0, size, ix, iy) => L.latLngBounds(P(x0 + ix * size, y0 + iy * size), P(x0 + (ix + 1) * size, y0 + (iy + 1) * size));
    if (heat.surface) {
      const peak = heat.surface.max || 1;
      for (const [ix, iy, p] of heat.surface.cells) {
        const t = 1 + Math.log10(Math.max(p / peak, 1e-3)) / 3; // 1e-3 .. 1 of the peak
        L.rectangle(cellRect(heat.x0, heat.y0, heat.cell_m, ix, iy), {
          renderer: layers.canvas, stroke: false, fillColor: heatColour(t), fillOpacity: 0.25 + 0.45 * t,
        }).bindTooltip(`posterior ${(p * 100).toPrecision(2)} %`, { sticky: true }).addTo(layers.surface);
      }
    }
    if (heat.inventory) {
      const inv = heat.inventory, top = inv.max || 1;
      for (const [ix, iy, mean, sigma] of inv.cells) {
        const t = Math.min(mean / top, 1);
        L.rectangle(cellRect(inv.x0, inv.y0, inv.cell_m, ix, iy), {
          renderer: layers.canvas, stroke: false, fillColor: heatColour(t), fillOpacity: 0.2 + 0.5 * t,
        }).bindTooltip(`${fmt(mean, 3)} ± ${fmt(sigma, 3)} g/s`, { sticky: true }).addTo(layers.inventory);
      }
    }
  }

  function drawSources(res) {
    layers.sources.clearLayers();
    const siteById = Object.fromEntries(snap.sites.map((s) => [s.id, s]));
    (res.sources || []).forEach((s, i) => {
      const x = s.x_refined_m ?? s.x_m, y = s.y_refined_m ?? s.y_m;
      const tied = s.site ? siteById[s.site] : null;
      if (tied) {
        L.polyline([P(x, y), P(tied.x_m, tied.y_m)], { color: "#00838f", weight: 1.5, dashArray: "4 3", interactive: false }).addTo(layers.sources);
      }
      const label = `${fmt(s.rate_g_s, 2)} ± ${fmt(s.rate_sigma_g_s, 2)} g/s${s.site ? " · " + esc(s.site) : ""}`;
      const m = L.marker(P(x, y), {
        icon: L.divIcon({
          className: "at-source" + (s.edge ? " edge" : ""),
          html: `<svg width="26" height="26" viewBox="0 0 26 26"><polygon points="13,1 16.5,9 25,9.5 18.5,15 20.5,24 13,19.2 5.5,24 7.5,15 1,9.5 9.5,9" fill="#00e5ff" stroke="#000" stroke-width="1.5"/></svg><span class="srclabel">${label}</span>`,
          iconSize: [26, 26], iconAnchor: [13, 13],
        }),
        title: `source ${i + 1}: ${fmt(s.rate_g_s, 3)} g/s`,
        zIndexOffset: 800,
      });
      m.on("add", () => { const el = m.getElement(); el.dataset.rank = String(i + 1); el.dataset.x = String(x); el.dataset.y = String(y); });
      m.bindPopup(`<div class="pop"><b>source ${i + 1}</b> (${esc(current.hour)})<br>
        rate <b>${fmt(s.rate_g_s, 3)} ± ${fmt(s.rate_sigma_g_s, 3)} g/s</b><br>
        confidence ${fmt((s.confidence || 0) * 100, 0)} % (posterior mass of its cell and neighbours)<br>
        cell centre ${fmt(s.x_m, 0)}, ${fmt(s.y_m, 0)} m${s.x_refined_m !== undefined ? `; refined ${fmt(s.x_refined_m, 0)}, ${fmt(s.y_refined_m, 0)} m` : ""}
        ${s.site ? `<br>tied to site <b>${esc(s.site)}</b>` : "<br>no registered site within reach"}
        ${s.edge ? "<br><small>at the domain's edge: may lie outside</small>" : ""}</div>`);
      m.addTo(layers.sources);
    });
  }

  const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];
  // an arrow blowing downwind; rotated about its tail, which sits on the anchor
  const arrow = (fromDeg, px) =>
    `<svg width="${px / 2}" height="${px}" viewBox="0 0 10 20" style="transform-origin:50% 100%;transform:rotate(${(fromDeg + 180) % 360}deg)">` +
    `<line x1="5" y1="20" x2="5" y2="5" stroke="#2e7d32" stroke-width="2"/><polygon points="5,0 9.5,7 0.5,7" fill="#2e7d32"/></svg>`;

  function drawWind(wind) {
    layers.wind.clearLayers();
    const box = windBox.getContainer();
    const mean = wind && wind.mean;
    const compass = (deg) =>
      `<svg width="34" height="34" viewBox="0 0 20 20" style="transform:rotate(${(deg + 180) % 360}deg)">` +
      `<line x1="10" y1="18" x2="10" y2="5" stroke="#2e7d32" stroke-width="2"/><polygon points="10,1 14.5,7 5.5,7" fill="#2e7d32"/></svg>`;
    box.innerHTML = mean
      ? `${compass(mean.from_deg)}<div><b>${fmt(mean.speed_ms, 1)} m/s</b><br>from ${fmt(mean.from_deg, 0)}° ${COMPASS[Math.round(mean.from_deg / 45) % 8]}</div>`
      : "<div>no wind<br>this hour</div>";
    for (const w of (wind && wind.stations) || []) {
      L.marker(P(w.x_m, w.y_m), {
        icon: L.divIcon({ className: "at-wind", html: arrow(w.from_deg, 44), iconSize: [22, 44], iconAnchor: [11, 44] }),
        title: `${w.id}: ${fmt(w.speed_ms, 1)} m/s from ${fmt(w.from_deg, 0)}°`,
        interactive: false,
        zIndexOffset: -1000, // under the stations and their labels
      }).addTo(layers.wind);
    }
  }

  async function showHour(i) {
    const h = hours[i];
    if (!h) {
      layers.sources.clearLayers();
      drawHeat(null);
      drawWind(null);
      $("hourlabel").textContent = "no results";
      $("summary").textContent = "";
      document.body.dataset.hour = "";
      return;
    }
    $("hourlabel").textContent = `${when(h.hour)} · loading`;
    const q = encodeURIComponent($("invq").value);
    let got;
    try {
      got = await api(`map/inversion?quantity=${q}&hour=${encodeURIComponent(h.hour)}`);
    } catch (e) {
      status(e.message, true);
      return;
    }
    if (hours[Number($("hour").value)] !== h) return; // the slider moved on meanwhile
    current = got;
    const res = got.result;
    drawHeat(got.heat);
    drawSources(res);
    drawWind(got.wind);
    const n = (res.sources || []).length;
    $("hourlabel").textContent = `${when(got.hour)} · ${n} source${n === 1 ? "" : "s"}`;
    $("hourlabel").title = got.hour;
    $("summary").textContent = `background ${fmt(res.background_ug_m3)} · residual ${fmt(res.residual_rms_ug_m3)} µg/m³`;
    document.body.dataset.hour = got.hour;
  }

  // -- legend -------------------------------------------------------------------------
  function drawLegend() {
    const div = legendBox.getContainer();
    const wasOpen = !div.querySelector("details") || div.querySelector("details").open;
    const grade = (GRADES[snap.quantity] || []);
    const gradeRow = grade.length
      ? GRADE_COLOURS.map((col, i) => `<i style="background:${col}"></i>${i === 0 ? "≤" + grade[0] : i < grade.length ? "≤" + grade[i] : ">" + grade[grade.length - 1]}`).join(" ")
      : '<i style="background:#4fc3f7"></i>measured';
    const cond = Object.entries(CONDITION).map(([k, v]) =>
      `<span class="lg"><svg width="14" height="14"><circle cx="7" cy="7" r="5" fill="${v.fill || "#fff"}" stroke="${v.stroke}" stroke-width="${Math.min(v.width, 2.5)}" stroke-dasharray="${v.dash}"/></svg>${k}</span>`).join("");
    const kinds = ["reference", "micro", "dust", "met", "high"].map((k) =>
      `<span class="lg"><svg width="14" height="14" viewBox="0 0 20 20">${shape(k, "#fff", CONDITION.online)}</svg>${k}</span>`).join("");
    const sites = Object.entries(SITE_STYLE).map(([k, v]) => `<span class="lg"><span class="badge" style="background:${v.colour}">${v.letter}</span>${k}</span>`).join("");
    const levels = Object.entries(LEVEL_COLOUR).map(([k, v]) => `<span class="lg"><i style="background:${v}"></i>${k}</span>`).join("");
    div.innerHTML = `
      <details${wasOpen ? " open" : ""}><summary>Legend</summary>
      <div><b>Stations</b> by kind: ${kinds}</div>
      <div>outline = health: ${cond}</div>
      <div>fill = latest <span class="lq">${esc(snap.quantity)}</span> (µg/m³): ${gradeRow}</div>
      <div><b>Sites</b>: ${sites}; a label = control level</div>
      <div><b>Sources</b>: <span class="lg"><svg width="14" height="14" viewBox="0 0 26 26"><polygon points="13,1 16.5,9 25,9.5 18.5,15 20.5,24 13,19.2 5.5,24 7.5,15 1,9.5 9.5,9" fill="#00e5ff" stroke="#000" stroke-width="2"/></svg>rate ± 1σ</span>; heat = likelihood (log, 0.1–100 % of peak) or inventory (g/s)
        <span class="ramp"></span></div>
      <div><b>Alerts</b> (rings) and <b>events</b> (diamonds) by level: ${levels}</div>
      <div>event filled = open, dashed = verifying, hollow = closed; ring dashed = resolved or muted</div>
      <div><b>Wind</b>: arrows blow downwind (hour's mean top left)</div>
      <div><b>Grid</b>: ${snap.domain.cell_m} m cells when zoomed in; labelled ${snap.domain.grid_m} m grid cells</div>
      </details>`;
  }

  // -- loading ------------------------------------------------------------------------
  function fillSelect(el, values, chosen) {
    el.innerHTML = values.map((v) => `<option${v === chosen ? " selected" : ""}>${esc(v)}</option>`).join("");
    if (!values.length) el.innerHTML = `<option>${esc(chosen || "–")}</option>`;
  }

  function setHours(keepLatest) {
    const q = $("invq").value;
    const before = hours[Number($("hour").value)];
    hours = (snap.inversion.hours[q] || []);
    const slider = $("hour");
    slider.max = String(Math.max(hours.length - 1, 0));
    slider.disabled = hours.length < 2;
    let i = hours.length - 1;
    if (!keepLatest && before) {
      const j = hours.findIndex((h) => h.hour === before.hour);
      if (j >= 0) i = j;
    }
    slider.value = String(Math.max(i, 0));
    return showHour(i);
  }

  let loading = false;
  async function load(first) {
    if (loading) return;
    loading = true;
    try {
      await loadOnce(first);
    } finally {
      loading = false;
    }
  }

  async function loadOnce(first) {
    status("reading…");
    const wasLatest = !hours.length || Number($("hour").value) === hours.length - 1;
    const q = $("quantity").value;
    try {
      snap = await api(`map/snapshot${q && !first ? "?quantity=" + encodeURIComponent(q) : ""}`);
    } catch (e) {
      status(e.message, true);
      document.body.dataset.state = "error";
      return;
    }
    if (!map) createMap(snap);
    fillSelect($("quantity"), snap.quantities, snap.quantity);
    const invqs = Object.keys(snap.inversion.hours);
    const invq = invqs.includes($("invq").value) ? $("invq").value : snap.inversion.quantity || invqs[0];
    fillSelect($("invq"), invqs, invq);
    zoomClasses();
    drawLegend();
    drawAreas();
    drawSites();
    drawStations();
    drawAlerts();
    drawEvents();
    await setHours(first || wasLatest);
    const u = snap.unplaced;
    const missing = u.stations + u.sites + u.areas;
    status(`${snap.stations.length} stations · ${snap.sites.length} sites · ${snap.events.filter((e) => e.open).length} open events` +
      (missing ? ` · ${missing} without a position${snap.domain.origin ? "" : " (set [domain] origin)"}` : "") +
      ` · ${when(snap.time)}`);
    document.body.dataset.state = "ready";
  }

  function start() {
    $("quantity").onchange = () => load(false);
    $("invq").onchange = () => setHours(true);
    $("hour").oninput = () => showHour(Number($("hour").value));
    $("refresh").onclick = () => load(false);
    $("close").onclick = () => { $("panel").hidden = true; };
    load(true);
    if (REFRESH_S > 0) setInterval(() => load(false), REFRESH_S * 1000);
    window.airtrace = { get map() { return map; }, P: (x, y) => P(x, y), layers, showEvent, load };
  }

  start();
})();
