// A table of requests, newest first, paged by cursor ("Load older
// requests"), kept current by the event stream: a row changes in place, a
// new request that belongs on the page appears at its place, and one that no
// longer matches the filter leaves. Used for the account's requests and for
// one chat's.
import { h, fill, say } from "./dom.js";
import { between, duration, preview, statusBadge, time } from "./format.js";

const PAGE = 50;

export class RequestTable {
  // `chat`: {id, chat_id} to show one chat's requests; `showChat`: a Chat column.
  constructor(app, root, { chat = null, showChat = false } = {}) {
    this.app = app;
    this.root = root;
    this.chat = chat;
    this.showChat = showChat;
    this.status = "";
    this.rows = new Map();
    this.next = null;
    this.generation = 0;
    this.notice = h("p", { class: "error", role: "alert", hidden: true });
    this.tbody = h("tbody");
    const headings = ["Status", "Message", ...(showChat ? ["Chat"] : []), "Queued", "Took", ""];
    this.table = h(
      "table",
      { class: "requests" },
      h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
      this.tbody,
    );
    this.empty = h("p", { class: "empty", hidden: true });
    this.more = h("button", { type: "button", class: "quiet more", hidden: true, onclick: () => this.loadMore() }, "Load older requests");
    fill(root, this.notice, h("div", { class: "table-wrap" }, this.table), this.empty, this.more);
    const filter = root.closest("section")?.querySelector("#status-filter");
    if (filter && !chat) {
      this.filter = filter;
      filter.addEventListener("change", () => {
        this.status = filter.value;
        this.load();
      });
    }
  }

  setStatus(status) {
    this.status = status;
    if (this.filter) this.filter.value = status;
    this.load();
  }

  query(cursor) {
    return { status: this.status, chat: this.chat?.id, limit: PAGE, cursor };
  }

  // The first page, replacing what is shown.
  async load() {
    const generation = ++this.generation;
    const since = this.app.seq;
    say(this.notice, "");
    try {
      const { items, next } = await this.app.api.page("/api/chat/requests/", this.query());
      if (generation !== this.generation) return;
      this.tbody.replaceChildren();
      this.rows.clear();
      this.add(items, since);
      this.next = next;
      this.update();
    } catch (e) {
      if (generation !== this.generation) return;
      say(this.notice, `Could not list the requests: ${e.detail || e.message}.`);
    }
  }

  async loadMore() {
    if (!this.next) return;
    const generation = this.generation;
    const since = this.app.seq;
    this.more.disabled = true;
    try {
      const { items, next } = await this.app.api.page("/api/chat/requests/", this.query(this.next));
      if (generation !== this.generation) return;
      this.add(items, since);
      this.next = next;
      this.update();
    } catch (e) {
      say(this.notice, `Could not list more requests: ${e.detail || e.message}.`);
    } finally {
      this.more.disabled = false;
    }
  }

  add(items, since) {
    for (const item of items) {
      if (this.rows.has(item.id)) continue;
      const request = this.app.freshest(item, since);
      if (!this.matches(request)) continue;
      const row = this.row(request);
      this.rows.set(request.id, row);
      this.tbody.append(row);
    }
  }

  matches(request) {
    if (this.status && request.status !== this.status) return false;
    if (this.chat) return Boolean(this.chat.chat_id) && request.chat === this.chat.chat_id;
    return true;
  }

  // A request changed (an event, or the answer to a submit or cancel).
  apply(request) {
    const row = this.rows.get(request.id);
    if (row) {
      if (this.matches(request)) row.replaceWith(this.remember(this.row(request)));
      else {
        row.remove();
        this.rows.delete(request.id);
      }
    } else if (this.matches(request)) {
      // Newest first by id (UUIDv7: time-ordered). Past the last row shown,
      // it belongs to a page not loaded yet.
      const shown = [...this.tbody.rows];
      const last = shown.at(-1);
      if (this.next && last && request.id < last.dataset.requestId) return;
      const older = shown.find((row) => row.dataset.requestId < request.id);
      const row = this.remember(this.row(request));
      if (older) older.before(row);
      else this.tbody.append(row);
    }
    this.update();
  }

  remember(row) {
    this.rows.set(row.dataset.requestId, row);
    return row;
  }

  // Redraws every row (e.g. chat titles became known).
  redraw() {
    for (const [id, row] of this.rows) {
      const request = this.app.latest.get(id)?.request || row.request;
      row.replaceWith(this.remember(this.row(request)));
    }
  }

  update() {
    const none = this.rows.size === 0;
    this.table.hidden = none;
    this.empty.hidden = !none;
    this.empty.textContent = this.status ? `No ${this.status} requests.` : this.chat ? "No requests in this chat." : "No requests yet. Submit one.";
    this.more.hidden = !this.next;
  }

  row(request) {
    const link = h("a", { href: `#/requests/${request.id}`, class: "message" }, preview(request.message) || "(empty)");
    const message = h("td", { "data-label": "Message" }, link);
    if (request.status === "failed" && request.error_message) {
      message.append(h("span", { class: "row-error" }, preview(request.error_message, 100)));
    }
    const cells = [
      h("td", { "data-label": "Status" }, statusBadge(request.status)),
      message,
      this.showChat ? h("td", { "data-label": "Chat" }, this.app.chats.label(request.chat, request.status)) : null,
      h("td", { "data-label": "Queued" }, time(request.queued_at)),
      h("td", { "data-label": "Took" }, took(request)),
      h("td", { class: "actions" }, request.status === "idle" ? this.cancelButton(request) : null),
    ];
    const row = h("tr", { dataset: { requestId: request.id, status: request.status } }, cells);
    row.request = request;
    return row;
  }

  cancelButton(request) {
    return h(
      "button",
      {
        type: "button",
        class: "quiet danger",
        title: `Cancel: “${preview(request.message, 60)}” will not be run`,
        onclick: async (event) => {
          const button = event.currentTarget;
          button.disabled = true;
          say(this.notice, "");
          const error = await this.app.detail.cancel(request.id);
          if (error) say(this.notice, `Could not cancel the request: ${error}`);
          button.disabled = false;
        },
      },
      "Cancel",
    );
  }
}

// How long a request took, or where it is.
function took(request) {
  if (request.completed_at) {
    return h("span", { title: "queued → completed" }, duration(between(request.queued_at, request.completed_at)));
  }
  if (request.started_at) return h("span", { class: "muted" }, "running");
  return h("span", { class: "muted" }, "waiting");
}
