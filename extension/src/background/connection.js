// The one WebSocket to the chatrelay server. It connects with the API key,
// reconnects with exponential backoff and jitter when the socket drops, and
// keeps the service worker alive while connected: Chrome stops an idle MV3
// worker after 30 s, and the socket dies with it. Calling an extension API
// every 20 s counts as activity; ping frames from the server do not (the
// browser answers them without waking any script).
import { socketUrl, checkServerUrl } from "../common/settings.js";
import { diagnose } from "../common/diagnose.js";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const KEEPALIVE_MS = 20_000;

export class ServerConnection {
  constructor({ onFrame, onOpen, onState }) {
    this.onFrame = onFrame;
    this.onOpen = onOpen;
    this.onState = onState;
    this.settings = null;
    this.ws = null;
    this.failures = 0;
    this.retryTimer = null;
    this.keepAlive = null;
  }

  // (Re)connects with these settings, dropping any current socket.
  configure(settings) {
    this.settings = settings;
    this.failures = 0;
    this.drop();
    this.connect();
  }

  isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  // Sends a frame if the socket is open; false means the caller keeps it.
  send(frame) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  drop() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.stopKeepAlive();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "settings changed");
    }
  }

  connect() {
    const s = this.settings;
    if (!s || !s.serverUrl || !s.apiKey) {
      this.onState({ state: "unconfigured", reason: "set the server URL and API key in the options" });
      return;
    }
    const problems = checkServerUrl(s.serverUrl);
    if (problems.length) {
      this.onState({ state: "unconfigured", reason: problems[0] });
      return;
    }
    this.onState({ state: "connecting", reason: `connecting to ${s.serverUrl}` });
    let ws;
    try {
      ws = new WebSocket(socketUrl(s));
    } catch (e) {
      this.onState({ state: "unconfigured", reason: `wrong URL: ${e.message}` });
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.failures = 0;
      this.startKeepAlive();
      this.onState({ state: "connected", reason: `connected to ${s.serverUrl}` });
      this.onOpen();
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopKeepAlive();
      const delay = this.nextDelay();
      const why = opened
        ? `the server closed the connection (code ${event.code}${event.reason ? `: ${event.reason}` : ""})`
        : "the connection failed";
      this.onState({ state: "disconnected", reason: `${why}; retrying in ${Math.ceil(delay / 1000)} s` });
      this.retryTimer = setTimeout(() => this.connect(), delay);
      this.explain(s, delay);
    };
  }

  // Full jitter: a random delay up to the exponential step, at least half of it,
  // so a server restart is not met by every extension at the same instant.
  nextDelay() {
    const step = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.failures);
    this.failures += 1;
    return Math.round(step / 2 + Math.random() * (step / 2));
  }

  // Replaces "the connection failed" with the reason the server gives.
  async explain(settings, delay) {
    const found = await diagnose(settings).catch(() => null);
    if (!found || found.ok || this.settings !== settings || this.ws) return;
    this.onState({ state: "disconnected", reason: `${found.reason}; retrying in ${Math.ceil(delay / 1000)} s` });
  }

  startKeepAlive() {
    this.stopKeepAlive();
    this.keepAlive = setInterval(() => chrome.runtime.getPlatformInfo(), KEEPALIVE_MS);
  }

  stopKeepAlive() {
    clearInterval(this.keepAlive);
    this.keepAlive = null;
  }
}
