// Times, durations and previews as the console shows them. Times are the
// browser's local time; the exact UTC instant is in each <time>'s datetime.
import { h } from "./dom.js";

const pad = (n, width = 2) => String(n).padStart(width, "0");

// "14:03:27" today, "2026-11-30 14:03" on another day.
export function clock(iso, now = new Date()) {
  const t = new Date(iso);
  const day = `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}`;
  const today = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}`;
  return day === today ? `${time}:${pad(t.getSeconds())}` : `${day} ${time}`;
}

// A <time> element for an RFC 3339 instant, or a dash for none.
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: iso }, clock(iso));
}

// "850 ms", "12.4 s", "3 min 05 s", "2 h 07 min".
export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
}

// Milliseconds from one instant to another (null when either is missing).
export function between(from, to) {
  if (!from || !to) return null;
  return new Date(to).getTime() - new Date(from).getTime();
}

// The first line of a message, cut to `max` characters.
export function preview(text, max = 120) {
  const line = String(text ?? "").trim().split(/\r?\n/, 1)[0];
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

// A status word as a badge; the word itself is the text.
export function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}

// The end of a UUID, with the whole in its title. (The ids are UUIDv7: their
// first characters are a timestamp, alike for everything made in a minute.)
export function shortId(id) {
  return h("code", { class: "id", title: id }, "…" + String(id).slice(-8));
}
