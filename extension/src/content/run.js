// Runs one chatrelay request on this ChatGPT tab, on the background worker's
// orders: wait for the page, pick the mode, type and send the message, wait
// for the complete answer, read it as Markdown, and report it with the chat's
// id and title. The worker owns the WebSocket; this script only talks to it.
(function () {
  if (globalThis.__chatrelayContentScript) return;
  globalThis.__chatrelayContentScript = true;

  const { ChatGptPage, RunError } = globalThis.ChatrelayPage;
  const PAGE_READY_MS = 30_000;
  const SEND_READY_MS = 5_000;
  const ANSWER_START_MS = 120_000;
  const CHAT_URL_MS = 15_000;
  const TITLE_MS = 5_000;
  const SETTLE_MS = 1_000;

  let running = null;
  // Tells this page load apart from the previous one in the same tab.
  const loadId = `${Date.now()}-${Math.random().toString(36).slice(2)}`;

  chrome.runtime.onMessage.addListener((message, _sender, reply) => {
    if (message?.type === "chatrelay:ping") {
      reply({ ready: true, loadId, running });
    } else if (message?.type === "chatrelay:run") {
      if (running && running !== message.request.request_id) {
        reply({ accepted: false, error: `this tab is already running request ${running}` });
      } else if (running) {
        reply({ accepted: true });
      } else {
        running = message.request.request_id;
        reply({ accepted: true });
        runAndReport(message.request, message.options);
      }
    }
  });

  async function runAndReport(request, options) {
    let frame;
    try {
      const answer = await run(request, options);
      frame = { type: "response", request_id: request.request_id, ...answer };
    } catch (e) {
      const reason = e instanceof RunError ? e.message : `unexpected failure in the page: ${e}`;
      frame = { type: "error", request_id: request.request_id, error: reason };
    }
    running = null;
    await deliver(frame);
  }

  // Hands the result to the worker, waking it if Chrome stopped it; retried
  // because a worker that is starting up may not be listening yet.
  async function deliver(frame) {
    for (let attempt = 0; attempt < 30; attempt++) {
      try {
        const reply = await chrome.runtime.sendMessage({ type: "chatrelay:result", frame });
        if (reply?.ok) return;
      } catch {
        // The worker is restarting; try again shortly.
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  async function run(request, options) {
    const page = new ChatGptPage(globalThis.ChatrelaySelectors.resolveSelectors(options.selectorOverrides));

    const composer = await page.waitFor(
      () => {
        if (page.find("loginButton")) {
          throw new RunError(
            "not logged in to ChatGPT: the page shows its log-in button; log in to chatgpt.com in this browser profile",
          );
        }
        return page.find("composer");
      },
      PAGE_READY_MS,
      () => page.pageChanged("composer", `no message box after ${PAGE_READY_MS / 1000} s`),
    );
    if (request.chat_id && page.chatIdFromUrl() !== request.chat_id) {
      throw new RunError(`chat ${request.chat_id} did not open: ChatGPT shows ${location.pathname} instead`);
    }
    if (request.chat_id) {
      // An existing chat loads its history after the composer: count the
      // answers only once they are there, or an old one would pass for new.
      await page.waitFor(
        () => page.findAll("assistantMessage").length > 0,
        PAGE_READY_MS,
        () => page.pageChanged("assistantMessage", `chat ${request.chat_id} shows no earlier answer`),
      );
    }

    await pickMode(page, request);

    const before = page.findAll("assistantMessage").length;
    page.typeMessage(composer, request.message);
    const send = await page.waitFor(
      () => {
        const button = page.find("sendButton");
        return button && !button.disabled && button.getAttribute("aria-disabled") !== "true" && button;
      },
      SEND_READY_MS,
      () => page.pageChanged("sendButton", "no enabled send button after typing the message"),
    );
    send.click();

    const failIfLimited = () => {
      const notice = page.rateLimitNotice();
      if (notice) throw new RunError(`ChatGPT refused the message (rate limit or usage cap): ${notice}`);
    };
    await page.waitFor(
      () => {
        failIfLimited();
        return page.find("stopButton") || page.findAll("assistantMessage").length > before;
      },
      ANSWER_START_MS,
      () =>
        page.pageChanged(
          "stopButton",
          `neither a stop button nor a new assistant message appeared within ${ANSWER_START_MS / 1000} s of sending`,
        ),
    );
    const timeoutMs = options.answerTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    const finished = () => {
      failIfLimited();
      const all = page.findAll("assistantMessage");
      if (all.length <= before || page.find("stopButton")) return null;
      const last = all[all.length - 1];
      return last.textContent.trim() ? last : null;
    };
    let message;
    for (;;) {
      message = await page.waitFor(finished, Math.max(0, deadline - Date.now()), () =>
        new RunError(`the answer did not finish within ${Math.round(timeoutMs / 1000)} s`),
      );
      // Complete means it stays complete: no stop button coming back and no
      // more text for a moment (the page may swap its buttons between phases).
      const text = message.textContent;
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      if (finished() === message && message.textContent === text) break;
    }
    const content = contentOf(page, message);
    const response = globalThis.ChatrelayMarkdown.toMarkdown(content);
    const opening = response.toLowerCase();
    if (response.length < 400 && globalThis.ChatrelaySelectors.REFUSAL_OPENINGS.some((p) => opening.startsWith(p))) {
      throw new RunError(`ChatGPT refused the message (rate limit or usage cap): ${response}`);
    }

    const chatId = await page.waitFor(
      () => page.chatIdFromUrl(),
      CHAT_URL_MS,
      () => new RunError(`ChatGPT's page changed: the address did not become /c/<id> (it is ${location.pathname})`),
    );
    const title = await page
      .waitFor(() => titleOf(page, chatId), TITLE_MS, () => null)
      .catch(() => null);
    const answer = { response, chat_id: chatId };
    if (title) answer.chat_title = title;
    return answer;
  }

  function contentOf(page, message) {
    for (const selector of page.selectors.assistantContent || []) {
      const found = message.querySelectorAll(selector);
      if (found.length) return found[found.length - 1];
    }
    return message;
  }

  // The chat's title from the sidebar, else from the tab title when the page
  // has set one (ChatGPT's own title is just "ChatGPT" until it names the chat).
  function titleOf(page, chatId) {
    const link = page.find("chatTitleLink", { chat_id: chatId }, { shown: false });
    const fromLink = link?.textContent.trim();
    if (fromLink) return fromLink;
    const title = document.title.replace(/^ChatGPT\s*[-–|]\s*/, "").replace(/\s*[-–|]\s*ChatGPT$/, "").trim();
    return title && title !== "ChatGPT" ? title : null;
  }

  // Picks the response mode the request asks for when the page offers a mode
  // menu; "auto" leaves the page's default alone. A page without the menu runs
  // the message in whatever mode it has.
  async function pickMode(page, request) {
    const wanted = { thinking: "modeThinking", instant: "modeInstant" }[request.response_type];
    if (!wanted) return;
    const menu = page.find("modeMenuButton");
    if (!menu) return;
    menu.click();
    const option = await page.waitFor(() => page.find(wanted), 5_000, () =>
      page.pageChanged(wanted, `the mode menu has no "${request.response_type}" entry`),
    );
    option.click();
    if (request.response_type === "thinking") {
      const time = request.thinking_time === "extended" ? "thinkingExtended" : "thinkingStandard";
      const choice = await page.waitFor(() => page.find(time), 2_000, () => null).catch(() => null);
      if (choice) choice.click();
    }
  }
})();
