// Routes the server's requests to ChatGPT tabs and their results back: one
// request at a time per tab, several tabs at once, the rest waiting here in
// arrival order. It also makes redelivery harmless: a request already running
// is not started again, and one already answered is answered from memory.
import { chatUrl } from "./tab_pool.js";

// Extra time the worker gives a tab beyond the answer timeout before it
// declares the request lost (the page enforces the timeout itself).
const WATCHDOG_GRACE_MS = 60_000;

export class Dispatcher {
  constructor({ pool, outbox, status, send, settings }) {
    this.pool = pool;
    this.outbox = outbox;
    this.status = status;
    this.send = send;
    this.settings = settings;
    this.queue = [];
    this.inflight = {};
    // Deliveries of a request this extension already had (for the popup and tests).
    this.redelivered = 0;
    this.pumping = Promise.resolve();
  }

  async load() {
    const { inflight } = await chrome.storage.session.get("inflight");
    this.inflight = inflight || {};
    for (const [id, entry] of Object.entries(this.inflight)) {
      if (!this.pool.owns(entry.tabId)) {
        await this.fail(id, "the ChatGPT tab running this request was closed");
      } else if (entry.phase === "opening") {
        // The previous worker stopped before the page took the request: it
        // never ran, and the server hands it out again after the reconnect.
        delete this.inflight[id];
      }
    }
    await this.saveInflight();
  }

  saveInflight() {
    return chrome.storage.session.set({ inflight: this.inflight });
  }

  // A new_request frame from the server.
  async receive(request) {
    const id = request.request_id;
    if (this.inflight[id] || this.queue.some((r) => r.request_id === id) || this.outbox.result(id)) {
      this.redelivered += 1;
    }
    if (this.inflight[id]) {
      // Redelivered after a reconnect: it is still running here; say so.
      if (this.inflight[id].phase === "running") this.send({ type: "status_update", request_id: id, status: "executing" });
      return;
    }
    if (this.queue.some((r) => r.request_id === id)) return;
    const known = this.outbox.result(id);
    if (known) {
      this.send(known);
      return;
    }
    this.queue.push(request);
    this.pump();
  }

  // Starts queued requests on free tabs; runs one pass at a time.
  pump() {
    this.pumping = this.pumping.then(async () => {
      while (this.queue.length) {
        const busy = new Set(Object.values(this.inflight).map((e) => e.tabId));
        const tabId = await this.pool.freeTab(busy, this.settings.maxTabs).catch(() => null);
        if (tabId === null) return;
        const request = this.queue.shift();
        const now = Date.now();
        this.inflight[request.request_id] = {
          request,
          tabId,
          phase: "opening",
          since: now,
          deadline: now + this.settings.answerTimeoutSeconds * 1000 + WATCHDOG_GRACE_MS,
        };
        await this.saveInflight();
        this.start(request, tabId);
      }
    });
    return this.pumping;
  }

  async start(request, tabId) {
    const id = request.request_id;
    try {
      await this.pool.open(tabId, chatUrl(request.chat_id));
      if (!this.inflight[id]) return;
      await this.pool.run(tabId, request, {
        answerTimeoutMs: this.settings.answerTimeoutSeconds * 1000,
        selectorOverrides: this.settings.selectorOverrides,
      });
      if (!this.inflight[id]) return;
      this.inflight[id].phase = "running";
      await this.saveInflight();
      this.send({ type: "status_update", request_id: id, status: "executing" });
    } catch (e) {
      await this.fail(id, e.message || String(e));
    }
  }

  // A response or error frame for a request; sent at most once per request.
  async finish(frame) {
    const id = frame.request_id;
    if (!this.inflight[id] && this.outbox.result(id)) return;
    delete this.inflight[id];
    await this.saveInflight();
    await this.outbox.remember(frame);
    await this.status.count(frame);
    this.send(frame);
    this.pump();
  }

  fail(requestId, error) {
    return this.finish({ type: "error", request_id: requestId, error });
  }

  async tabClosed(tabId) {
    await this.pool.forget(tabId);
    for (const [id, entry] of Object.entries(this.inflight)) {
      if (entry.tabId === tabId) await this.fail(id, "the ChatGPT tab running this request was closed");
    }
    this.pump();
  }

  async checkDeadlines() {
    const now = Date.now();
    for (const [id, entry] of Object.entries(this.inflight)) {
      if (now > entry.deadline) {
        await this.fail(id, `no answer from the ChatGPT tab within ${this.settings.answerTimeoutSeconds} s`);
      }
    }
  }

  // For the popup: what each tab runs now and how many wait.
  snapshot() {
    const tabs = this.pool.tabIds.map((tabId) => {
      const entry = Object.values(this.inflight).find((e) => e.tabId === tabId);
      return entry
        ? { tabId, request_id: entry.request.request_id, message: entry.request.message, phase: entry.phase, since: entry.since }
        : { tabId, request_id: null };
    });
    return { tabs, queued: this.queue.length, redelivered: this.redelivered };
  }
}
