// The ChatGPT tabs the extension works in. It opens its own tabs (up to the
// configured maximum) and never drives a tab the user opened, so it does not
// type into a conversation someone is reading. The list is kept in
// chrome.storage.session so a restarted worker still knows its tabs.
const LOAD_TIMEOUT_MS = 60_000;
const POLL_MS = 200;
// How long a tab may show no sign of loading before it is sent again.
const RENAVIGATE_MS = 2_000;

export const CHATGPT_ORIGIN = "https://chatgpt.com";

export class TabPool {
  constructor() {
    this.tabIds = [];
  }

  async load() {
    const { ownedTabs } = await chrome.storage.session.get("ownedTabs");
    const alive = [];
    for (const id of ownedTabs || []) {
      if (await chrome.tabs.get(id).catch(() => null)) alive.push(id);
    }
    this.tabIds = alive;
    await this.save();
  }

  save() {
    return chrome.storage.session.set({ ownedTabs: this.tabIds });
  }

  owns(tabId) {
    return this.tabIds.includes(tabId);
  }

  async forget(tabId) {
    this.tabIds = this.tabIds.filter((id) => id !== tabId);
    await this.save();
  }

  // A tab not in `busy`, opening one if fewer than maxTabs are open; null
  // when every allowed tab is busy.
  async freeTab(busy, maxTabs) {
    const free = this.tabIds.find((id) => !busy.has(id));
    if (free !== undefined) return free;
    if (this.tabIds.length >= maxTabs) return null;
    // With no browser window open (possible on macOS) a tab needs a window.
    const tab =
      (await chrome.tabs.create({ url: "about:blank", active: false }).catch(() => null)) ||
      (await chrome.windows.create({ url: "about:blank", focused: false })).tabs[0];
    this.tabIds.push(tab.id);
    await this.save();
    return tab.id;
  }

  // Loads url in the tab and resolves once a fresh content script answers
  // there (a ping answered by the page being left does not count).
  //
  // Chromium sometimes drops the navigation of a tab it has just opened in
  // the background: the tab stays "unloaded" with no URL. A tab that has not
  // started towards url after a moment is sent there again.
  async open(tabId, url) {
    const before = await ping(tabId);
    await chrome.tabs.update(tabId, { url });
    let sent = Date.now();
    const deadline = sent + LOAD_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const now = await ping(tabId);
      if (now && now.loadId !== before?.loadId) return;
      if (Date.now() - sent > RENAVIGATE_MS && !(await headingTo(tabId))) {
        await chrome.tabs.update(tabId, { url });
        sent = Date.now();
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    throw new Error(`ChatGPT did not load in the tab within ${LOAD_TIMEOUT_MS / 1000} s (${url})`);
  }

  // Asks the tab's content script to run a request; throws its refusal.
  async run(tabId, request, options) {
    const reply = await chrome.tabs.sendMessage(tabId, { type: "chatrelay:run", request, options });
    if (!reply?.accepted) throw new Error(reply?.error || "the ChatGPT tab did not accept the request");
  }
}

async function ping(tabId) {
  try {
    return (await chrome.tabs.sendMessage(tabId, { type: "chatrelay:ping" })) || null;
  } catch {
    return null;
  }
}

// Whether the tab is loading, or showing a ChatGPT page (the URL of any
// other page is not visible to the extension).
async function headingTo(tabId) {
  const tab = await chrome.tabs.get(tabId).catch(() => null);
  if (!tab) return true; // closed: the caller's ping loop runs out and says so
  if (tab.status === "loading") return true;
  return tab.status !== "unloaded" && Boolean(tab.url?.startsWith(CHATGPT_ORIGIN));
}

export function chatUrl(chatId) {
  return chatId ? `${CHATGPT_ORIGIN}/c/${encodeURIComponent(chatId)}` : `${CHATGPT_ORIGIN}/`;
}
