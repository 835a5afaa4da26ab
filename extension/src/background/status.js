// What the popup shows: the connection and why, requests done and failed
// today, and the last error. Counters live in chrome.storage.local so they
// outlast the worker; the connection state is only meaningful while it runs.
export class Status {
  constructor() {
    this.connection = { state: "connecting", reason: "starting", since: Date.now() };
    this.stats = { day: today(), done: 0, failed: 0, lastError: null };
  }

  async load() {
    const { stats } = await chrome.storage.local.get("stats");
    if (stats) this.stats = stats;
    this.rollDay();
  }

  setConnection({ state, reason }) {
    this.connection = { state, reason, since: Date.now() };
    console.info(`chatrelay: ${state}: ${reason}`);
  }

  async count(frame) {
    this.rollDay();
    if (frame.type === "response") {
      this.stats.done += 1;
    } else {
      this.stats.failed += 1;
      this.stats.lastError = { at: Date.now(), request_id: frame.request_id, text: frame.error };
    }
    await chrome.storage.local.set({ stats: this.stats });
  }

  async noteServerError(text) {
    this.stats.lastError = { at: Date.now(), request_id: null, text: `server: ${text}` };
    await chrome.storage.local.set({ stats: this.stats });
  }

  rollDay() {
    if (this.stats.day !== today()) this.stats = { day: today(), done: 0, failed: 0, lastError: this.stats.lastError };
  }
}

function today() {
  return new Date().toISOString().slice(0, 10);
}
