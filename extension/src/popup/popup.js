// The toolbar popup: asks the worker how things stand and shows it, refreshed
// every second while open.
const $ = (id) => document.getElementById(id);
const LABELS = { connected: "Connected", connecting: "Connecting…", disconnected: "Not connected", unconfigured: "Not set up" };

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : new Date(ms).toLocaleString();
}

function render(st) {
  $("dot").className = `dot ${st.connection.state}`;
  $("state").textContent = LABELS[st.connection.state] || st.connection.state;
  $("reason").textContent = st.connection.reason;
  $("today").textContent = `Today: ${st.stats.done} done, ${st.stats.failed} failed`;
  const rows = st.tabs.map((t, i) => {
    const tr = document.createElement("tr");
    const running = t.request_id
      ? `${t.phase === "opening" ? "opening" : "running"}: “${t.message.slice(0, 60)}${t.message.length > 60 ? "…" : ""}” (${ago(t.since)})`
      : "idle";
    for (const text of [`tab ${i + 1}`, running]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  if (rows.length) $("tabs").replaceChildren(...rows);
  const waiting = [];
  if (st.queued) waiting.push(`${st.queued} waiting for a free tab`);
  if (st.outbox) waiting.push(`${st.outbox} result(s) waiting for the server`);
  $("queued").textContent = waiting.join("; ");
  const e = st.stats.lastError;
  $("lastError").textContent = e ? `${e.text} (${ago(e.at)})` : "none";
}

async function refresh() {
  try {
    render(await chrome.runtime.sendMessage({ type: "chatrelay:status" }));
  } catch (e) {
    $("state").textContent = "The extension's worker is not answering";
    $("reason").textContent = String(e);
  }
}

$("options").addEventListener("click", (event) => {
  event.preventDefault();
  chrome.runtime.openOptionsPage();
});
refresh();
setInterval(refresh, 1000);
