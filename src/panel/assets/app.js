// Gatehouse panel: the live lane view (polls /api/live), and confirmations on forms marked data-confirm.
"use strict";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function card(ev) {
  const c = el("div", "event " + ev.action + (ev.alert ? " alert" : ""));
  c.dataset.id = ev.id;
  c.dataset.plate = ev.plate || "";
  if (ev.img) {
    const img = el("img");
    img.src = ev.img;
    img.alt = "plate crop";
    c.appendChild(img);
  }
  const body = el("div");
  body.appendChild(el("div", "plate", ev.plate || "(not recorded)"));
  const what = ev.action.toUpperCase() + " - " + ev.reason +
    (ev.host ? " - host " + ev.host + (ev.unit ? " (" + ev.unit + ")" : "") : "");
  body.appendChild(el("div", "", what));
  body.appendChild(el("div", "muted", new Date(ev.at).toLocaleTimeString() + " - lane " + ev.lane +
    " - confidence " + ev.confidence.toFixed(2) + (ev.guard_action ? " - " + ev.guard_action : "")));
  c.appendChild(body);
  c.addEventListener("click", () => {
    document.querySelectorAll(".event.selected").forEach((x) => x.classList.remove("selected"));
    c.classList.add("selected");
    document.querySelectorAll("input[name=event]").forEach((i) => { i.value = ev.id; });
    document.querySelectorAll(".for-event").forEach((s) => { s.textContent = "for " + (ev.plate || "this vehicle"); });
  });
  return c;
}

// A lane's live still: fetched again on each poll once the previous one has loaded (or failed).
function stillFrame(s) {
  const img = document.getElementById("still-" + s.lane);
  const note = document.getElementById("still-note-" + s.lane);
  if (!img || img.dataset.busy) return;
  img.dataset.busy = "1";
  img.onload = () => {
    delete img.dataset.busy;
    img.style.visibility = "visible";
    if (note) note.textContent = new Date().toLocaleTimeString();
  };
  img.onerror = () => {
    delete img.dataset.busy;
    img.style.visibility = "hidden";
    if (note) note.textContent = "no picture from the camera";
  };
  img.src = s.url;
}

function live() {
  const list = document.getElementById("events");
  if (!list) return;
  let after = 0;
  const poll = () => {
    fetch("/api/live?after=" + after, { credentials: "same-origin", cache: "no-store" })
      .then((r) => {
        if (r.status === 401) { window.location = "/login"; throw new Error("logged out"); }
        return r.json();
      })
      .then((d) => {
        d.events.forEach((ev) => {
          after = Math.max(after, ev.seq);
          list.insertBefore(card(ev), list.firstChild);
        });
        while (list.children.length > 50) list.removeChild(list.lastChild);
        d.gates.forEach((g) => {
          const s = document.getElementById("state-" + g.name);
          if (!s) return;
          s.textContent = g.lockdown ? "LOCKDOWN" : (g.open ? "OPEN" : "closed");
          s.className = "state " + (g.lockdown ? "locked" : (g.open ? "open" : ""));
        });
        (d.stills || []).forEach(stillFrame);
        const t = document.getElementById("updated");
        if (t) t.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(() => {})
      .finally(() => setTimeout(poll, 500));
  };
  poll();
}

// The installers' setup page: each lane's newest read frame, its region (drawn by dragging, or typed)
// and the plates found, redrawn from /api/setup about once a second.
const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function regionInputs(lane) {
  return ["x", "y", "width", "height"].map((k) => document.getElementById(k + "-" + lane));
}

function drawLane(l, state) {
  const lane = l.lane;
  const img = document.getElementById("view-" + lane);
  const svg = document.getElementById("overlay-" + lane);
  const stats = document.getElementById("stats-" + lane);
  const list = document.getElementById("plates-" + lane);
  if (!img || !svg) return;
  if (l.img && !img.dataset.busy) {
    img.dataset.busy = "1";
    img.onload = img.onerror = () => { delete img.dataset.busy; };
    img.src = l.img;
  }
  if (!l.frame) {
    stats.textContent = "waiting for a frame (is the camera up?)";
    return;
  }
  const W = l.frame.width, H = l.frame.height;
  state.size[lane] = [W, H];
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const [x, y, w, h] = regionInputs(lane).map((i) => parseFloat(i.value));
  svg.style.setProperty("--line", Math.max(2, Math.round(W / 320)) + "px");
  svg.appendChild(svgEl("rect", { class: "roi", x: x * W, y: y * H, width: w * W, height: h * H }));
  list.textContent = "";
  l.plates.forEach((p) => {
    const bad = p.advice.length > 0;
    svg.appendChild(svgEl("rect", { class: "plate" + (bad ? " bad" : ""), x: p.x, y: p.y, width: p.width, height: p.height }));
    const size = Math.max(12, Math.round(H / 30));
    svg.appendChild(svgEl("text", { class: "plate-label", x: p.x, y: Math.max(p.y - size / 3, size), "font-size": size },
      p.text + " " + p.confidence.toFixed(2) + " \u00b7 " + p.width + " px"));
    const li = el("li", bad ? "bad" : "", p.text + ": " + p.width + " px wide, confidence " + p.confidence.toFixed(2) +
      (bad ? " \u2014 " + p.advice.join("; ") : " \u2014 fine for the reader"));
    list.appendChild(li);
  });
  if (l.plates.length === 0) list.appendChild(el("li", "muted", "no plate in this frame's region"));
  stats.textContent = (l.fps ? l.fps.toFixed(1) + " frames/s" : "frame rate unknown") +
    " \u00b7 recognition " + (l.recognition_ms || 0).toFixed(0) + " ms \u00b7 frame " + W + " x " + H;
}

function dragRegion(lane, state) {
  const svg = document.getElementById("overlay-" + lane);
  if (!svg) return;
  let start = null;
  const at = (ev) => {
    const r = svg.getBoundingClientRect();
    return [Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 1), Math.min(Math.max((ev.clientY - r.top) / r.height, 0), 1)];
  };
  const set = (a, b) => {
    const v = [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1])];
    regionInputs(lane).forEach((i, k) => { i.value = v[k].toFixed(2); });
    const roi = svg.querySelector(".roi");
    const size = state.size[lane];
    if (roi && size) {
      roi.setAttribute("x", v[0] * size[0]); roi.setAttribute("y", v[1] * size[1]);
      roi.setAttribute("width", v[2] * size[0]); roi.setAttribute("height", v[3] * size[1]);
    }
  };
  svg.addEventListener("pointerdown", (ev) => { start = at(ev); svg.setPointerCapture(ev.pointerId); ev.preventDefault(); });
  svg.addEventListener("pointermove", (ev) => { if (start) set(start, at(ev)); });
  svg.addEventListener("pointerup", (ev) => { if (start) set(start, at(ev)); start = null; });
}

function setup() {
  const sections = document.querySelectorAll("section.setup");
  if (sections.length === 0) return;
  const state = { size: {} };
  sections.forEach((s) => dragRegion(s.dataset.lane, state));
  const poll = () => {
    fetch("/api/setup", { credentials: "same-origin", cache: "no-store" })
      .then((r) => {
        if (r.status === 401) { window.location = "/login"; throw new Error("logged out"); }
        return r.json();
      })
      .then((d) => d.lanes.forEach((l) => drawLane(l, state)))
      .catch(() => {})
      .finally(() => setTimeout(poll, 1000));
  };
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  live();
  setup();
  document.querySelectorAll("form[data-confirm]").forEach((f) => {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  });
});
