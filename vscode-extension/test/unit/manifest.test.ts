// package.json and the code must agree: every contributed command is registered by the
// extension, none collides with a server command id, and every setting read is declared.
import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { ExtensionCommand, ServerCommand } from "../../src/common/constants";
import { readSettings } from "../../src/common/settings";

const manifest = JSON.parse(readFileSync(path.join(__dirname, "..", "..", "..", "package.json"), "utf8"));

test("contributed commands are exactly the extension's commands", () => {
  const contributed = manifest.contributes.commands.map((c: { command: string }) => c.command).sort();
  assert.deepEqual(contributed, Object.values(ExtensionCommand).sort());
});

test("no contributed command shadows a server command (vscode-languageclient registers those)", () => {
  const serverIds = new Set<string>(Object.values(ServerCommand));
  for (const id of Object.values(ExtensionCommand)) assert.ok(!serverIds.has(id), id);
});

test("every setting the extension reads is declared in package.json", () => {
  const declared = new Set(Object.keys(manifest.contributes.configuration.properties));
  const read: string[] = [];
  readSettings({
    get: (key: string, fallback?: unknown) => {
      read.push(`delegation.${key}`);
      return fallback;
    },
  } as any);
  assert.ok(read.length >= 9);
  for (const key of read) assert.ok(declared.has(key), `${key} is read but not declared`);
  for (const key of declared) assert.ok(read.includes(key), `${key} is declared but never read`);
});

test("no setting can hold a secret", () => {
  for (const key of Object.keys(manifest.contributes.configuration.properties)) {
    assert.ok(!/apikey$|token$|secret|password/i.test(key), key);
  }
});
