// activate() with a server command that cannot start: the real LanguageClient fails, and the
// user gets one actionable error naming the command and the settings that fix it.
import * as assert from "node:assert/strict";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as fake from "../mocks/vscode";

test("a server that cannot start is reported with the command and the fix", async () => {
  fake.resetFake();
  const missing = path.join(os.tmpdir(), "no-such-dir", "delegation-machine");
  fake.setConfiguration({ "delegation.server.command": [missing, "serve"] });
  const extension = require("../../src/extension") as typeof import("../../src/extension");
  await extension.activate({ subscriptions: [] } as any);
  const errors = fake.recorded.messages.filter((m) => m.level === "error");
  assert.equal(errors.length, 1, JSON.stringify(fake.recorded.messages));
  assert.equal(
    errors[0].text.split(". Set ")[0],
    `Delegation Machine: could not start ${missing} serve (from setting:server.command): ${missing} is not an executable file`,
  );
  assert.match(errors[0].text, /Set delegation\.server\.command or delegation\.server\.pythonPath/);
  // The extension's own commands are registered regardless, and say why they cannot work.
  assert.ok(fake.registeredCommands.has("delegation.restartServer"));
  await assert.rejects(
    fake.commands.executeCommand("delegation.showStatus") as Promise<unknown>,
    /the server is not running; see the output channel/,
  );
  await extension.deactivate();
});
