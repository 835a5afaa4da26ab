// The account's live events (GET /api/chat/events/, Server-Sent Events),
// read with fetch() rather than EventSource: EventSource cannot set headers
// and would have to carry the API key in the URL, where it ends up in
// history, proxies and logs. So this module parses text/event-stream itself
// and does what EventSource would: reconnect with backoff, and resume with
// Last-Event-ID.

const PATH = "/api/chat/events/";
// The server sends a comment every 15 s; a stream silent for this long is
// taken for dead (a half-open connection) and opened again.
const SILENCE_MS = 45_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15_000;

// Splits a text/event-stream into events, fed chunk by chunk.
export class EventParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
    this.id = null;
  }

  feed(text) {
    this.buffer += text;
    // A line ends with CRLF, LF or CR; a trailing CR may be half a CRLF.
    const lines = this.buffer.split(/\r\n|\n|\r(?!$)/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.id });
      } else if (this.id !== null) {
        this.onEvent({ type: null, data: "", id: this.id });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
  }
}

export class LiveStream {
  // on.request(request), on.reset(), on.up({ resumed }), on.down({ reason, retryInMs }),
  // on.unauthorized(detail)
  constructor(key, on) {
    this.key = key;
    this.on = on;
    this.lastEventId = "";
    this.stopped = true;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.run();
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
    this.wake?.();
  }

  // Ends the wait before the next attempt, if one is pending.
  retryNow() {
    this.wake?.();
  }

  async run() {
    let failures = 0;
    while (!this.stopped) {
      let reason;
      try {
        await this.connect(() => {
          failures = 0;
        });
        reason = "the server ended the stream";
      } catch (e) {
        if (this.stopped) return;
        if (e.unauthorized) {
          this.stopped = true;
          this.on.unauthorized(e.message);
          return;
        }
        reason = e.message;
      }
      if (this.stopped) return;
      const step = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** failures);
      const wait = Math.round(step * (0.5 + Math.random() / 2));
      failures += 1;
      this.on.down({ reason, retryInMs: wait });
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  // One connection, until it ends. Throws with the reason it failed.
  async connect(opened) {
    const controller = new AbortController();
    this.controller = controller;
    const headers = { "X-API-Key": this.key, Accept: "text/event-stream" };
    const resumed = Boolean(this.lastEventId);
    if (resumed) headers["Last-Event-ID"] = this.lastEventId;
    let res;
    try {
      res = await fetch(PATH, { headers, signal: controller.signal, cache: "no-store", credentials: "omit" });
    } catch {
      throw new Error("cannot reach the server");
    }
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      const error = new Error(body?.detail || `HTTP ${res.status}`);
      error.unauthorized = res.status === 401;
      throw error;
    }
    opened();
    this.on.up({ resumed });
    const parser = new EventParser((event) => this.dispatch(event));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let silence = setTimeout(() => controller.abort(), SILENCE_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(silence);
        silence = setTimeout(() => controller.abort(), SILENCE_MS);
        parser.feed(value);
      }
    } catch {
      throw new Error("the connection broke");
    } finally {
      clearTimeout(silence);
    }
  }

  dispatch({ type, data, id }) {
    if (id !== null) this.lastEventId = id;
    if (type === "request") {
      let request;
      try {
        request = JSON.parse(data);
      } catch {
        return;
      }
      this.on.request(request);
    } else if (type === "reset") {
      this.on.reset();
    }
  }
}
