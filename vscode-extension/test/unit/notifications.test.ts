import * as assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import type { ServerCommands } from "../../src/common/commands";
import { createTaskUpdateListener } from "../../src/common/notifications";
import { TaskBoard } from "../../src/common/tasks";
import * as vscodeapi from "../../src/common/vscodeapi";
import * as fake from "../mocks/vscode";

beforeEach(() => fake.resetFake());

function setUp() {
  const sent: { command: string; args: unknown[] }[] = [];
  const server: ServerCommands = {
    execute: async (command, args) => {
      sent.push({ command, args });
      return null;
    },
  };
  const statusBar = vscodeapi.createStatusBarItem("delegation.status", 100);
  const board = new TaskBoard();
  const listener = createTaskUpdateListener(board, statusBar, vscodeapi.createOutputChannel("t"), server);
  return { sent, statusBar, board, listener };
}

test("progress updates the status bar without prompting", async () => {
  const { listener, statusBar, sent } = setUp();
  assert.equal(listener({ taskId: "t1", state: "running", kind: "fix", files: ["app.py"] }), undefined);
  assert.equal(statusBar.text, "Delegation: $(sync~spin) 1 working");
  assert.match(String(statusBar.tooltip), /task t1 \[fix\] running/);
  assert.deepEqual(fake.recorded.messages, []);
  assert.deepEqual(sent, []);
});

test("a verified task asks once; Accept sends delegation.accept", async () => {
  const { listener, sent } = setUp();
  fake.answers.message = "Accept";
  await listener({ taskId: "t1", state: "verified", kind: "fix", files: ["app.py"] });
  assert.equal(listener({ taskId: "t1", state: "verified", kind: "fix", files: ["app.py"] }), undefined, "no second prompt");
  assert.deepEqual(fake.recorded.messages, [
    { level: "info", text: "Delegation: task t1 [fix] verified — app.py", actions: ["Accept", "Reject"] },
  ]);
  assert.deepEqual(sent, [{ command: "delegation.accept", args: [{ taskId: "t1" }] }]);
});

test("a failed task warns; Reject sends delegation.reject; dismissing sends nothing", async () => {
  const { listener, sent } = setUp();
  fake.answers.message = "Reject";
  await listener({ taskId: "t1", state: "failed", message: "syntax error" });
  fake.answers.message = undefined;
  await listener({ taskId: "t2", state: "escalated" });
  assert.deepEqual(fake.recorded.messages.map((m) => m.level), ["warning", "warning"]);
  assert.deepEqual(sent, [{ command: "delegation.reject", args: [{ taskId: "t1" }] }]);
});

test("a malformed notification is logged and changes nothing", () => {
  const { listener, statusBar, board } = setUp();
  listener({ taskId: 5, state: "running" });
  assert.equal(statusBar.text, "");
  assert.equal(board.list().length, 0);
  assert.deepEqual(fake.recorded.logs.map((l) => l.level), ["error"]);
  assert.match(fake.recorded.logs[0].text, /taskId must be a non-empty string \(at \$\.taskId\)/);
});
