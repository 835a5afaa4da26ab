// Finds out why the extension cannot use a server, in words a user can act
// on: a wrong URL, nothing listening, or a refused API key (401). A browser's
// WebSocket reports every failed handshake the same way (close code 1006), so
// the reason is found with plain HTTP requests to the same server.
import { checkServerUrl, httpOrigin } from "./settings.js";

const TIMEOUT_MS = 5000;

export async function diagnose(settings) {
  const urlProblems = checkServerUrl(settings.serverUrl);
  if (urlProblems.length) return { ok: false, reason: urlProblems[0] };
  if (!settings.apiKey) {
    return { ok: false, reason: "no API key: paste the key `chatrelay account create` printed" };
  }
  const origin = httpOrigin(settings.serverUrl);
  const where = new URL(settings.serverUrl).host;
  if (!(await chrome.permissions.contains({ origins: [`${origin}/*`] }))) {
    return {
      ok: false,
      reason: `cannot check ${where}: the extension has no permission for ${origin} (press Save and allow it)`,
    };
  }

  let health;
  try {
    health = await get(`${origin}/healthz`);
  } catch (e) {
    return { ok: false, reason: `unreachable: nothing answers at ${where} (is \`chatrelay serve\` running there?)` };
  }
  if (health.status !== 200 || health.body?.status !== "ok") {
    return { ok: false, reason: `wrong URL: ${where} answers, but it is not a chatrelay server (GET /healthz → ${health.status})` };
  }

  const path = new URL(settings.serverUrl).pathname;
  const socket = await get(`${origin}${path}`, { "X-API-Key": settings.apiKey }).catch(() => null);
  if (socket && socket.status === 404) {
    return { ok: false, reason: `wrong URL: chatrelay has no WebSocket at ${path} (it is /ws/extension/)` };
  }

  const rest = await get(`${origin}/api/chat/requests/?limit=1`, { "X-API-Key": settings.apiKey }).catch(() => null);
  if (!rest) return { ok: false, reason: `unreachable: ${where} stopped answering` };
  if (rest.status === 401) {
    const detail = rest.body?.detail ? ` (${rest.body.detail})` : "";
    return { ok: false, reason: `401: the server refused the API key${detail}` };
  }
  if (rest.status !== 200) {
    return { ok: false, reason: `the server answered ${rest.status} when checking the API key` };
  }
  return { ok: true, reason: `chatrelay at ${where} accepts this API key` };
}

async function get(url, headers = {}) {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(TIMEOUT_MS), cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: the caller looks at the status alone.
  }
  return { status: response.status, body };
}
