// The account's chats: the list (title, ChatGPT id, how many requests), one
// chat's requests, and the chat names other views show for a request's chat.
import { h, fill, say } from "./dom.js";
import { time } from "./format.js";
import { RequestTable } from "./requests.js";

const PAGE = 100;
const STATUSES = ["idle", "executing", "done", "failed"];
// Per-chat counts asked for at once (one call per chat shown).
const COUNTS_AT_ONCE = 4;

export class Chats {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("chats");
    this.items = [];
    this.next = null;
    this.byChatgptId = new Map();
    this.byId = new Map();
    this.looking = new Set();
    this.listShown = false;
    this.open = null; // { chat, table }
    // Each listed chat's counts per status, asked for once and again only
    // when one of its requests changes.
    this.counts = new Map();
    this.stale = new Set();
    this.queue = [];
    this.running = 0;
  }

  remember(chats) {
    for (const chat of chats) {
      this.byId.set(chat.id, chat);
      if (chat.chat_id) this.byChatgptId.set(chat.chat_id, chat);
    }
  }

  // The newest page of chats: for the "Chat" picker, the names of chats, and the list.
  async refresh() {
    try {
      const { items, next } = await this.app.api.page("/api/chat/chats/", { limit: PAGE });
      this.remember(items);
      this.items = items;
      this.next = next;
      this.app.submit.setChats(items);
      this.app.requests.redraw();
      if (this.listShown) this.renderList();
    } catch (e) {
      if (this.listShown) fill(this.root, h("p", { class: "error", role: "alert" }, `Could not list the chats: ${e.detail || e.message}.`));
    }
  }

  // A request changed: its chat's counts did, and a finished one may have
  // named its chat.
  apply(request) {
    this.open?.table.apply(request);
    const chat = request.chat && this.byChatgptId.get(request.chat);
    if (chat) this.stale.add(chat.id);
    const finished = request.status === "done" || request.status === "failed";
    if (!chat && !finished) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (finished) this.refresh();
      for (const id of this.stale) this.counts.delete(id);
      if (this.listShown) for (const id of this.stale) this.recount(id);
      this.stale.clear();
      if (this.open) this.renderOpenCounts();
    }, 400);
  }

  // A request's chat (its ChatGPT id) as a link to the chat, named by its
  // title. A request without one is in a chat ChatGPT has not named yet, or,
  // once it failed, in none.
  label(chatgptId, status) {
    if (!chatgptId) return h("span", { class: "muted" }, status === "failed" ? "—" : "new chat");
    const chat = this.byChatgptId.get(chatgptId);
    if (!chat) {
      this.lookUp(chatgptId);
      return h("code", { class: "chat-id" }, chatgptId);
    }
    return h("a", { href: `#/chats/${chat.id}`, title: chatgptId }, chat.title || "untitled");
  }

  async lookUp(chatgptId) {
    if (this.looking.has(chatgptId)) return;
    this.looking.add(chatgptId);
    try {
      this.remember([await this.app.api.get(`/api/chat/chats/${encodeURIComponent(chatgptId)}/`)]);
      this.app.requests.redraw();
      if (this.app.detail.request?.chat === chatgptId) this.app.detail.render(this.app.detail.request);
    } catch {
      // Not named yet or gone: the id is shown as it is.
    }
  }

  showList() {
    this.listShown = true;
    this.renderList();
    this.refresh();
  }

  hideList() {
    this.listShown = false;
  }

  renderList() {
    if (!this.items.length) {
      fill(this.root, h("p", { class: "empty" }, "No chats yet: each submit without a chat starts one."));
      return;
    }
    const rows = this.items.map((chat) => {
      const count = h("span", { class: "muted", "data-count-of": chat.id }, "…");
      this.showCount(chat.id, count);
      return h(
        "tr",
        { dataset: { chatId: chat.id } },
        h("td", { "data-label": "Title" }, h("a", { href: `#/chats/${chat.id}` }, chat.title || "untitled")),
        h("td", { "data-label": "ChatGPT id" }, chat.chat_id ? h("code", {}, chat.chat_id) : h("span", { class: "muted" }, "not named yet")),
        h("td", { "data-label": "Requests", class: "requests-count" }, count),
        h("td", { "data-label": "Updated" }, time(chat.updated_at)),
      );
    });
    const more = this.next
      ? h("button", { type: "button", class: "quiet more", onclick: (e) => this.loadMore(e.currentTarget) }, "Load older chats")
      : null;
    fill(
      this.root,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "chats" },
          h("thead", {}, h("tr", {}, ["Title", "ChatGPT id", "Requests", "Updated"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows),
        ),
      ),
      more,
    );
  }

  async loadMore(button) {
    button.disabled = true;
    try {
      const { items, next } = await this.app.api.page("/api/chat/chats/", { limit: PAGE, cursor: this.next });
      this.remember(items);
      this.items = [...this.items, ...items];
      this.next = next;
      this.renderList();
    } catch (e) {
      button.disabled = false;
      button.after(h("p", { class: "error", role: "alert" }, `Could not list more chats: ${e.detail || e.message}.`));
    }
  }

  // Shows the chat's request count in `el`: known, or asked for (a few
  // calls at a time: the API counts one chat per call).
  showCount(chatId, el) {
    const known = this.counts.get(chatId);
    if (known) return fillCount(el, known);
    if (this.queue.some((q) => q.chatId === chatId)) return;
    this.queue.push({
      chatId,
      run: async () => {
        try {
          this.counts.set(chatId, await this.app.api.get("/api/chat/counts/", { chat: chatId }));
        } catch (e) {
          this.counts.set(chatId, { error: e.detail || e.message });
        }
        const shown = this.root.querySelector(`[data-count-of="${chatId}"]`);
        if (shown) fillCount(shown, this.counts.get(chatId));
      },
    });
    this.pump();
  }

  recount(chatId) {
    const el = this.root.querySelector(`[data-count-of="${chatId}"]`);
    if (el) this.showCount(chatId, el);
  }

  pump() {
    while (this.running < COUNTS_AT_ONCE && this.queue.length) {
      const { run } = this.queue.shift();
      this.running += 1;
      run().finally(() => {
        this.running -= 1;
        this.pump();
      });
    }
  }

  async showChat(id) {
    if (this.open?.chat.id === id) return;
    const head = document.getElementById("chat-head");
    const root = document.getElementById("chat-requests");
    if (!this.byId.has(id)) await this.refresh();
    const chat = this.byId.get(id) || { id, chat_id: null, title: null, created_at: null, updated_at: null };
    this.open = { chat, table: new RequestTable(this.app, root, { chat }) };
    const counts = h("span", { id: "chat-counts" }, "…");
    fill(
      head,
      h("h2", { id: "chat-title", tabindex: "-1" }, chat.title || `Chat ${id}`),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "ChatGPT id"),
        h("dd", {}, chat.chat_id ? h("code", {}, chat.chat_id) : h("span", { class: "muted" }, "not named yet")),
        h("dt", {}, "Created"),
        h("dd", {}, time(chat.created_at)),
        h("dt", {}, "Updated"),
        h("dd", {}, time(chat.updated_at)),
        h("dt", {}, "Requests"),
        h("dd", {}, counts),
      ),
      h("h3", {}, "Its requests, newest first"),
    );
    this.app.headingShown();
    this.renderOpenCounts();
    this.open.table.load();
  }

  async renderOpenCounts() {
    const el = document.getElementById("chat-counts");
    if (!this.open || !el) return;
    try {
      const counts = await this.app.api.get("/api/chat/counts/", { chat: this.open.chat.id });
      fill(el, STATUSES.map((s) => `${counts[s] ?? 0} ${s}`).join(" · "));
    } catch (e) {
      say(el, `unavailable (${e.detail || e.message})`);
    }
  }

  reloadOpenChat() {
    if (!this.open) return;
    this.open.table.load();
    this.renderOpenCounts();
  }

  hideChat() {
    this.open = null;
  }
}

// A chat's total number of requests, with the split by status in its title.
function fillCount(el, counts) {
  if (counts.error) {
    fill(el, "—");
    el.title = `unavailable: ${counts.error}`;
    return;
  }
  const total = STATUSES.reduce((sum, s) => sum + (counts[s] || 0), 0);
  fill(el, String(total));
  el.className = "count";
  el.title = STATUSES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(", ") || "none";
}
