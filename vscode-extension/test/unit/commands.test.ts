import * as assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import {
  chooseTask,
  delegateSelection,
  type ServerCommands,
  selectionRange,
  sendTaskVerb,
  showStatus,
  validateInstruction,
} from "../../src/common/commands";
import { parseTaskUpdate, TaskBoard } from "../../src/common/tasks";
import * as vscodeapi from "../../src/common/vscodeapi";
import * as fake from "../mocks/vscode";

const SOURCE = "import yaml\n\n\ndef load(path):\n    return yaml.load(open(path))\n";

class RecordingServer implements ServerCommands {
  readonly sent: { command: string; args: unknown[] }[] = [];
  constructor(private readonly reply: unknown = { taskId: "task-1" }) {}
  async execute(command: string, args: unknown[]): Promise<unknown> {
    this.sent.push({ command, args });
    return this.reply;
  }
}

const log = () => vscodeapi.createOutputChannel("test");

beforeEach(() => fake.resetFake());

test("Delegate… sends the selection and the typed instruction", async () => {
  fake.window.activeTextEditor = fake.fakeEditor("/ws/app.py", SOURCE, [4, 11], [4, 32]);
  fake.answers.inputBox = "  fix ";
  const server = new RecordingServer();
  const taskId = await delegateSelection(server, log(), { agents: 3 });
  assert.equal(taskId, "task-1");
  assert.deepEqual(server.sent, [
    {
      command: "delegation.delegate",
      args: [
        {
          uri: "file:///ws/app.py",
          range: { start: { line: 4, character: 11 }, end: { line: 4, character: 32 } },
          instruction: "fix",
          agents: 3,
        },
      ],
    },
  ]);
  assert.equal(fake.recorded.inputBoxes.length, 1);
  assert.equal(fake.recorded.inputBoxes[0].validateInput(""), "Type an instruction, e.g. `fix` or `rename old_name new_name`.");
});

test("a backwards selection is sent start-first", async () => {
  const editor = fake.fakeEditor("/ws/app.py", SOURCE, [4, 32], [3, 0]);
  assert.deepEqual(selectionRange(editor), { start: { line: 3, character: 0 }, end: { line: 4, character: 32 } });
});

test("an empty selection delegates the whole document", async () => {
  fake.window.activeTextEditor = fake.fakeEditor("/ws/app.py", SOURCE, [2, 0], [2, 0]);
  const server = new RecordingServer();
  await delegateSelection(server, log(), { agents: 4, instruction: "format" });
  const args = server.sent[0].args[0] as { range: unknown };
  assert.deepEqual(args.range, { start: { line: 0, character: 0 }, end: { line: 5, character: 0 } });
  assert.equal(fake.recorded.inputBoxes.length, 0, "an instruction passed as argument skips the prompt");
});

test("Escape in the input box sends nothing", async () => {
  fake.window.activeTextEditor = fake.fakeEditor("/ws/app.py", SOURCE, [0, 0], [0, 6]);
  fake.answers.inputBox = undefined;
  const server = new RecordingServer();
  assert.equal(await delegateSelection(server, log(), { agents: 4 }), undefined);
  assert.deepEqual(server.sent, []);
});

test("no editor, a bad rename or a reply without taskId is an error message", async () => {
  const server = new RecordingServer({ nope: true });
  await delegateSelection(server, log(), { agents: 4, instruction: "fix" });
  fake.window.activeTextEditor = fake.fakeEditor("/ws/app.py", SOURCE, [0, 0], [0, 6]);
  await delegateSelection(server, log(), { agents: 4, instruction: "rename only_one" });
  await delegateSelection(server, log(), { agents: 4, instruction: "fix" });
  assert.deepEqual(
    fake.recorded.messages.map((m) => [m.level, m.text]),
    [
      ["error", "Delegation: open a file and select the code to delegate."],
      ["error", "Delegation: rename needs two identifiers: `rename OLD NEW`."],
      ["error", "Delegation: the server did not accept the task (see the output)."],
    ],
  );
  assert.equal(server.sent.length, 1, "only the valid instruction reached the server");
});

test("instruction validation", () => {
  assert.equal(validateInstruction("rename old_name new_name"), undefined);
  assert.equal(validateInstruction("rename a b c"), "rename needs two identifiers: `rename OLD NEW`.");
  assert.equal(validateInstruction("make this faster"), undefined);
});

test("a task id comes from the argument, an object, a pick list or an input box", async () => {
  const board = new TaskBoard();
  assert.equal(await chooseTask(board, ["verified"], "Accept", "t9"), "t9");
  assert.equal(await chooseTask(board, ["verified"], "Accept", { taskId: "t8" }), "t8");
  fake.answers.inputBox = "t7";
  assert.equal(await chooseTask(board, ["verified"], "Accept"), "t7");
  board.record(parseTaskUpdate({ taskId: "t1", state: "verified", kind: "fix", files: ["a.py"] }));
  board.record(parseTaskUpdate({ taskId: "t2", state: "running" }));
  fake.answers.quickPick = (items: { label: string }[]) => items[0];
  assert.equal(await chooseTask(board, ["verified"], "Accept"), "t1");
  assert.deepEqual(
    fake.recorded.quickPicks[0].items.map((i: { label: string }) => i.label),
    ["t1"],
    "only tasks in a matching state are offered",
  );
});

test("accept, reject and cancel send {taskId}; status sends no arguments", async () => {
  const server = new RecordingServer({ ok: true });
  const board = new TaskBoard();
  await sendTaskVerb(server, board, log(), "accept", "t1");
  await sendTaskVerb(server, board, log(), "reject", { taskId: "t2" });
  await sendTaskVerb(server, board, log(), "cancel", "t3");
  await showStatus(server, log());
  assert.deepEqual(server.sent, [
    { command: "delegation.accept", args: [{ taskId: "t1" }] },
    { command: "delegation.reject", args: [{ taskId: "t2" }] },
    { command: "delegation.cancel", args: [{ taskId: "t3" }] },
    { command: "delegation.status", args: [] },
  ]);
});
