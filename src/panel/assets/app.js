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

document.addEventListener("DOMContentLoaded", () => {
  live();
  document.querySelectorAll("form[data-confirm]").forEach((f) => {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  });
});
