// Looking at and acting on ChatGPT's page through the named selectors: find an
// element by name, wait for a condition, type into the composer. Failures
// name the selector that did not match, so "ChatGPT's page changed" errors
// say what to fix.
(function () {
  class RunError extends Error {}

  class ChatGptPage {
    constructor(selectors) {
      this.selectors = selectors;
    }

    // First shown element matching the named selector list, or null. An
    // element that is in the page but not rendered (hidden, display: none)
    // does not count unless `shown` is false: a hidden stop button is not
    // a streaming answer.
    find(name, vars = {}, { shown = true } = {}) {
      for (const raw of this.selectors[name] || []) {
        const selector = raw.replace(/\{(\w+)\}/g, (_, k) => CSS.escape(String(vars[k] ?? "")));
        let found;
        try {
          found = document.querySelectorAll(selector);
        } catch {
          throw new RunError(`selector "${name}" is not valid CSS: ${raw}`);
        }
        for (const el of found) {
          if (!shown || el.getClientRects().length > 0) return el;
        }
      }
      return null;
    }

    findAll(name) {
      for (const selector of this.selectors[name] || []) {
        const found = document.querySelectorAll(selector);
        if (found.length) return [...found];
      }
      return [];
    }

    describe(name) {
      return `"${name}" (${(this.selectors[name] || []).join(", ")})`;
    }

    pageChanged(name, what) {
      return new RunError(
        `ChatGPT's page changed: ${what} — selector ${this.describe(name)} matched nothing; ` +
          "adjust it in the extension's options",
      );
    }

    // Resolves with check()'s first truthy value; re-checks on every DOM change
    // and at least every 250 ms (URL and title changes are not DOM mutations).
    waitFor(check, timeoutMs, onTimeout) {
      return new Promise((resolve, reject) => {
        let done = false;
        const finish = (fn, value) => {
          if (done) return;
          done = true;
          observer.disconnect();
          clearInterval(timer);
          clearTimeout(deadline);
          fn(value);
        };
        const tick = () => {
          try {
            const value = check();
            if (value) finish(resolve, value);
          } catch (e) {
            finish(reject, e);
          }
        };
        const observer = new MutationObserver(tick);
        observer.observe(document.documentElement, {
          childList: true,
          subtree: true,
          attributes: true,
          characterData: true,
        });
        const timer = setInterval(tick, 250);
        const deadline = setTimeout(() => finish(reject, onTimeout()), timeoutMs);
        tick();
      });
    }

    // Puts text in the composer the way typing would, so the page's editor
    // (ProseMirror or a textarea) sees the input events it listens to.
    typeMessage(composer, text) {
      composer.focus();
      if (composer instanceof HTMLTextAreaElement) {
        const setter = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set;
        setter.call(composer, text);
        composer.dispatchEvent(new Event("input", { bubbles: true }));
        return;
      }
      const selection = window.getSelection();
      const range = document.createRange();
      range.selectNodeContents(composer);
      selection.removeAllRanges();
      selection.addRange(range);
      if (!document.execCommand("insertText", false, text)) {
        composer.textContent = text;
        composer.dispatchEvent(new InputEvent("input", { bubbles: true, data: text }));
      }
    }

    chatIdFromUrl() {
      const match = /^\/c\/([^/?#]+)/.exec(location.pathname);
      return match ? decodeURIComponent(match[1]) : null;
    }

    rateLimitNotice() {
      const phrases = globalThis.ChatrelaySelectors.RATE_LIMIT_PHRASES;
      for (const el of this.findAll("errorNotice")) {
        const text = el.textContent.trim();
        if (phrases.some((p) => text.toLowerCase().includes(p))) return text;
      }
      return null;
    }
  }

  globalThis.ChatrelayPage = { ChatGptPage, RunError };
})();
