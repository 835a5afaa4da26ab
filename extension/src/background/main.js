// The extension's service worker: wires the server connection, the tabs and
// the results together, and answers the popup. Chrome may stop and restart
// this worker at any time; everything that must survive that is loaded from
// storage before the first event is handled.
import { loadSettings } from "../common/settings.js";
import { ServerConnection } from "./connection.js";
import { Dispatcher } from "./dispatcher.js";
import { Outbox } from "./outbox.js";
import { Status } from "./status.js";
import { TabPool } from "./tab_pool.js";

const WATCH_ALARM = "chatrelay-watch";

// When this worker instance started: a restarted worker shows a new time.
const workerStartedAt = Date.now();
const status = new Status();
const outbox = new Outbox();
const pool = new TabPool();
let settings = null;

const connection = new ServerConnection({
  onFrame: (frame) => ready.then(() => onServerFrame(frame)),
  onOpen: () => ready.then(() => outbox.flush((frame) => connection.send(frame))),
  onState: (state) => status.setConnection(state),
});

// Results must reach the server: kept in the outbox while the socket is down.
// A status update that cannot be sent is dropped (the result supersedes it).
function send(frame) {
  if (connection.send(frame)) return;
  if (frame.type === "response" || frame.type === "error") outbox.hold(frame);
}

const dispatcher = new Dispatcher({ pool, outbox, status, send, settings });

async function onServerFrame(frame) {
  if (frame.type === "new_request" && typeof frame.request_id === "string") {
    await dispatcher.receive(frame);
  } else if (frame.type === "error") {
    // After a reconnect, resending a result the server already has is
    // answered "already done": expected, not worth the popup's attention.
    if (frame.request_id && outbox.result(frame.request_id)) return;
    await status.noteServerError(frame.error || JSON.stringify(frame));
  }
}

chrome.runtime.onMessage.addListener((message, sender, reply) => {
  if (message?.type === "chatrelay:result" && sender.tab) {
    ready.then(() => dispatcher.finish(message.frame)).then(() => reply({ ok: true }));
    return true;
  }
  if (message?.type === "chatrelay:status") {
    ready.then(() =>
      reply({
        connection: status.connection,
        stats: status.stats,
        ...dispatcher.snapshot(),
        outbox: outbox.pending.length,
        workerStartedAt,
      }),
    );
    return true;
  }
  return false;
});

chrome.tabs.onRemoved.addListener((tabId) => {
  ready.then(() => {
    if (pool.owns(tabId)) dispatcher.tabClosed(tabId);
  });
});

chrome.storage.onChanged.addListener((changes, area) => {
  if (area !== "local") return;
  const relevant = ["serverUrl", "apiKey", "maxTabs", "answerTimeoutSeconds", "selectorOverrides"];
  if (!relevant.some((k) => k in changes)) return;
  ready.then(async () => {
    const before = settings;
    settings = await loadSettings();
    dispatcher.settings = settings;
    if (before.serverUrl !== settings.serverUrl || before.apiKey !== settings.apiKey) {
      connection.configure(settings);
    }
    dispatcher.pump();
  });
});

// Wakes a stopped worker (the top of this file reconnects) and enforces the
// watchdog on requests whose tab went silent.
chrome.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name === WATCH_ALARM) ready.then(() => dispatcher.checkDeadlines());
});

// Listeners above are registered synchronously, as MV3 requires; they wait
// for this start-up (no top-level await in a service worker).
const ready = (async () => {
  settings = await loadSettings();
  dispatcher.settings = settings;
  await Promise.all([status.load(), outbox.load(), pool.load()]);
  await dispatcher.load();
  if (!(await chrome.alarms.get(WATCH_ALARM))) {
    await chrome.alarms.create(WATCH_ALARM, { periodInMinutes: 0.5 });
  }
  connection.configure(settings);
})();
