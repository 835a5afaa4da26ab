// Requests per status, at the top of every view: GET /api/chat/counts/,
// asked again shortly after events (several events, one call).
import { say } from "./dom.js";

const STATUSES = ["idle", "executing", "done", "failed"];
const DEBOUNCE_MS = 300;

export class Counts {
  constructor(app) {
    this.app = app;
    this.error = document.getElementById("counts-error");
    this.inFlight = false;
    this.again = false;
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), DEBOUNCE_MS);
  }

  async refresh() {
    // One call at a time; a change meanwhile asks once more after it.
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = true;
    try {
      const counts = await this.app.api.get("/api/chat/counts/");
      for (const status of STATUSES) {
        document.querySelector(`[data-count="${status}"]`).textContent = String(counts[status] ?? 0);
      }
      say(this.error, "");
    } catch (e) {
      for (const status of STATUSES) document.querySelector(`[data-count="${status}"]`).textContent = "—";
      say(this.error, `Counts unavailable: ${e.detail || e.message}.`);
    } finally {
      this.inFlight = false;
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    }
  }
}
