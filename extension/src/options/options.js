// The options page: the server URL and API key (and the advanced knobs),
// saved to chrome.storage.local, where the worker picks them up at once.
// "Test connection" says exactly why a server cannot be used.
import { DEFAULTS, loadSettings, saveSettings, checkServerUrl, httpOrigin, isLoopback } from "../common/settings.js";
import { diagnose } from "../common/diagnose.js";

const form = document.getElementById("form");
const field = (name) => document.getElementById(name);
const result = field("result");

function show(ok, text) {
  result.className = `result ${ok ? "ok" : "bad"}`;
  result.textContent = text;
}

async function fill() {
  const s = await loadSettings();
  field("serverUrl").value = s.serverUrl;
  field("apiKey").value = s.apiKey;
  field("maxTabs").value = s.maxTabs;
  field("answerTimeoutSeconds").value = s.answerTimeoutSeconds;
  const overrides = s.selectorOverrides || {};
  field("selectorOverrides").value = Object.keys(overrides).length ? JSON.stringify(overrides, null, 2) : "";
  field("selectorOverrides").placeholder = '{"composer": ["#prompt-textarea"]}';
  field("defaults").textContent =
    "Defaults:\n" + JSON.stringify(globalThis.ChatrelaySelectors.DEFAULT_SELECTORS, null, 2);
}

// The form as settings, or a list of problems.
function read() {
  const problems = [];
  const serverUrl = field("serverUrl").value.trim();
  problems.push(...checkServerUrl(serverUrl));
  const apiKey = field("apiKey").value.trim();
  const maxTabs = Number(field("maxTabs").value || DEFAULTS.maxTabs);
  if (!Number.isInteger(maxTabs) || maxTabs < 1 || maxTabs > 20) problems.push("Maximum ChatGPT tabs must be 1–20");
  const answerTimeoutSeconds = Number(field("answerTimeoutSeconds").value || DEFAULTS.answerTimeoutSeconds);
  if (!(answerTimeoutSeconds >= 5)) problems.push("Answer timeout must be at least 5 seconds");
  let selectorOverrides = {};
  const text = field("selectorOverrides").value.trim();
  if (text) {
    try {
      selectorOverrides = JSON.parse(text);
      problems.push(...globalThis.ChatrelaySelectors.checkOverrides(selectorOverrides).map((p) => `Selector overrides: ${p}`));
    } catch (e) {
      problems.push(`Selector overrides: not valid JSON (${e.message})`);
    }
  }
  return { problems, settings: { serverUrl, apiKey, maxTabs, answerTimeoutSeconds, selectorOverrides } };
}

// A server other than this machine needs a host permission, asked for on Save
// (the click is the user gesture Chrome requires). The WebSocket itself works
// without it; "Test connection" and the popup's reasons need it.
async function askForHost(serverUrl) {
  if (isLoopback(serverUrl)) return true;
  const origins = [`${httpOrigin(serverUrl)}/*`];
  if (await chrome.permissions.contains({ origins })) return true;
  return chrome.permissions.request({ origins }).catch(() => false);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const { problems, settings } = read();
  if (problems.length) return show(false, `Not saved: ${problems.join("; ")}`);
  const granted = await askForHost(settings.serverUrl);
  await saveSettings(settings);
  show(true, granted ? "Saved." : "Saved, without permission to check the server: Test connection cannot explain failures.");
});

field("test").addEventListener("click", async () => {
  const { problems, settings } = read();
  if (problems.length) return show(false, problems.join("; "));
  show(true, "Testing…");
  const found = await diagnose(settings);
  show(found.ok, found.ok ? `Connected: ${found.reason}.` : `Cannot connect: ${found.reason}.`);
});

fill();
