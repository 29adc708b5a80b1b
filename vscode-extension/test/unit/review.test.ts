import * as assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import type { ServerCommands } from "../../src/common/commands";
import { parseHunks, preTaskText, ReviewDataError, type ReviewNode, ReviewTree } from "../../src/common/review";
import { decideHunk, preTaskContent, preTaskUri, ReviewProvider, showHunkDiff } from "../../src/common/reviewView";
import { parseTaskUpdate, TaskBoard } from "../../src/common/tasks";
import * as vscodeapi from "../../src/common/vscodeapi";
import * as fake from "../mocks/vscode";

const URI = "file:///ws/inventory/storage.py";
const NOW = "import os\n\ndef load(handle):\n    return yaml.safe_load(handle)  # mine\n";
const HUNKS = {
  hunks: [
    {
      taskId: "t-1",
      hunkId: "h-a",
      uri: URI,
      range: { start: { line: 1, character: 0 }, end: { line: 1, character: 0 } },
      before: "import sys\n",
      after: "",
    },
    {
      taskId: "t-1",
      hunkId: "h-b",
      uri: URI,
      range: { start: { line: 3, character: 0 }, end: { line: 3, character: "    return yaml.safe_load(handle)  # mine".length } },
      before: "    return yaml.load(handle, Loader=yaml.Loader)  # mine",
      after: "    return yaml.safe_load(handle)  # mine",
    },
  ],
};

class RecordingServer implements ServerCommands {
  readonly sent: { command: string; args: unknown[] }[] = [];
  constructor(private readonly reply: (command: string) => unknown) {}
  async execute(command: string, args: unknown[]): Promise<unknown> {
    this.sent.push({ command, args });
    return this.reply(command);
  }
}

const log = () => vscodeapi.createOutputChannel("test");

function board(): TaskBoard {
  const tasks = new TaskBoard();
  tasks.record(parseTaskUpdate({ taskId: "t-1", state: "verified", kind: "fix", files: ["inventory/storage.py"] }));
  return tasks;
}

beforeEach(() => fake.resetFake());

test("the tree shows tasks with their state, then files, then hunks", () => {
  const tree = new ReviewTree(board());
  tree.update(parseHunks(HUNKS));
  const [task] = tree.children();
  assert.equal(task.kind, "task");
  assert.deepEqual(tree.item(task, "diff"), {
    label: "fix t-1",
    description: "verified · 2 hunks",
    tooltip: undefined,
    collapsibleState: 2,
    contextValue: "delegation.task",
  });
  const [file] = tree.children(task);
  assert.equal(tree.item(file, "diff").label, "storage.py");
  const hunks = tree.children(file);
  assert.deepEqual(
    hunks.map((h) => tree.item(h, "diff").label),
    ["line 2: removed", "line 4: changed"],
  );
  const item = tree.item(hunks[1], "diff");
  assert.equal(item.contextValue, "delegation.hunk");
  assert.deepEqual(item.command, { title: "Show the diff", command: "diff", arguments: [hunks[1]] });
  assert.deepEqual(tree.children(hunks[1]), []);
});

test("malformed hunk lists name the offending field", () => {
  const cases: [unknown, string][] = [
    [null, "$.hunks"],
    [{ hunks: [7] }, "$.hunks[0]"],
    [{ hunks: [{ ...HUNKS.hunks[0], hunkId: 3 }] }, "$.hunks[0].hunkId"],
    [{ hunks: [{ ...HUNKS.hunks[0], range: { start: { line: 0 } } }] }, "$.hunks[0].range"],
  ];
  for (const [raw, where] of cases) {
    assert.throws(
      () => parseHunks(raw),
      (error: unknown) => error instanceof ReviewDataError && error.path === where,
      JSON.stringify(raw),
    );
  }
});

test("the pre-task text puts every hunk's before back and keeps the rest", () => {
  assert.equal(
    preTaskText(NOW, parseHunks(HUNKS)),
    "import os\nimport sys\n\ndef load(handle):\n    return yaml.load(handle, Loader=yaml.Loader)  # mine\n",
  );
});

test("accept and reject of a hunk node send the server's hunk commands", async () => {
  const server = new RecordingServer(() => ({ state: "verified" }));
  const tree = new ReviewTree(board());
  tree.update(parseHunks(HUNKS));
  const [hunk] = tree.children(tree.children(tree.children()[0])[0]);
  await decideHunk(server, log(), "reject", hunk);
  await decideHunk(server, log(), "accept", { taskId: "t-1", hunkId: "h-b" });
  assert.deepEqual(server.sent, [
    { command: "delegation.rejectHunk", args: [{ taskId: "t-1", hunkId: "h-a" }] },
    { command: "delegation.acceptHunk", args: [{ taskId: "t-1", hunkId: "h-b" }] },
  ]);
  assert.equal(await decideHunk(server, log(), "accept", undefined), undefined);
  assert.equal(server.sent.length, 2);
  assert.match(fake.recorded.messages[0].text, /pick a hunk/);
});

test("refresh asks the server for the hunks and redraws; a bad answer is logged", async () => {
  let reply: unknown = HUNKS;
  const server = new RecordingServer(() => reply);
  const provider = new ReviewProvider(new ReviewTree(board()), server, log(), "diff");
  let redraws = 0;
  provider.onDidChangeTreeData(() => redraws++);
  await provider.refresh();
  assert.deepEqual(server.sent[0], { command: "delegation.hunks", args: [{}] });
  assert.equal(provider.getChildren().length, 1);
  assert.equal(redraws, 1);
  reply = { hunks: "no" };
  await provider.refresh();
  assert.ok(fake.recorded.logs.some((l) => l.level === "warn" && /\$\.hunks/.test(l.text)));
});

test("the diff opens the pre-task virtual document against the file", async () => {
  const tree = new ReviewTree(board());
  tree.update(parseHunks(HUNKS));
  const file = tree.children(tree.children()[0])[0] as ReviewNode & { kind: "file" };
  const diffs: unknown[][] = [];
  fake.commands.registerCommand("vscode.diff", (...args: unknown[]) => diffs.push(args));
  (fake.workspace as any).openTextDocument = async (uri: fake.Uri) => {
    assert.equal(uri.toString(), URI);
    return { getText: () => NOW };
  };
  await showHunkDiff(file);
  assert.equal(diffs.length, 1);
  const [left, right, title] = diffs[0] as [fake.Uri, fake.Uri, string];
  assert.equal(left.toString(), preTaskUri("t-1", URI));
  assert.equal(right.toString(), URI);
  assert.match(title, /storage\.py: before t-1/);
  assert.equal(await preTaskContent(tree, preTaskUri("t-1", URI)), preTaskText(NOW, tree.hunksOf("t-1", URI)));
});
