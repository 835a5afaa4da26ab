// What ChatGPT's page looks like, as data. Every place the extension looks at
// chatgpt.com goes through a name here; each name lists CSS selectors tried in
// order (the first that matches wins), so a page change is fixed by editing a
// list — or, without a new release, by overriding it on the options page.
//
// A classic script (not a module): content scripts cannot import modules, and
// the options page loads it with a <script> tag to show the defaults.
(function () {
  const DEFAULT_SELECTORS = {
    // The message box: a contenteditable (ProseMirror) today, a textarea before.
    composer: [
      "#prompt-textarea",
      "div[contenteditable='true'][data-testid='prompt-textarea']",
      "main form div[contenteditable='true']",
      "textarea[name='prompt-textarea']",
    ],
    sendButton: [
      "button[data-testid='send-button']",
      "button#composer-submit-button",
      "button[aria-label='Send prompt']",
    ],
    // Present while an answer streams; gone when it is complete.
    stopButton: [
      "button[data-testid='stop-button']",
      "button[aria-label='Stop streaming']",
      "button[aria-label='Stop generating']",
    ],
    assistantMessage: ["[data-message-author-role='assistant']"],
    // Inside an assistant message: the rendered answer (without buttons).
    assistantContent: [".markdown", ".prose"],
    // Shown only to a visitor who is not logged in.
    loginButton: [
      "button[data-testid='login-button']",
      "a[data-testid='login-button']",
      "a[href^='/auth/login']",
    ],
    // Where the page says something went wrong (usage cap, rate limit, …).
    errorNotice: [
      "[role='alert']",
      ".text-token-text-error",
      "[data-testid='rate-limit-notice']",
    ],
    // The sidebar link of the current chat, read for its title.
    chatTitleLink: ["nav a[href='/c/{chat_id}']", "nav a[href$='/c/{chat_id}']"],
    // The model/mode menu, when the page offers one.
    modeMenuButton: [
      "button[data-testid='model-switcher-dropdown-button']",
    ],
    modeThinking: ["[data-testid='model-switcher-gpt-5-thinking']"],
    modeInstant: ["[data-testid='model-switcher-gpt-5-instant']"],
    modeAuto: ["[data-testid='model-switcher-gpt-5']"],
    thinkingExtended: ["[data-testid='thinking-time-extended']"],
    thinkingStandard: ["[data-testid='thinking-time-standard']"],
  };

  // Text (lower-cased substrings) that means a usage cap or rate limit when
  // the page shows it in an error notice or in place of an answer.
  const RATE_LIMIT_PHRASES = [
    "you've reached our limit",
    "you’ve reached our limit",
    "you've hit your limit",
    "you’ve hit your limit",
    "usage cap",
    "too many requests",
    "rate limit",
  ];

  // How a refusal reads when the page shows it in place of an answer (lower
  // case, at the start of a short assistant message). Narrower than the
  // phrases above, so an answer *about* rate limits is not taken for one.
  const REFUSAL_OPENINGS = ["you've reached our limit", "you’ve reached our limit", "you've hit your limit",
    "you’ve hit your limit", "you've reached the current usage cap", "you’ve reached the current usage cap"];

  // The defaults with the user's overrides on top: an override is a selector
  // string or a list of them, and replaces that name's list.
  function resolveSelectors(overrides) {
    const out = {};
    for (const [name, list] of Object.entries(DEFAULT_SELECTORS)) {
      out[name] = list.slice();
    }
    for (const [name, value] of Object.entries(overrides || {})) {
      const list = typeof value === "string" ? [value] : value;
      if (Array.isArray(list) && list.every((s) => typeof s === "string")) {
        out[name] = list;
      }
    }
    return out;
  }

  // Checks an overrides object: returns a list of problems (empty when fine).
  function checkOverrides(overrides) {
    const problems = [];
    if (overrides === null || typeof overrides !== "object" || Array.isArray(overrides)) {
      return ["must be a JSON object such as {\"composer\": [\"#prompt-textarea\"]}"];
    }
    for (const [name, value] of Object.entries(overrides)) {
      if (!(name in DEFAULT_SELECTORS)) {
        problems.push(`unknown selector name "${name}"`);
        continue;
      }
      const list = typeof value === "string" ? [value] : value;
      if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === "string")) {
        problems.push(`"${name}" must be a selector string or a non-empty list of them`);
      }
    }
    return problems;
  }

  globalThis.ChatrelaySelectors = {
    DEFAULT_SELECTORS,
    RATE_LIMIT_PHRASES,
    REFUSAL_OPENINGS,
    resolveSelectors,
    checkOverrides,
  };
})();
