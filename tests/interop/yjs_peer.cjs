// A Yjs peer for the interop test: one Y.Doc, driven by JSON lines on stdin.
// Each request {"op": ...} gets one JSON line back. Updates travel base64-encoded.
// Positions in "insert"/"delete" are JavaScript string indices (UTF-16 code units), as in Yjs.
"use strict";
const readline = require("readline");
const Y = require("yjs");

const doc = new Y.Doc();
const text = doc.getText("content");
const b64 = (bytes) => Buffer.from(bytes).toString("base64");
const unb64 = (s) => new Uint8Array(Buffer.from(s, "base64"));

const handlers = {
  apply: (req) => {
    Y.applyUpdate(doc, unb64(req.update), "python");
    return {};
  },
  insert: (req) => {
    doc.transact(() => text.insert(req.index, req.text), "node-user");
    return {};
  },
  delete: (req) => {
    doc.transact(() => text.delete(req.index, req.length), "node-user");
    return {};
  },
  state: () => ({ stateVector: b64(Y.encodeStateVector(doc)), text: text.toString() }),
  diff: (req) => ({ update: b64(Y.encodeStateAsUpdate(doc, unb64(req.stateVector))) }),
};

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let reply;
  try {
    const req = JSON.parse(line);
    reply = handlers[req.op](req);
  } catch (err) {
    reply = { error: String(err && err.stack ? err.stack : err) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
});
