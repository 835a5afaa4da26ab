// The account's connected extension sessions (GET /api/chat/sessions/),
// asked for every 5 s while the page is visible. None connected is said
// loudly, at the top of every view: then nothing submitted will run.
import { h, fill } from "./dom.js";
import { shortId, time } from "./format.js";

const EVERY_MS = 5000;

export class Sessions {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("sessions");
    this.state = document.getElementById("extension-state");
    this.busy = false;
  }

  start() {
    this.refresh();
    setInterval(() => {
      if (document.visibilityState === "visible") this.refresh();
    }, EVERY_MS);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.refresh();
    });
  }

  async refresh() {
    if (this.busy) return;
    this.busy = true;
    try {
      this.render(await this.app.api.get("/api/chat/sessions/"));
    } catch (e) {
      const reason = e.detail || e.message;
      this.seen = null;
      this.state.className = "extension-state unknown";
      this.state.textContent = "Extensions: unknown";
      this.state.title = reason;
      fill(this.root, h("p", { class: "error", role: "alert" }, `Could not list the extension sessions: ${reason}.`));
    } finally {
      this.busy = false;
    }
  }

  render(sessions) {
    // Unchanged: leave the page alone (no flicker, no repeated announcement).
    const seen = JSON.stringify(sessions);
    if (seen === this.seen) return;
    this.seen = seen;
    const none = sessions.length === 0;
    this.state.className = `extension-state ${none ? "none" : "some"}`;
    this.state.textContent = none
      ? "No extension connected"
      : `${sessions.length} extension${sessions.length === 1 ? "" : "s"} connected`;
    this.state.title = none ? "Submitted requests wait until an extension connects" : "";
    if (none) {
      fill(
        this.root,
        h(
          "div",
          { class: "no-extension", role: "status" },
          h("strong", {}, "No extension connected"),
          h(
            "p",
            {},
            "Nothing will run: submitted requests wait in the queue until the chatrelay browser extension " +
              "(or chatrelay extension simulate) connects with this account's API key.",
          ),
        ),
      );
      return;
    }
    const inFlight = sessions.reduce((sum, s) => sum + (s.in_flight || 0), 0);
    fill(
      this.root,
      h("p", { role: "status" }, `${sessions.length} connected, ${inFlight} request${inFlight === 1 ? "" : "s"} in flight.`),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "sessions" },
          h("thead", {}, h("tr", {}, ["Session", "Connected since", "In flight", "Node"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            sessions.map((s) =>
              h(
                "tr",
                { dataset: { sessionId: s.session_id } },
                h("td", { "data-label": "Session" }, shortId(s.session_id)),
                h("td", { "data-label": "Connected since" }, time(s.connected_at)),
                h("td", { "data-label": "In flight", class: "in-flight" }, String(s.in_flight)),
                h("td", { "data-label": "Node" }, shortId(s.node)),
              ),
            ),
          ),
        ),
      ),
    );
  }
}
