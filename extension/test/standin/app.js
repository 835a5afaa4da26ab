// The stand-in page's behaviour, after ChatGPT's: the send button is enabled
// only with text in the composer; sending shows a stop button while the
// answer streams in block by block; the first answer turns the address into
// /c/<id>, and the chat's title appears a moment later (tab title and
// sidebar link). Logged out, the page shows its log-in buttons.
(function () {
  const state = JSON.parse(document.getElementById("standin-state").textContent);
  const $ = (id) => document.getElementById(id);
  const composer = $("prompt-textarea");
  const send = $("send");
  // Like ChatGPT, the stop button replaces the send button while streaming.
  const stop = document.createElement("button");
  stop.type = "button";
  stop.dataset.testid = "stop-button";
  stop.textContent = "Stop";
  let conversationId = state.conversation ? state.conversation.id : null;
  const mode = { response_type: "auto", thinking_time: "standard" };
  const BLOCK_MS = 200;

  function link(id, title) {
    const a = document.createElement("a");
    a.href = `/c/${id}`;
    a.textContent = title;
    $("history").prepend(a);
  }
  for (const c of state.sidebar) link(c.id, c.title);

  function addMessage(role, html) {
    const div = document.createElement("div");
    div.setAttribute("data-message-author-role", role);
    const inner = document.createElement("div");
    inner.className = role === "assistant" ? "markdown prose" : "whitespace-pre-wrap";
    inner.innerHTML = html;
    div.append(inner);
    $("thread").append(div);
    return inner;
  }
  const escape = (t) => t.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);

  if (state.conversation) {
    for (const turn of state.conversation.turns) {
      addMessage("user", escape(turn.message));
      addMessage("assistant", turn.html.join(""));
    }
  }
  if (state.loggedOut) {
    $("login").innerHTML =
      '<button data-testid="login-button">Log in</button> <button data-testid="signup-button">Sign up for free</button>';
  }

  // The composer's text, line by line, the way an editor's model holds it
  // (innerText would count an empty line's <div><br></div> twice).
  function composerText() {
    const lines = [""];
    for (const node of composer.childNodes) {
      if (node.nodeName === "DIV" || node.nodeName === "P") {
        lines.push(node.textContent);
      } else if (node.nodeName === "BR") {
        lines.push("");
      } else {
        lines[lines.length - 1] += node.textContent;
      }
    }
    return lines.join("\n");
  }

  composer.addEventListener("input", () => {
    send.disabled = composer.textContent.trim() === "";
  });

  $("model-button").addEventListener("click", () => {
    $("model-menu").hidden = !$("model-menu").hidden;
  });
  $("model-menu").addEventListener("click", (event) => {
    const item = event.target.closest("[role=menuitem]");
    if (!item) return;
    if (item.dataset.mode) mode.response_type = item.dataset.mode;
    if (item.dataset.thinking) mode.thinking_time = item.dataset.thinking;
    $("model-button").textContent = `ChatGPT 5 ${item.textContent}`;
    // Choosing Thinking leaves the menu open on its thinking-time choices.
    if (item.dataset.mode !== "thinking") $("model-menu").hidden = true;
  });

  $("composer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = composerText().trim();
    if (!message || state.loggedOut) return;
    composer.textContent = "";
    send.disabled = true;
    send.replaceWith(stop);
    $("notice").replaceChildren();
    addMessage("user", escape(message));
    const isNew = conversationId === null;
    const res = await fetch("/backend-api/conversation", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ conversation_id: conversationId, message, mode: { ...mode } }),
    });
    const body = await res.json();
    if (!res.ok) {
      const notice = document.createElement("div");
      notice.setAttribute("role", "alert");
      notice.className = "text-token-text-error error";
      notice.textContent = body.detail;
      $("notice").append(notice);
      stop.replaceWith(send);
      return;
    }
    conversationId = body.conversation_id;
    if (isNew) history.pushState({}, "", `/c/${conversationId}`);
    const target = addMessage("assistant", "");
    for (const block of body.blocks) {
      await new Promise((r) => setTimeout(r, BLOCK_MS));
      target.insertAdjacentHTML("beforeend", block);
    }
    stop.replaceWith(send);
    if (isNew) {
      await new Promise((r) => setTimeout(r, 300));
      document.title = body.title;
      link(conversationId, body.title);
    }
  });
})();
