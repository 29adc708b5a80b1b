// The extension as VS Code would run it, minus VS Code: `activate()` with the fake `vscode`
// module (test/mocks), the real vscode-languageclient LanguageClient and the real server on
// a copy of samples/inventory. Drives the extension's own commands: Show status, then
// Delegate… on a seeded finding, answering the review prompt with Accept.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as fake from "../mocks/vscode";

const repoRoot = path.resolve(__dirname, "..", "..", "..", "..");
const serverBin = process.env.DELEGATION_MACHINE_BIN ?? path.join(repoRoot, ".venv", "bin", "delegation-machine");
const sampleDir = process.env.DELEGATION_SAMPLE_DIR ?? path.join(repoRoot, "samples", "inventory");
const targetFile = process.env.DELEGATION_TARGET_FILE ?? "inventory/storage.py";
const STEP_MS = Number(process.env.DELEGATION_STEP_TIMEOUT_MS ?? 90_000);
const SEEDED = /yaml\.load\(/;

test("activate() runs the real LanguageClient against the real server", { timeout: 4 * STEP_MS }, async (t) => {
  if (!fs.existsSync(serverBin)) {
    t.skip(`server not installed: ${serverBin} is missing (run \`make venv\` or set DELEGATION_MACHINE_BIN)`);
    return;
  }
  fake.resetFake();
  const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "dm-activate-"));
  fs.cpSync(sampleDir, workspace, { recursive: true, filter: (s) => !/[\\/](\.delegation|__pycache__)$/.test(s) });
  fake.workspace.workspaceFolders = [{ uri: fake.Uri.file(workspace), name: "inventory", index: 0 }];
  fake.setConfiguration({ "delegation.server.command": [serverBin, "serve"], "delegation.agents": 2 });
  // Required here, after the fake is in place: the extension binds `vscode` at load time.
  const extension = require("../../src/extension") as typeof import("../../src/extension");
  t.after(async () => {
    await extension.deactivate();
    fs.rmSync(workspace, { recursive: true, force: true });
  });

  await extension.activate({ subscriptions: [] } as any);
  assert.ok(
    fake.recorded.logs.some((l) => l.text === `starting ${serverBin} serve (from setting:server.command)`),
    fake.recorded.logs.map((l) => l.text).join("\n"),
  );
  // The LanguageClient registers the server's commands once initialize has answered; a
  // clash with the extension's own ids would have thrown during activate().
  for (const id of ["delegation.delegate", "delegation.accept", "delegation.reject", "delegation.cancel", "delegation.status"]) {
    assert.ok(fake.registeredCommands.has(id), `server command ${id} not registered`);
  }
  for (const id of ["delegation.delegateSelection", "delegation.acceptTask", "delegation.showStatus", "delegation.restartServer"]) {
    assert.ok(fake.registeredCommands.has(id), `extension command ${id} not registered`);
  }
  assert.deepEqual(fake.recorded.contexts["delegation.languages"], ["python"]);

  const status = (await fake.commands.executeCommand("delegation.showStatus")) as Record<string, unknown>;
  assert.equal(typeof status, "object", JSON.stringify(status));

  // Delegate… on the seeded finding's line; the file is not open in the client, so the
  // server reads it from disk.
  const file = path.join(workspace, targetFile);
  const text = fs.readFileSync(file, "utf8");
  const lines = text.split("\n");
  const line = lines.findIndex((l) => SEEDED.test(l));
  assert.ok(line >= 0, `no seeded yaml.load in ${targetFile}`);
  fake.window.activeTextEditor = fake.fakeEditor(file, text, [line, 0], [line, lines[line].length]);
  fake.answers.inputBox = "fix";
  fake.answers.message = "Accept";
  const taskId = (await fake.commands.executeCommand("delegation.delegateSelection")) as string;
  assert.equal(typeof taskId, "string");

  const prompt = await fake.whenRecorded(
    `the review prompt for ${taskId}`,
    () => fake.recorded.messages.find((m) => m.text.includes(`task ${taskId}`)),
    2 * STEP_MS,
  );
  assert.equal(prompt.level, "info", `task did not verify: ${prompt.text}`);
  assert.match(prompt.text, / verified/);
  assert.deepEqual(prompt.actions, ["Accept", "Reject"]);
  await fake.whenRecorded(
    `task ${taskId} accepted`,
    () => fake.recorded.logs.find((l) => l.text.startsWith(`task ${taskId}`) && / accepted\b/.test(l.text)),
    STEP_MS,
  );
  assert.equal(fake.recorded.messages.filter((m) => m.level === "error").length, 0, JSON.stringify(fake.recorded.messages));
  // The file is not open in the editor, so the server wrote the accepted fix to disk.
  const after = fs.readFileSync(file, "utf8");
  assert.ok(!after.includes(lines[line].trim()), `the seeded line is still on disk:\n${lines[line]}`);
  assert.match(after, /yaml\.safe_load\(/);
});
