// The "New request" form: POST /api/chat/submit/. The server validates; its
// `detail` is shown under the form as it is. "Chat" continues one of the
// account's chats that ChatGPT has named (a chat without a ChatGPT id yet
// cannot be continued).
import { h, fill, say } from "./dom.js";

export class SubmitForm {
  constructor(app) {
    this.app = app;
    this.form = document.getElementById("submit-form");
    this.message = document.getElementById("message");
    this.chat = document.getElementById("chat");
    this.error = document.getElementById("submit-error");
    this.result = document.getElementById("submit-result");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  async send() {
    const button = this.form.querySelector("button[type=submit]");
    const body = {
      message: this.message.value,
      response_type: document.getElementById("response-type").value,
      thinking_time: document.getElementById("thinking-time").value,
    };
    if (this.chat.value) body.chat_id = this.chat.value;
    say(this.error, "");
    say(this.result, "");
    button.disabled = true;
    try {
      const request = await this.app.api.post("/api/chat/submit/", body);
      this.app.applyRequest(request);
      this.message.value = "";
      fill(this.result, "Queued as ", h("a", { href: `#/requests/${request.id}` }, "request …" + request.id.slice(-8)), ".");
      this.result.hidden = false;
    } catch (e) {
      say(this.error, e.detail || e.message);
    } finally {
      button.disabled = false;
    }
  }

  // The account's chats that can be continued, newest first.
  setChats(chats) {
    const chosen = this.chat.value;
    const options = chats
      .filter((chat) => chat.chat_id)
      .map((chat) => h("option", { value: chat.chat_id }, `${chat.title || "untitled"} · ${chat.chat_id}`));
    fill(this.chat, h("option", { value: "" }, "New chat"), options);
    this.chat.value = chats.some((chat) => chat.chat_id === chosen) ? chosen : "";
  }
}
