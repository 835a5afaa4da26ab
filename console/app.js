// The console's entry point: signing in and out, the views behind the
// address's #fragment, and the live event stream that keeps every view
// current without a reload.
import { Api, ApiError, checkKey } from "./api.js";
import { $, say } from "./dom.js";
import { LiveStream } from "./stream.js";
import { RequestTable } from "./requests.js";
import { Detail } from "./detail.js";
import { SubmitForm } from "./submit.js";
import { Chats } from "./chats.js";
import { Sessions } from "./sessions.js";
import { Webhooks } from "./webhooks.js";
import { Counts } from "./counts.js";
import { duration } from "./format.js";

// Where the key is kept: this tab's session storage, nowhere else.
const KEY = "chatrelay.apiKey";
// A message for the sign-in page after a reload (why the user was signed out).
const NOTE = "chatrelay.signInNote";
// Requests remembered from events (for lists fetched while events arrived).
const REMEMBERED = 2000;

const TERMINAL = new Set(["done", "failed"]);

class App {
  constructor(key) {
    this.api = new Api(key, (detail) => this.signOut(`The server refused the API key (${detail}). Sign in again.`));
    // The newest version of each request heard of, and when: a list that was
    // asked for before an event arrived shows the event's version instead.
    this.latest = new Map();
    this.seq = 0;
    this.loaded = false;
    this.counts = new Counts(this);
    this.chats = new Chats(this);
    this.requests = new RequestTable(this, $("#requests"), { showChat: true });
    this.detail = new Detail(this);
    this.submit = new SubmitForm(this);
    this.sessions = new Sessions(this);
    this.webhooks = new Webhooks(this);
    this.stream = new LiveStream(key, {
      request: (request) => this.applyRequest(request),
      reset: () => this.refreshAll(),
      up: ({ resumed }) => {
        $("#stream-banner").hidden = true;
        // Without a Last-Event-ID, events before this stream are unknown.
        if (!resumed) this.refreshAll();
      },
      down: ({ reason, retryInMs }) => {
        $("#stream-banner-text").textContent =
          `Live updates are down (${reason}); reconnecting in ${duration(retryInMs)}. What you see may be out of date.`;
        $("#stream-banner").hidden = false;
        if (!this.loaded) this.refreshAll();
      },
      unauthorized: (detail) => this.signOut(`The server refused the API key (${detail}). Sign in again.`),
    });
  }

  start() {
    $("#sign-in").hidden = true;
    $("#console").hidden = false;
    $("#nav").hidden = false;
    $("#sign-out").hidden = false;
    $("#sign-out").addEventListener("click", () => this.signOut("Signed out: the key is forgotten."));
    $("#stream-retry").addEventListener("click", () => this.stream.retryNow());
    for (const button of document.querySelectorAll("#counts button")) {
      button.addEventListener("click", () => {
        this.requests.setStatus(button.dataset.status);
        location.hash = "#/requests";
      });
    }
    window.addEventListener("hashchange", () => this.route({ focus: true }));
    this.route({ focus: false });
    this.stream.start();
    this.sessions.start();
  }

  // Reloads what every view shows (after sign-in, a reset, or a stream that
  // could not resume).
  refreshAll() {
    this.loaded = true;
    this.requests.load();
    this.counts.refresh();
    this.chats.refresh();
    this.detail.reload();
    this.chats.reloadOpenChat();
    this.webhooks.refreshIfShown();
  }

  // A request as it is now, from an event or an answer to a call.
  applyRequest(request) {
    this.seq += 1;
    this.latest.delete(request.id);
    this.latest.set(request.id, { request, seq: this.seq });
    if (this.latest.size > REMEMBERED) this.latest.delete(this.latest.keys().next().value);
    this.requests.apply(request);
    this.chats.apply(request);
    this.detail.apply(request);
    this.counts.schedule();
    if (TERMINAL.has(request.status)) this.webhooks.schedule();
  }

  // `item` from a list asked for at `since` (a value of `seq`), or the
  // newer version an event brought meanwhile.
  freshest(item, since) {
    const seen = this.latest.get(item.id);
    return seen && seen.seq > since ? seen.request : item;
  }

  route({ focus }) {
    const [, view = "requests", id] = (location.hash || "#/requests").split("/");
    const shown = {
      requests: "view-requests",
      request: "view-request",
      chats: "view-chats",
      chat: "view-chat",
      extensions: "view-extensions",
      webhooks: "view-webhooks",
    };
    const name = view === "requests" && id ? "request" : view === "chats" && id ? "chat" : shown[view] ? view : "requests";
    for (const el of document.querySelectorAll(".view")) el.hidden = el.id !== shown[name];
    const section = name === "request" ? "requests" : name === "chat" ? "chats" : name;
    for (const link of document.querySelectorAll("#nav a")) {
      if (link.dataset.view === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    this.webhooks.setShown(name === "webhooks");
    if (name === "request") this.detail.show(decodeURIComponent(id));
    else this.detail.hide();
    if (name === "chats") this.chats.showList();
    else this.chats.hideList();
    if (name === "chat") this.chats.showChat(Number(id));
    else this.chats.hideChat();
    if (name === "extensions") this.sessions.refresh();
    // After a link is followed, the new view's heading takes the focus (for
    // a request or a chat, once it has loaded: see `headingShown`).
    this.pendingFocus = focus ? shown[name] : null;
    if (focus && name !== "request" && name !== "chat") this.headingShown();
  }

  // A view drew its heading: focus it if the user just navigated there.
  headingShown() {
    const view = this.pendingFocus && document.getElementById(this.pendingFocus);
    const heading = view && (view.querySelector("[data-view-heading]") || view.querySelector("h2"));
    if (!heading) return;
    this.pendingFocus = null;
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }

  signOut(note) {
    sessionStorage.removeItem(KEY);
    if (note) sessionStorage.setItem(NOTE, note);
    this.stream.stop();
    // A fresh page forgets everything this account showed.
    location.hash = "";
    location.reload();
  }
}

function showSignIn() {
  const form = $("#sign-in-form");
  const input = $("#api-key");
  const error = $("#sign-in-error");
  say($("#sign-in-note"), sessionStorage.getItem(NOTE));
  sessionStorage.removeItem(NOTE);
  $("#sign-in").hidden = false;
  input.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say($("#sign-in-note"), "");
    const key = input.value.trim();
    if (!key) {
      say(error, "Enter an API key.");
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    say(error, "");
    try {
      await checkKey(key);
    } catch (e) {
      button.disabled = false;
      const detail = e instanceof ApiError ? e.detail : String(e);
      say(
        error,
        e.status === 401
          ? `Wrong API key: the server refused it (${detail}).`
          : `Cannot sign in: ${detail}.`,
      );
      input.select();
      return;
    }
    sessionStorage.setItem(KEY, key);
    input.value = "";
    button.disabled = false;
    new App(key).start();
  });
}

const key = sessionStorage.getItem(KEY);
if (key) new App(key).start();
else showSignIn();
