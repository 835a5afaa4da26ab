// The REST API, called with the key in the X-API-Key header (never in a URL).
// Every failure becomes an ApiError carrying the status and the server's
// `detail`; a status of 0 means the server could not be reached.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export class Api {
  // `onUnauthorized(detail)` is called when the server refuses the key.
  constructor(key, onUnauthorized = () => {}) {
    this.key = key;
    this.onUnauthorized = onUnauthorized;
  }

  async call(method, path, { query, json, signal } = {}) {
    const url = new URL(path, location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const headers = { "X-API-Key": this.key, Accept: "application/json" };
    const init = { method, headers, signal, cache: "no-store", credentials: "omit" };
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "cannot reach the server");
    }
    let body = null;
    try {
      body = await res.json();
    } catch {
      // Not JSON: a proxy's page, or a 304/empty body. The status speaks.
    }
    if (!res.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${res.status}`;
      if (res.status === 401) this.onUnauthorized(detail);
      throw new ApiError(res.status, detail);
    }
    return { body, headers: res.headers };
  }

  async get(path, query) {
    return (await this.call("GET", path, { query })).body;
  }

  // One page of a list: its items and the cursor of the next page, if any.
  async page(path, query) {
    const { body, headers } = await this.call("GET", path, { query });
    return { items: Array.isArray(body) ? body : [], next: headers.get("X-Next-Cursor") };
  }

  async post(path, json) {
    return (await this.call("POST", path, { json })).body;
  }
}

// Whether `key` is accepted: resolves, or throws the ApiError saying why not.
export async function checkKey(key) {
  await new Api(key).call("GET", "/api/chat/requests/", { query: { limit: 1 } });
}
