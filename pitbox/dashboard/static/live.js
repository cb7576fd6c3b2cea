// PitBox live canvas (anywidget): live traces by distance over the reference lap, the track
// map with the cars, the delta bar and the last braking zone; or the team strip and map.
//
// The kernel sends {type: "update", seq, full, ...} with float32 buffers holding only the new
// samples (the whole lap and the reference when full). Data is merged into this view's store
// as soon as it arrives; painting happens in requestAnimationFrame, after which the view
// acknowledges the newest update it painted (cumulatively, every window/2 updates or ACK_MS
// after a paint: each page-to-kernel message costs the page a kernel busy/idle round). The
// kernel keeps at most `window` updates unacknowledged (none after a full snapshot), so a
// slow or hidden page never builds a backlog. On render the view says "ready" and gets a
// full snapshot, so a page that opens late starts cleanly.

const LANES = [
  { key: "Speed", label: "Speed", unit: "km/h", scale: 3.6, color: "#ff2d55" },
  { key: "Throttle", label: "Throttle", unit: "%", scale: 100, min: 0, max: 100, color: "#34c759" },
  { key: "Brake", label: "Brake", unit: "%", scale: 100, min: 0, max: 100, color: "#ff3b30" },
  { key: "SteeringWheelAngle", label: "Steering", unit: "deg", scale: 57.29578, symmetric: true, color: "#af52de" },
  { key: "Gear", label: "Gear", unit: "", scale: 1, min: 0, color: "#ff9500", step: true },
  { key: "pitbox_delta_s", label: "Delta", unit: "s", scale: 1, symmetric: true, color: "#0a84ff", zeroLine: true },
];
const REF_COLOR = "rgba(150,150,150,0.9)";
const ME_COLOR = "#ff2d55"; // the player's car on the map (the tests look for it)
const OTHER_COLOR = "#5ac8fa";
const TEAM_COLORS = ["#ff2d55", "#0a84ff", "#34c759", "#ff9500", "#af52de", "#ffd60a", "#64d2ff", "#ff6482"];
const STATS_KEY = "__pitboxDashboardStats";
const KINDS = { session_best: "session best", all_time_best: "all-time best", optimal: "optimal", lap: "lap" };

const ACK_MS = 1000;
const HEADER_MS = 250; // the header's numbers (DOM text) change at most this often [ms]

class Acker {
  // cumulative acks of painted updates: at most one message per window/2 updates, and never
  // later than ACK_MS after a paint (so the kernel's window never stays full)
  constructor(model) {
    this.model = model;
    this.recvSeq = null; this.recvCount = 0; this.window = 1; this.full = false;
    this.paintedSeq = null; this.paintedCount = 0; this.lag = null; this.paintMs = null; this.timer = null;
  }
  got(msg) {
    this.recvSeq = msg.seq; this.recvCount++; this.window = msg.window || 1;
    if (msg.full) this.full = true;
  }
  painted(lag, paintMs) {
    // everything received so far is on screen
    if (this.recvSeq === null || this.recvSeq === this.paintedSeq) return;
    this.paintedSeq = this.recvSeq; this.paintedCount = this.recvCount;
    if (lag !== null) this.lag = lag;
    this.paintMs = paintMs;
    if (this.full || this.paintedCount >= Math.max(1, this.window >> 1)) this.flush();
    else if (this.timer === null) this.timer = setTimeout(() => this.flush(), ACK_MS);
  }
  flush() {
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    if (this.paintedSeq === null || this.paintedCount === 0) return;
    this.model.send({ type: "ack", seq: this.paintedSeq, lag_ms: this.lag, paint_ms: this.paintMs });
    this.recvCount -= this.paintedCount; this.paintedCount = 0; this.full = false; this.lag = null;
  }
  reset() {
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    this.recvSeq = this.paintedSeq = null; this.recvCount = this.paintedCount = 0; this.full = false;
  }
}

function f32(view, n, k) {
  // a float32 block of k columns x n rows, copied out of the (possibly unaligned) DataView
  const bytes = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
  const all = new Float32Array(bytes);
  const cols = [];
  for (let j = 0; j < k; j++) cols.push(all.subarray(j * n, (j + 1) * n));
  return cols;
}

function fmtLap(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  const m = Math.floor(s / 60);
  const r = s - 60 * m;
  return m > 0 ? `${m}:${r.toFixed(3).padStart(6, "0")}` : r.toFixed(3);
}

function fmtDelta(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  return (s >= 0 ? "+" : "−") + Math.abs(s).toFixed(3);
}

function percentile(arr, p) {
  if (!arr.length) return null;
  const a = Array.from(arr).sort((x, y) => x - y);
  return a[Math.min(a.length - 1, Math.floor((p / 100) * a.length))];
}

function setText(node, text) {
  // only touch the DOM when the text changes (each change costs the page a layout)
  if (node.textContent !== text) node.textContent = text;
}

function el(tag, attrs = {}, parent = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  if (parent) parent.appendChild(e);
  return e;
}

class Store {
  constructor() {
    this.reset();
    this.ref = null;
    this.zone = null;
    this.team = null;
  }
  reset() {
    this.lapId = -1;
    this.n = 0;
    this.cap = 0;
    this.cols = {};
    this.names = [];
  }
  ensure(names, need) {
    if (this.cap >= need && this.names.join() === names.join()) return;
    const cap = Math.max(need, this.cap * 2, 2048);
    const cols = {};
    for (const name of names) {
      const a = new Float32Array(cap);
      if (this.cols[name]) a.set(this.cols[name].subarray(0, this.n));
      cols[name] = a;
    }
    this.cols = cols;
    this.cap = cap;
    this.names = names.slice();
  }
  appendTrace(tr, view) {
    const cols = f32(view, tr.n, tr.columns.length);
    if (tr.lap_id !== this.lapId || tr.start === 0) {
      this.reset();
      this.lapId = tr.lap_id;
      this.lapReset = true;
    }
    const start = Math.min(tr.start, this.n);
    this.ensure(tr.columns, start + tr.n);
    tr.columns.forEach((name, j) => this.cols[name].set(cols[j], start));
    this.n = start + tr.n;
  }
  setReference(ref, buffers) {
    if (!ref) {
      this.ref = null;
      return;
    }
    const cols = f32(buffers[ref.buffer], ref.n, ref.columns.length);
    const data = {};
    ref.columns.forEach((name, j) => (data[name] = cols[j]));
    let map = null;
    if (ref.map_buffer !== null && ref.map_buffer !== undefined) {
      const xy = f32(buffers[ref.map_buffer], ref.n, 2);
      map = { x: xy[0], y: xy[1] };
    }
    this.ref = { ...ref, data, map };
  }
  setZone(zone, buffers) {
    const z = { ...zone, data: {} };
    if (zone.buffer !== null && zone.buffer !== undefined && zone.n > 0) {
      const cols = f32(buffers[zone.buffer], zone.n, zone.columns.length);
      zone.columns.forEach((name, j) => (z.data[name] = cols[j]));
    }
    this.zone = z;
  }
}

function laneRange(lane, store) {
  let lo = lane.min, hi = lane.max;
  if (lo !== undefined && hi !== undefined) return [lo, hi];
  let mx = 0, mn = 0;
  const scan = (a, n) => {
    for (let i = 0; i < n; i++) {
      const v = a[i] * lane.scale;
      if (isFinite(v)) { if (v > mx) mx = v; if (v < mn) mn = v; }
    }
  };
  if (store.ref && store.ref.data[lane.key]) scan(store.ref.data[lane.key], store.ref.n);
  if (store.cols[lane.key]) scan(store.cols[lane.key], store.n);
  if (lane.symmetric) {
    const m = Math.max(Math.abs(mx), Math.abs(mn), lane.key === "pitbox_delta_s" ? 0.5 : 30);
    return [-m * 1.1, m * 1.1];
  }
  if (lane.key === "Gear") return [0, Math.max(mx, 4) + 0.5];
  return [lo !== undefined ? lo : 0, Math.max(mx * 1.08, 1)];
}

function sizeCanvas(c, w, h) {
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
    c.style.width = w + "px";
    c.style.height = h + "px";
  }
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

class TracePanel {
  constructor(parent) {
    this.box = el("div", { class: "pbx-traces", style: "position:relative;flex:2 1 520px;min-width:320px" }, parent);
    this.bg = el("canvas", { "data-pitbox": "traces-bg", style: "position:absolute;left:0;top:0" }, this.box);
    this.fg = el("canvas", { "data-pitbox": "traces", style: "position:absolute;left:0;top:0" }, this.box);
    this.ov = el("canvas", { "data-pitbox": "traces-zone", style: "position:absolute;left:0;top:0" }, this.box);
    // the cursor at the newest sample: a composited element moved by a transform, so the
    // 30 Hz move redraws and uploads no canvas (each changed canvas is copied whole per frame)
    this.cursor = el("div", { "data-pitbox": "traces-cursor",
      style: "position:absolute;left:0;top:0;width:1px;background:rgba(0,0,0,0.45);will-change:transform;display:none" }, this.box);
    this.zoneDrawn = undefined;
    this.laneH = 62;
    this.pad = { l: 84, r: 8, t: 4, b: 16 };
    this.drawn = 0;
    this.ranges = null;
  }
  layout() {
    this.w = Math.max(320, this.box.clientWidth || 600);
    this.h = this.pad.t + this.pad.b + LANES.length * this.laneH;
    this.box.style.height = this.h + "px";
    this.bgCtx = sizeCanvas(this.bg, this.w, this.h);
    this.fgCtx = sizeCanvas(this.fg, this.w, this.h);
    this.ovCtx = sizeCanvas(this.ov, this.w, this.h);
  }
  length(store) {
    return (store.ref && store.ref.length_m) || store.lengthM || 1000;
  }
  x(d, store) {
    return this.pad.l + (d / this.length(store)) * (this.w - this.pad.l - this.pad.r);
  }
  y(v, lane, i) {
    const [lo, hi] = this.ranges[i];
    const top = this.pad.t + i * this.laneH + 3;
    const h = this.laneH - 6;
    return top + h - ((v - lo) / (hi - lo || 1)) * h;
  }
  drawBackground(store) {
    this.layout();
    this.ranges = LANES.map((lane) => laneRange(lane, store));
    const ctx = this.bgCtx;
    ctx.clearRect(0, 0, this.w, this.h);
    ctx.font = "11px sans-serif";
    LANES.forEach((lane, i) => {
      const top = this.pad.t + i * this.laneH;
      ctx.fillStyle = i % 2 ? "#fafafa" : "#f2f2f2";
      ctx.fillRect(this.pad.l, top, this.w - this.pad.l - this.pad.r, this.laneH);
      ctx.fillStyle = "#333";
      ctx.fillText(lane.label, 4, top + 16);
      ctx.fillStyle = "#888";
      ctx.fillText(lane.unit, 4, top + 30);
      const [lo, hi] = this.ranges[i];
      ctx.textAlign = "right";
      ctx.fillText(String(Math.round(hi)), this.pad.l - 4, top + 12);
      if (!(lane.zeroLine || lane.symmetric)) ctx.fillText(String(Math.round(lo)), this.pad.l - 4, top + this.laneH - 4);
      ctx.textAlign = "left";
      if (lane.zeroLine || lane.symmetric) {
        ctx.strokeStyle = "#bbb";
        ctx.beginPath();
        const y0 = this.y(0, lane, i);
        ctx.moveTo(this.pad.l, y0);
        ctx.lineTo(this.w - this.pad.r, y0);
        ctx.stroke();
      }
    });
    if (store.ref) {
      for (const c of store.ref.corners || []) {
        if (c.start_m === null || c.end_m === null) continue;
        const x0 = this.x(c.start_m, store), x1 = this.x(c.end_m, store);
        ctx.fillStyle = "rgba(0,0,0,0.05)";
        ctx.fillRect(x0, this.pad.t, Math.max(1, x1 - x0), this.h - this.pad.t - this.pad.b);
        ctx.fillStyle = "#666";
        ctx.fillText(c.name, x0 + 2, this.h - 4);
      }
      LANES.forEach((lane, i) => {
        const a = store.ref.data[lane.key];
        if (!a) return;
        this.line(ctx, store.ref.data.d, a, 0, store.ref.n, lane, i, store, REF_COLOR, 1.2);
      });
    }
    this.drawn = 0;
    this.fgCtx.clearRect(0, 0, this.w, this.h);
    this.zoneDrawn = undefined;
    this.cursor.style.top = this.pad.t + "px";
    this.cursor.style.height = this.h - this.pad.t - this.pad.b + "px";
  }
  line(ctx, d, a, from, to, lane, i, store, color, width) {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    let pen = false;
    let lastD = -1e9;
    for (let k = from; k < to; k++) {
      const v = a[k];
      if (!isFinite(v) || !isFinite(d[k])) { pen = false; continue; }
      const x = this.x(d[k], store), y = this.y(v * lane.scale, lane, i);
      if (!pen || d[k] < lastD - 50) { ctx.moveTo(x, y); pen = true; } else ctx.lineTo(x, y);
      lastD = d[k];
    }
    ctx.stroke();
  }
  drawNew(store) {
    // only the samples not drawn yet (plus one to join the line); a new lap clears the layer
    if (store.lapReset) {
      this.fgCtx.clearRect(0, 0, this.w, this.h);
      this.drawn = 0;
      store.lapReset = false;
    }
    const from = Math.max(0, this.drawn - 1);
    if (store.n > from + 1 || (store.n && !this.drawn)) {
      LANES.forEach((lane, i) => {
        const a = store.cols[lane.key];
        if (a) this.line(this.fgCtx, store.cols.d, a, from, store.n, lane, i, store, lane.color, 1.6);
      });
    }
    this.drawn = store.n;
    if (store.n) {
      this.cursor.style.transform = `translateX(${this.x(store.cols.d[store.n - 1], store).toFixed(1)}px)`;
      this.cursor.style.display = "";
    } else this.cursor.style.display = "none";
    if (store.zone !== this.zoneDrawn) {  // the frozen braking zone changes once per zone
      this.zoneDrawn = store.zone;
      const ctx = this.ovCtx;
      ctx.clearRect(0, 0, this.w, this.h);
      if (store.zone) {
        const [a, b] = store.zone.window;
        ctx.strokeStyle = "rgba(255,59,48,0.6)";
        ctx.setLineDash([4, 3]);
        ctx.strokeRect(this.x(a, store), this.pad.t + 1, this.x(b, store) - this.x(a, store), this.h - this.pad.t - this.pad.b - 2);
        ctx.setLineDash([]);
      }
    }
  }
}

class MapPanel {
  constructor(parent, size = 300) {
    this.box = el("div", { class: "pbx-map", style: `position:relative;flex:none;width:${size}px;height:${size}px` }, parent);
    this.bg = el("canvas", { "data-pitbox": "map-bg", style: "position:absolute;left:0;top:0" }, this.box);
    this.ov = el("canvas", { "data-pitbox": "map", style: "position:absolute;left:0;top:0" }, this.box);
    this.size = size;
    this.fit = null;
  }
  layout() {
    this.bgCtx = sizeCanvas(this.bg, this.size, this.size);
    this.ovCtx = sizeCanvas(this.ov, this.size, this.size);
  }
  drawBackground(ref) {
    this.layout();
    const ctx = this.bgCtx, s = this.size;
    ctx.clearRect(0, 0, s, s);
    ctx.fillStyle = "#fbfbfb";
    ctx.fillRect(0, 0, s, s);
    this.fit = null;
    if (!ref || !ref.map) {
      ctx.strokeStyle = "#999";
      ctx.lineWidth = 8;
      ctx.beginPath();
      ctx.arc(s / 2, s / 2, s * 0.38, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.fillStyle = "#888";
      ctx.font = "11px sans-serif";
      ctx.fillText("no track map: schematic", 8, s - 8);
      return;
    }
    const { x, y } = ref.map;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < x.length; i++) {
      if (!isFinite(x[i]) || !isFinite(y[i])) continue;
      x0 = Math.min(x0, x[i]); x1 = Math.max(x1, x[i]); y0 = Math.min(y0, y[i]); y1 = Math.max(y1, y[i]);
    }
    const k = (s - 30) / Math.max(x1 - x0, y1 - y0, 1);
    const ox = (s - k * (x1 - x0)) / 2, oy = (s - k * (y1 - y0)) / 2;
    this.fit = (px, py) => [ox + k * (px - x0), s - (oy + k * (py - y0))];
    ctx.strokeStyle = "#bbb";
    ctx.lineWidth = 7;
    ctx.lineJoin = "round";
    ctx.beginPath();
    for (let i = 0; i < x.length; i++) {
      const [px, py] = this.fit(x[i], y[i]);
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    }
    ctx.closePath();
    ctx.stroke();
    const [sx, sy] = this.fit(x[0], y[0]);
    ctx.fillStyle = "#000";
    ctx.fillRect(sx - 2, sy - 6, 4, 12);
    ctx.font = "11px sans-serif";
    ctx.fillStyle = "#555";
    for (const c of ref.corners || []) {
      if (c.x === null || c.y === null) continue;
      const [px, py] = this.fit(c.x, c.y);
      ctx.fillText(c.name, px + 6, py - 6);
    }
  }
  pos(car) {
    const s = this.size;
    if (this.fit && car.x !== null && car.x !== undefined) return this.fit(car.x, car.y);
    if (car.pct === null || car.pct === undefined) return null;
    const a = 2 * Math.PI * car.pct - Math.PI / 2;
    return [s / 2 + s * 0.38 * Math.cos(a), s / 2 + s * 0.38 * Math.sin(a)];
  }
  drawCars(cars) {
    const ctx = this.ovCtx;
    ctx.clearRect(0, 0, this.size, this.size);
    // others first, the highlighted cars on top
    const order = cars.slice().sort((a, b) => (a.me === b.me ? 0 : a.me ? 1 : -1));
    for (const car of order) {
      const p = this.pos(car);
      if (!p) continue;
      ctx.beginPath();
      ctx.arc(p[0], p[1], car.me ? 7 : 5, 0, 2 * Math.PI);
      ctx.fillStyle = car.color || (car.me ? ME_COLOR : OTHER_COLOR);
      ctx.globalAlpha = car.pit ? 0.45 : 1;
      ctx.fill();
      ctx.globalAlpha = 1;
      if (car.label) {
        ctx.fillStyle = "#222";
        ctx.font = "11px sans-serif";
        ctx.fillText(car.label, p[0] + 9, p[1] + 4);
      }
    }
  }
}

class ZonePanel {
  constructor(parent) {
    this.box = el("div", { class: "pbx-zone", style: "margin-top:6px" }, parent);
    this.title = el("div", { "data-pitbox": "zone", style: "font:12px sans-serif;color:#333;margin-bottom:2px",
      text: "last braking zone: none yet" }, this.box);
    this.canvas = el("canvas", { "data-pitbox": "zone-canvas", style: "display:none" }, this.box);
    this.version = null;
  }
  draw(store) {
    const z = store.zone;
    if (!z || z === this.version) return;
    this.version = z;
    this.title.textContent = `last braking zone (lap ${z.lap ?? "?"}): ${z.summary}`;
    this.canvas.style.display = "";
    const w = Math.max(320, this.box.clientWidth || 600), h = 110;
    const ctx = sizeCanvas(this.canvas, w, h);
    ctx.clearRect(0, 0, w, h);
    const [a, b] = z.window;
    const X = (d) => 40 + ((d - a) / (b - a || 1)) * (w - 48);
    const lanes = [
      { key: "Brake", scale: 100, lo: 0, hi: 100, top: 4, h: 48, color: "#ff3b30", label: "Brake %" },
      { key: "Speed", scale: 3.6, lo: null, hi: null, top: 56, h: 48, color: "#ff2d55", label: "km/h" },
    ];
    ctx.font = "10px sans-serif";
    for (const L of lanes) {
      let lo = L.lo, hi = L.hi;
      if (lo === null) {
        lo = Infinity; hi = -Infinity;
        const scan = (d, v) => { for (let i = 0; i < v.length; i++) if (d[i] >= a && d[i] <= b && isFinite(v[i])) { lo = Math.min(lo, v[i] * L.scale); hi = Math.max(hi, v[i] * L.scale); } };
        if (z.data[L.key]) scan(z.data.d, z.data[L.key]);
        if (store.ref && store.ref.data[L.key]) scan(store.ref.data.d, store.ref.data[L.key]);
        if (!isFinite(lo)) { lo = 0; hi = 1; }
        const m = (hi - lo) * 0.1 + 1; lo -= m; hi += m;
      }
      const Y = (v) => L.top + L.h - ((v * L.scale - lo) / (hi - lo || 1)) * L.h;
      ctx.fillStyle = "#f4f4f4";
      ctx.fillRect(40, L.top, w - 48, L.h);
      ctx.fillStyle = "#555";
      ctx.fillText(L.label, 2, L.top + 12);
      const trace = (d, v, color, width) => {
        ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
        let pen = false;
        for (let i = 0; i < v.length; i++) {
          if (d[i] < a || d[i] > b || !isFinite(v[i])) { pen = false; continue; }
          if (!pen) { ctx.moveTo(X(d[i]), Y(v[i])); pen = true; } else ctx.lineTo(X(d[i]), Y(v[i]));
        }
        ctx.stroke();
      };
      if (store.ref && store.ref.data[L.key]) trace(store.ref.data.d, store.ref.data[L.key], REF_COLOR, 1.2);
      if (z.data[L.key]) trace(z.data.d, z.data[L.key], L.color, 1.8);
    }
    const mark = (d, color) => { if (d === null || d === undefined) return; ctx.strokeStyle = color; ctx.beginPath(); ctx.moveTo(X(d), 2); ctx.lineTo(X(d), h - 2); ctx.stroke(); };
    mark(z.start_m, "#ff3b30");
    mark(z.ref_start_m, "#888");
  }
}

function header(parent) {
  const bar = el("div", { class: "pbx-header", style: "display:flex;gap:14px;align-items:center;font:14px sans-serif;flex-wrap:wrap;margin-bottom:6px" }, parent);
  const cell = (label, key, style = "") => {
    const c = el("div", { style: "display:flex;flex-direction:column" }, bar);
    el("span", { text: label, style: "font-size:10px;color:#777;text-transform:uppercase" }, c);
    return el("span", { "data-pitbox": key, text: "–", style: "font-weight:600;font-variant-numeric:tabular-nums;" + style }, c);
  };
  const h = {
    lap: cell("lap", "lap", "font-size:20px"),
    delta: cell("delta", "delta", "font-size:20px;min-width:80px"),
  };
  const barBox = el("div", { style: "position:relative;width:220px;height:18px;background:#eee;border-radius:3px" }, bar);
  el("div", { style: "position:absolute;left:50%;top:0;bottom:0;width:1px;background:#888" }, barBox);
  h.deltaBar = el("div", { "data-pitbox": "delta-bar", style: "position:absolute;top:2px;bottom:2px;left:50%;width:0;background:#34c759" }, barBox);
  h.predicted = cell("predicted", "predicted");
  h.last = cell("last", "last");
  h.best = cell("best", "best");
  h.speed = cell("speed km/h", "speed");
  h.gear = cell("gear", "gear");
  h.ref = cell("reference", "reference", "font-weight:400;font-size:12px");
  return h;
}

function setDeltaBar(bar, delta) {
  if (delta === null || delta === undefined || !isFinite(delta)) { bar.style.width = "0"; return; }
  const frac = Math.min(1, Math.abs(delta) / 2.0) * 50; // full bar = 2 s
  bar.style.width = frac + "%";
  bar.style.left = delta >= 0 ? "50%" : 50 - frac + "%";
  bar.style.background = delta > 0.02 ? "#ff3b30" : delta < -0.02 ? "#34c759" : "#8e8e93";
  bar.dataset.delta = String(delta);
}

function stats() {
  // what this page painted, for benchmarks and tests: sample-to-paint lag [ms] with its paint
  // time [ms since the epoch], and send-to-paint [ms]
  // and, per paint, where the time went: kernel wait (oldest sample to send), transport (send
  // to this page's message handler), page (handler to painted) [ms]; sampleLags: every
  // sample's own arrival-to-paint lag [ms]
  if (!window[STATS_KEY]) window[STATS_KEY] = { lags: [], times: [], transfer: [], kwait: [], transport: [], page: [],
    sampleLags: [], sampleTimes: [], paints: 0, updates: 0, snapshots: 0 };
  return window[STATS_KEY];
}

function renderDriver({ model, el: root }) {
  const store = new Store();
  const viewId = Math.random().toString(36).slice(2);
  root.classList.add("pitbox-live");
  root.dataset.pitboxMode = "driver";
  root.style.contain = "content"; // layout and paint of the dashboard stay inside it
  const h = header(root);
  const row = el("div", { style: "display:flex;gap:10px;align-items:flex-start;flex-wrap:wrap" }, root);
  const traces = new TracePanel(row);
  const mapBox = el("div", { style: "display:flex;flex-direction:column" }, row);
  const map = new MapPanel(mapBox, 300);
  const zone = new ZonePanel(root);
  const status = el("div", { "data-pitbox": "status", style: "font:11px sans-serif;color:#666;margin-top:4px", text: "waiting for the kernel" }, root);
  const acker = new Acker(model);
  let bgDirty = true, mapDirty = true, scheduled = false, lastSample = null, lastSend = null, statusAt = 0, headerAt = 0, headerTimer = null;
  let lastRecv = null, sampleTs = [];
  const lags = [];

  function onMsg(msg, buffers) {
    if (!msg || msg.type !== "update") return;
    const st = stats();
    st.updates++;
    lastRecv = Date.now();
    if (msg.trace && msg.trace.t_ms && !msg.full) sampleTs.push(...msg.trace.t_ms);
    if (msg.full) st.snapshots++;
    if ("reference" in msg) { store.setReference(msg.reference, buffers); bgDirty = mapDirty = true; }
    if (msg.trace) store.appendTrace(msg.trace, buffers[msg.trace.buffer]);
    if (msg.zone) store.setZone(msg.zone, buffers);
    if (msg.scalars) { store.scalars = msg.scalars; if (msg.scalars.length_m && msg.scalars.length_m !== store.lengthM) { store.lengthM = msg.scalars.length_m; bgDirty = true; } }
    store.cars = msg.cars;
    store.connection = msg.connection;
    store.title = msg.title;
    if (msg.full) bgDirty = true;
    acker.got(msg);
    lastSend = msg.t_send_ms;
    if (msg.t_sample_ms && (lastSample === null || msg.t_sample_ms < lastSample)) lastSample = msg.t_sample_ms;
    if (!scheduled) { scheduled = true; requestAnimationFrame(paint); }
  }

  function paint() {
    scheduled = false;
    const t0 = performance.now();
    const bgDirty0 = bgDirty;
    if (bgDirty) { traces.drawBackground(store); bgDirty = false; }
    if (mapDirty) { map.drawBackground(store.ref); mapDirty = false; }
    traces.drawNew(store);
    const wall = Date.now();
    if (wall - headerAt >= HEADER_MS || bgDirty0) {
      // the numbers in the header are DOM text: each change costs the page a style and
      // layout pass, so they change at most HEADER_MS apart (the canvas paints every sample)
      headerAt = wall;
      const sc = store.scalars || {};
      setText(h.lap, sc.lap === null || sc.lap === undefined ? "–" : String(sc.lap));
      setText(h.delta, fmtDelta(sc.delta_s));
      h.delta.style.color = sc.delta_s > 0.02 ? "#d70015" : sc.delta_s < -0.02 ? "#248a3d" : "#333";
      setDeltaBar(h.deltaBar, sc.delta_s);
      setText(h.predicted, fmtLap(sc.predicted_s));
      setText(h.last, fmtLap(sc.last_s));
      setText(h.best, fmtLap(sc.best_s));
      setText(h.speed, sc.speed === null || sc.speed === undefined ? "–" : (sc.speed * 3.6).toFixed(0));
      setText(h.gear, sc.gear === null || sc.gear === undefined ? "–" : sc.gear === 0 ? "N" : sc.gear < 0 ? "R" : String(sc.gear));
      setText(h.ref, store.ref ? `${KINDS[store.ref.kind] || store.ref.kind}: ${store.ref.label} ${fmtLap(store.ref.time_s)}` : "none yet");
    } else if (headerTimer === null) {  // the newest numbers show even when nothing more comes
      headerTimer = setTimeout(() => { headerTimer = null; if (!scheduled) { scheduled = true; requestAnimationFrame(paint); } },
        HEADER_MS - (wall - headerAt));
    }
    const cars = store.cars || { pct: [], me: [], pit: [] };
    map.drawCars(cars.pct.map((p, i) => ({ pct: p, me: cars.me[i], pit: cars.pit[i], x: cars.x ? cars.x[i] : null, y: cars.y ? cars.y[i] : null })));
    zone.draw(store);
    const now = Date.now();
    let lag = null;
    if (lastSample !== null) {
      lag = now - lastSample;
      lags.push(lag);
      if (lags.length > 300) lags.shift();
      const st = stats();
      st.lags.push(lag);
      st.times.push(now);
      if (lastSend) {
        st.transfer.push(now - lastSend);
        st.kwait.push(lastSend - lastSample);
        st.transport.push(lastRecv - lastSend);
        st.page.push(now - lastRecv);
      }
      for (const t of sampleTs) { st.sampleLags.push(now - t); st.sampleTimes.push(now); }
    }
    sampleTs = [];
    lastSample = null;
    stats().paints++;
    const c = store.connection || {};
    if ((c.state || "") !== status.dataset.state || now - statusAt > 500) {  // the line changes twice a second
      statusAt = now;
      const age = c.frame_age_s === null || c.frame_age_s === undefined ? "–" : c.frame_age_s.toFixed(1) + " s";
      setText(status, `stream: ${c.state || "?"}${c.error ? " (" + c.error + ")" : ""} · frames ${c.frames ?? 0} · last frame ${age} ago · ` +
        `sample-to-paint ${lags.length ? percentile(lags, 50).toFixed(0) + " ms p50, " + percentile(lags, 99).toFixed(0) + " ms p99" : "–"}`);
      status.dataset.state = c.state || "";
    }
    acker.painted(lag, performance.now() - t0);
  }

  model.on("msg:custom", onMsg);
  const ro = new ResizeObserver(() => { bgDirty = true; if (!scheduled) { scheduled = true; requestAnimationFrame(paint); } });
  ro.observe(traces.box);
  model.send({ type: "ready", view: viewId });
  const unwatch = watchHearing(model, root, viewId);  // hearing.js
  return () => {
    unwatch();
    model.off("msg:custom", onMsg);
    acker.reset();
    if (headerTimer !== null) clearTimeout(headerTimer);
    ro.disconnect();
    model.send({ type: "gone", view: viewId });
  };
}

function renderTeam({ model, el: root }) {
  const store = new Store();
  const viewId = Math.random().toString(36).slice(2);
  root.classList.add("pitbox-live");
  root.dataset.pitboxMode = "team";
  root.style.contain = "content";
  const row = el("div", { style: "display:flex;gap:12px;align-items:flex-start;flex-wrap:wrap" }, root);
  const map = new MapPanel(row, 360);
  const strip = el("div", { "data-pitbox": "team", style: "flex:1 1 360px;font:13px sans-serif" }, row);
  const status = el("div", { "data-pitbox": "status", style: "font:11px sans-serif;color:#666;margin-top:4px", text: "waiting for the kernel" }, root);
  const acker = new Acker(model);
  let mapDirty = true, scheduled = false, lastSample = null, refKey = null;
  const lags = [];
  const rows = {};

  function driverRow(d, color) {
    let r = rows[d.id];
    if (!r) {
      const box = el("div", { "data-pitbox-driver": d.id, style: "display:grid;grid-template-columns:14px minmax(110px,auto) 56px 76px 150px 1fr;column-gap:10px;align-items:center;padding:4px 0;border-bottom:1px solid #eee" }, strip);
      el("span", { style: `display:inline-block;width:12px;height:12px;border-radius:6px;background:${color}` }, box);
      r = {
        box,
        name: el("span", { "data-pitbox": "name", style: "font-weight:600;white-space:nowrap" }, box),
        lap: el("span", { "data-pitbox": "lap", style: "white-space:nowrap" }, box),
        delta: el("span", { "data-pitbox": "delta", style: "font-weight:600;font-variant-numeric:tabular-nums" }, box),
      };
      const barBox = el("div", { style: "position:relative;width:140px;height:14px;background:#eee;border-radius:3px" }, box);
      el("div", { style: "position:absolute;left:50%;top:0;bottom:0;width:1px;background:#888" }, barBox);
      r.bar = el("div", { "data-pitbox": "delta-bar", style: "position:absolute;top:2px;bottom:2px;left:50%;width:0" }, barBox);
      r.times = el("span", { "data-pitbox": "times", style: "color:#555;font-variant-numeric:tabular-nums" }, box);
      rows[d.id] = r;
    }
    return r;
  }

  function onMsg(msg, buffers) {
    if (!msg || msg.type !== "update") return;
    stats().updates++;
    if ("reference" in msg) {  // the kernel sends the map only when it changes
      const key = msg.reference ? `${msg.map_driver}|${msg.reference.label}|${msg.reference.n}` : null;
      if (key !== refKey) { store.setReference(msg.reference, buffers); refKey = key; mapDirty = true; }
    }
    store.team = msg.drivers;
    store.connection = msg.connection;
    acker.got(msg);
    if (msg.t_sample_ms) lastSample = msg.t_sample_ms;
    if (!scheduled) { scheduled = true; requestAnimationFrame(paint); }
  }

  function paint() {
    scheduled = false;
    if (mapDirty) { map.drawBackground(store.ref); mapDirty = false; }
    const drivers = store.team || [];
    const cars = [];
    const seen = new Set();
    drivers.forEach((d, i) => {
      const color = TEAM_COLORS[i % TEAM_COLORS.length];
      const r = driverRow(d, color);
      seen.add(d.id);
      r.box.style.display = "";
      setText(r.name, d.name);
      setText(r.lap, d.lap === null || d.lap === undefined ? "lap –" : `lap ${d.lap}`);
      setText(r.delta, fmtDelta(d.delta_s));
      setDeltaBar(r.bar, d.delta_s);
      setText(r.times, `pred ${fmtLap(d.predicted_s)} · last ${fmtLap(d.last_s)} · best ${fmtLap(d.best_s)}${d.on_pit_road ? " · pit" : ""}`);
      cars.push({ pct: d.pct, x: d.x, y: d.y, me: true, color, label: d.name, pit: d.on_pit_road });
    });
    for (const [id, r] of Object.entries(rows)) if (!seen.has(id)) r.box.style.display = "none";
    map.drawCars(cars);
    const now = Date.now();
    let lag = null;
    if (lastSample !== null) { lag = now - lastSample; lags.push(lag); if (lags.length > 300) lags.shift(); }
    lastSample = null;
    stats().paints++;
    const c = store.connection || {};
    setText(status, `relay: ${c.state || "?"} · ${drivers.length} driver(s) shown · newest-sample-to-paint ${lags.length ? percentile(lags, 50).toFixed(0) + " ms p50" : "–"}`);
    status.dataset.state = c.state || "";
    acker.painted(lag, null);
  }

  model.on("msg:custom", onMsg);
  model.send({ type: "ready", view: viewId });
  const unwatch = watchHearing(model, root, viewId);  // hearing.js
  return () => { unwatch(); model.off("msg:custom", onMsg); acker.reset(); model.send({ type: "gone", view: viewId }); };
}

export default {
  render(ctx) {
    return ctx.model.get("mode") === "team" ? renderTeam(ctx) : renderDriver(ctx);
  },
};
