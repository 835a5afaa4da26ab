// One request: its message, its answer rendered from Markdown (as text
// nodes only: HTML in an answer is shown, never run), its error, when it was
// queued, started and completed and how long each step took, and its chat.
// An idle request can be cancelled here.
import { h, fill, say } from "./dom.js";
import { between, duration, statusBadge, time } from "./format.js";
import { renderMarkdown } from "./markdown.js";

export class Detail {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("detail");
    this.id = null;
    this.request = null;
  }

  show(id) {
    if (id === this.id && this.request) return;
    this.id = id;
    this.request = null;
    fill(this.root, h("h2", { id: "detail-title", tabindex: "-1" }, "Request"), h("p", { class: "muted" }, "Loading…"));
    this.reload();
  }

  hide() {
    this.id = null;
    this.request = null;
  }

  async reload() {
    const id = this.id;
    if (!id) return;
    const since = this.app.seq;
    try {
      const request = await this.app.api.get(`/api/chat/requests/${encodeURIComponent(id)}/`);
      if (id !== this.id) return;
      this.render(this.app.freshest(request, since));
    } catch (e) {
      if (id !== this.id) return;
      fill(
        this.root,
        h("h2", { id: "detail-title", tabindex: "-1" }, "Request"),
        h("p", { class: "error", role: "alert" }, e.status === 404 ? `No such request: ${e.detail}.` : `Could not load the request: ${e.detail || e.message}.`),
      );
      this.app.headingShown();
    }
  }

  apply(request) {
    if (request.id === this.id) this.render(request);
  }

  // Cancels an idle request; resolves to null, or to the server's reason.
  async cancel(id) {
    try {
      this.app.applyRequest(await this.app.api.post(`/api/chat/requests/${encodeURIComponent(id)}/cancel/`));
      return null;
    } catch (e) {
      // The request moved on (or is gone): show what it is now.
      if (e.status === 409) {
        this.app.api.get(`/api/chat/requests/${encodeURIComponent(id)}/`).then((r) => this.app.applyRequest(r), () => {});
      }
      return e.detail || e.message;
    }
  }

  render(request) {
    this.request = request;
    const hadFocus = this.root.contains(document.activeElement) ? document.activeElement.id : null;
    const cancelError = h("p", { class: "error", role: "alert", hidden: true });
    const cancel =
      request.status === "idle"
        ? h(
            "button",
            {
              type: "button",
              id: "detail-cancel",
              class: "danger",
              onclick: async (event) => {
                const button = event.currentTarget;
                button.disabled = true;
                const error = await this.cancel(request.id);
                if (error) {
                  say(cancelError, `Could not cancel: ${error}`);
                  button.disabled = false;
                }
              },
            },
            "Cancel",
          )
        : null;
    const waited = between(request.queued_at, request.started_at);
    const ran = between(request.started_at, request.completed_at);
    const total = between(request.queued_at, request.completed_at);
    fill(
      this.root,
      h("div", { class: "detail-head" }, h("h2", { id: "detail-title", tabindex: "-1" }, "Request"), statusBadge(request.status), cancel),
      cancelError,
      h(
        "dl",
        { class: "facts" },
        fact("Id", h("code", {}, request.id)),
        fact("Chat", request.chat ? this.app.chats.label(request.chat) : h("span", { class: "muted" }, request.status === "failed" ? "none" : "a new chat, named when ChatGPT answers")),
        fact("Response type", request.response_type),
        fact("Thinking time", request.thinking_time),
      ),
      h("h3", {}, "Timeline"),
      h(
        "ol",
        { class: "timeline" },
        step("Queued", request.queued_at, null),
        step("Started", request.started_at, waited === null ? null : `queued → started: ${duration(waited)}`),
        step(
          "Completed",
          request.completed_at,
          request.completed_at
            ? [ran === null ? null : `started → completed: ${duration(ran)}`, `queued → completed: ${duration(total)}`].filter(Boolean).join(" · ")
            : null,
        ),
      ),
      h("h3", {}, "Message"),
      h("pre", { class: "message-text" }, request.message),
      request.error_message ? [h("h3", {}, "Error"), h("p", { class: "error-message" }, request.error_message)] : null,
      h("h3", {}, "Response"),
      request.response === null
        ? h("p", { class: "muted" }, request.status === "failed" ? "No response: the request failed." : "No response yet: it appears here the moment it lands.")
        : [
            h("div", { class: "markdown response" }, renderMarkdown(request.response)),
            h("details", { class: "raw" }, h("summary", {}, "Raw text"), h("pre", {}, request.response)),
          ],
    );
    if (hadFocus) document.getElementById(hadFocus)?.focus();
    this.app.headingShown();
  }
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

function step(name, at, note) {
  return h(
    "li",
    { class: at ? "reached" : "pending" },
    h("span", { class: "step" }, name),
    " ",
    at ? time(at) : h("span", { class: "muted" }, "not yet"),
    note ? h("span", { class: "note" }, note) : null,
  );
}
