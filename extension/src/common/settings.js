// The extension's settings, kept in chrome.storage.local, with their defaults
// in one place. Read by the worker, the options page and the popup.
export const DEFAULTS = Object.freeze({
  serverUrl: "ws://127.0.0.1:8000/ws/extension/",
  apiKey: "",
  maxTabs: 3,
  answerTimeoutSeconds: 600,
  selectorOverrides: {},
});

export async function loadSettings() {
  const stored = await chrome.storage.local.get(Object.keys(DEFAULTS));
  return { ...DEFAULTS, ...stored };
}

export async function saveSettings(settings) {
  const picked = {};
  for (const key of Object.keys(DEFAULTS)) {
    if (key in settings) picked[key] = settings[key];
  }
  await chrome.storage.local.set(picked);
}

// Problems with a server URL, or [] when it is usable.
export function checkServerUrl(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return [`wrong URL: "${text}" is not a URL (expected ws://HOST:PORT/ws/extension/)`];
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    return [`wrong URL: it must start with ws:// or wss://, not ${url.protocol}//`];
  }
  return [];
}

// The WebSocket URL with the key in its query, as the server expects it.
export function socketUrl(settings) {
  const url = new URL(settings.serverUrl);
  url.searchParams.set("api_key", settings.apiKey);
  return url.toString();
}

// The http(s) origin of the server, for the REST checks behind
// "Test connection" and the popup's "why not connected".
export function httpOrigin(serverUrl) {
  const url = new URL(serverUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return url.origin;
}

export function isLoopback(serverUrl) {
  const host = new URL(serverUrl).hostname;
  return host === "127.0.0.1" || host === "localhost" || host === "[::1]";
}
