// Results that must reach the server exactly once in effect. A result made
// while the socket is down waits here (in chrome.storage.local, so it also
// survives the worker being stopped) and is sent when the socket reopens.
// Recent results are remembered too: when the server hands out a request
// again (it restarted, or a sent frame was lost with the socket), the
// extension answers from here instead of asking ChatGPT a second time.
const KEEP_MS = 24 * 3600 * 1000;
const KEEP_COUNT = 500;

export class Outbox {
  constructor() {
    this.pending = [];
    this.finished = {};
  }

  async load() {
    const stored = await chrome.storage.local.get(["outbox", "finishedResults"]);
    this.pending = stored.outbox || [];
    this.finished = stored.finishedResults || {};
  }

  result(requestId) {
    return this.finished[requestId]?.frame || null;
  }

  async remember(frame) {
    const now = Date.now();
    this.finished[frame.request_id] = { frame, at: now };
    const kept = Object.entries(this.finished)
      .filter(([, v]) => now - v.at < KEEP_MS)
      .sort((a, b) => b[1].at - a[1].at)
      .slice(0, KEEP_COUNT);
    this.finished = Object.fromEntries(kept);
    await chrome.storage.local.set({ finishedResults: this.finished });
  }

  async hold(frame) {
    this.pending.push(frame);
    await chrome.storage.local.set({ outbox: this.pending });
  }

  // Sends what waits, in order, while send() accepts frames.
  async flush(send) {
    while (this.pending.length && send(this.pending[0])) {
      this.pending.shift();
    }
    await chrome.storage.local.set({ outbox: this.pending });
  }
}
