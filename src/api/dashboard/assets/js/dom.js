// Small helpers for building the pages: an element builder, formatting, toasts, a confirm
// dialog, and a swap that keeps keyboard focus when live data replaces a region.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

// Replaces `region`'s children, putting focus back on the element with the same
// `data-key` if focus was inside, so a keyboard user is not thrown out every 2 s.
export function swap(region, ...children) {
  const focused = document.activeElement;
  const key = region.contains(focused) ? focused.closest("[data-key]")?.dataset.key : null;
  region.replaceChildren();
  append(region, children);
  if (key) region.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

export function ago(time) {
  if (!time) return "—";
  const seconds = Math.round((Date.now() - new Date(time).getTime()) / 1000);
  const future = seconds < 0;
  const s = Math.abs(seconds);
  const text = s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86400
    ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
  return future ? `in ${text}` : `${text} ago`;
}

export function when(time) {
  if (!time) return "—";
  return h("time", { datetime: time, title: new Date(time).toLocaleString() }, ago(time));
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function millis(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${ms.toFixed(ms < 10 ? 2 : 0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function count(n) {
  return Number(n || 0).toLocaleString();
}

export function state(name) {
  return h("span", { class: `chip s-${name}` }, name);
}

export function pretty(value) {
  return h("pre", {}, value === null || value === undefined ? "null" : JSON.stringify(value, null, 2));
}

export function toast(text, error = false) {
  const el = h("div", { class: `toast${error ? " error" : ""}` }, text);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), error ? 8000 : 4000);
}

// Asks before a destructive or bulk action; resolves to true when confirmed.
export function confirmAction(text, verb = "Confirm") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = verb;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// A link to a page of this dashboard (hash routing, so a URL can be shared).
export function link(path, params, ...children) {
  return h("a", { href: href(path, params) }, ...children);
}

export function href(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== "" && v !== null) query.set(k, v);
  const text = query.toString();
  return `#${path}${text ? `?${text}` : ""}`;
}

// A queue's count of jobs in `state`, with "+" when the node stopped counting at its cap.
export function queueCount(queue, state) {
  const more = (queue.at_least || []).includes(state) ? "+" : "";
  return `${count(queue.counts[state] || 0)}${more}`;
}
