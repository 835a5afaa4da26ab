// The account's webhook deliveries, newest first, each with its attempts
// (GET /api/chat/webhooks/), and "Retry" for a finished one
// (POST /api/chat/webhooks/{id}/retry/). Asked for again every 5 s while
// shown, and shortly after a request finishes (that makes a delivery).
import { h, fill, say } from "./dom.js";
import { duration, shortId, statusBadge, time } from "./format.js";

const PAGE = 50;
const EVERY_MS = 5000;

export class Webhooks {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("webhooks");
    this.items = [];
    this.next = null;
    this.shown = false;
    this.loaded = false;
    this.notice = h("p", { class: "error", role: "alert", hidden: true });
    document.getElementById("webhooks-refresh").addEventListener("click", () => this.refresh());
    setInterval(() => {
      if (this.shown && document.visibilityState === "visible") this.refresh();
    }, EVERY_MS);
  }

  setShown(shown) {
    const was = this.shown;
    this.shown = shown;
    if (shown && !was) this.refresh();
  }

  refreshIfShown() {
    if (this.shown) this.refresh();
  }

  schedule() {
    if (!this.shown) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 500);
  }

  // The newest page again; older pages already loaded are kept.
  async refresh() {
    if (this.busy) return;
    this.busy = true;
    try {
      const { items, next } = await this.app.api.page("/api/chat/webhooks/", { limit: PAGE });
      const oldest = items.at(-1)?.id;
      const older = oldest && next ? this.items.filter((d) => d.id < oldest) : [];
      this.items = [...items, ...older];
      if (!older.length) this.next = next;
      this.loaded = true;
      this.render();
    } catch (e) {
      fill(this.root, h("p", { class: "error", role: "alert" }, `Could not list the webhook deliveries: ${e.detail || e.message}.`));
      this.seen = null;
    } finally {
      this.busy = false;
    }
  }

  async loadMore(button) {
    button.disabled = true;
    try {
      const { items, next } = await this.app.api.page("/api/chat/webhooks/", { limit: PAGE, cursor: this.next });
      this.items = [...this.items, ...items.filter((d) => !this.items.some((i) => i.id === d.id))];
      this.next = next;
      this.render();
    } catch (e) {
      button.disabled = false;
      say(this.notice, `Could not list more deliveries: ${e.detail || e.message}.`);
    }
  }

  async retry(delivery, button) {
    button.disabled = true;
    say(this.notice, "");
    try {
      const updated = await this.app.api.post(`/api/chat/webhooks/${encodeURIComponent(delivery.id)}/retry/`);
      this.items = this.items.map((d) => (d.id === updated.id ? updated : d));
      this.render();
    } catch (e) {
      say(this.notice, `Could not retry the delivery: ${e.detail || e.message}`);
      button.disabled = false;
    }
  }

  render() {
    // Unchanged: leave the page (and the focus in it) alone.
    const seen = JSON.stringify([this.items, this.next]);
    if (seen === this.seen && this.root.contains(this.notice)) return;
    this.seen = seen;
    if (!this.items.length) {
      fill(
        this.root,
        this.notice,
        h("p", { class: "empty" }, "No webhook deliveries. A delivery is made when a request finishes, if the account has a webhook URL (chatrelay account set-webhook)."),
      );
      return;
    }
    const focused = this.root.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    const rows = this.items.map((d) =>
      h(
        "tr",
        { dataset: { deliveryId: d.id, status: d.status } },
        h("td", { "data-label": "Status" }, statusBadge(d.status)),
        h("td", { "data-label": "Request" }, h("a", { href: `#/requests/${d.request_id}`, title: d.request_id }, "…" + d.request_id.slice(-8))),
        h("td", { "data-label": "URL", class: "url" }, d.url),
        h("td", { "data-label": "Attempts" }, attempts(d)),
        h("td", { "data-label": "Created" }, time(d.created_at)),
        h(
          "td",
          { class: "actions" },
          d.status === "pending"
            ? null
            : h(
                "button",
                {
                  type: "button",
                  class: "quiet",
                  "data-focus-key": `retry-${d.id}`,
                  title: "Send this delivery again now, with a fresh retry schedule",
                  onclick: (e) => this.retry(d, e.currentTarget),
                },
                "Retry",
              ),
        ),
      ),
    );
    fill(
      this.root,
      this.notice,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "webhooks" },
          h("thead", {}, h("tr", {}, ["Status", "Request", "URL", "Attempts", "Created", ""].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows),
        ),
      ),
      this.next ? h("button", { type: "button", class: "quiet more", onclick: (e) => this.loadMore(e.currentTarget) }, "Load older deliveries") : null,
    );
    if (focused) this.root.querySelector(`[data-focus-key="${focused}"]`)?.focus();
  }
}

// A delivery's attempts, oldest first, and when the next one is due.
function attempts(d) {
  const list = h(
    "ol",
    { class: "attempts" },
    d.attempts.map((a) =>
      h(
        "li",
        {},
        `#${a.attempt} `,
        time(a.attempted_at),
        " · ",
        a.status_code ? `HTTP ${a.status_code}` : "no response",
        a.duration_ms !== null && a.duration_ms !== undefined ? ` · ${duration(a.duration_ms)}` : "",
        a.error ? h("span", { class: "row-error" }, a.error) : null,
      ),
    ),
  );
  return [
    d.attempts.length ? list : h("span", { class: "muted" }, "none yet"),
    d.next_attempt_at ? h("span", { class: "note" }, "next attempt ", time(d.next_attempt_at)) : null,
    h("span", { class: "muted small delivery-id" }, "delivery ", shortId(d.id)),
  ];
}
