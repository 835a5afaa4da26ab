// The console's text/event-stream parser (console/stream.js) on its own:
// events split anywhere across chunks, CRLF and CR line ends, comments,
// multi-line data, ids. It uses no browser API, so Node runs it directly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventParser } from "../../stream.js";

function parse(chunks) {
  const events = [];
  const parser = new EventParser((event) => events.push(event));
  for (const chunk of chunks) parser.feed(chunk);
  return events;
}

const STREAM =
  ": keep-alive\n\n" +
  'event: request\nid: 3f9c-1\ndata: {"id":"a","status":"idle"}\n\n' +
  ": keep-alive\n\n" +
  'event: reset\nid: 3f9c-2\ndata: {"detail":"events were missed"}\n\n';

const EXPECTED = [
  { type: "request", data: '{"id":"a","status":"idle"}', id: "3f9c-1" },
  { type: "reset", data: '{"detail":"events were missed"}', id: "3f9c-2" },
];

test("events in one chunk; comments are skipped", () => {
  assert.deepEqual(parse([STREAM]), EXPECTED);
});

test("the same events split at every possible place", () => {
  for (let cut = 1; cut < STREAM.length; cut += 1) {
    assert.deepEqual(parse([STREAM.slice(0, cut), STREAM.slice(cut)]), EXPECTED, `cut at ${cut}`);
  }
  assert.deepEqual(parse([...STREAM]), EXPECTED, "one character at a time");
});

test("CRLF and CR line ends, even split between chunks", () => {
  const crlf = STREAM.replaceAll("\n", "\r\n");
  assert.deepEqual(parse([crlf]), EXPECTED);
  for (let cut = 1; cut < crlf.length; cut += 1) {
    assert.deepEqual(parse([crlf.slice(0, cut), crlf.slice(cut)]), EXPECTED, `CRLF cut at ${cut}`);
  }
  // A CR that ends a chunk may be half a CRLF: it counts once the next chunk comes.
  assert.deepEqual(parse([STREAM.replaceAll("\n", "\r"), ": keep-alive\r"]), EXPECTED);
});

test("multi-line data, a field without a space, an unfinished event", () => {
  const events = parse(["event:request\ndata: one\ndata:two\ndata\n\nevent: request\ndata: never finished\n"]);
  assert.deepEqual(events, [{ type: "request", data: "one\ntwo\n", id: null }]);
});

test("an event without a type is a message; one without data only moves the id", () => {
  assert.deepEqual(parse(["data: x\n\nid: 7\n\n"]), [
    { type: "message", data: "x", id: null },
    { type: null, data: "", id: "7" },
  ]);
});
