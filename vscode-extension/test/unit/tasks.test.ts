import * as assert from "node:assert/strict";
import { test } from "node:test";
import { describeTask, parseTaskUpdate, TaskBoard, TaskUpdateError } from "../../src/common/tasks";

const running = { taskId: "t1", state: "running", agent: "fix-1", files: ["app.py"], tokens: 0, verdicts: [], kind: "fix" };

test("a well-formed update is parsed with defaults for optional fields", () => {
  assert.deepEqual(parseTaskUpdate({ taskId: "t2", state: "queued" }), {
    taskId: "t2",
    state: "queued",
    agent: null,
    files: [],
    tokens: null,
    verdicts: [],
    kind: null,
    message: null,
  });
});

test("a usage object is summed into tokens", () => {
  assert.equal(parseTaskUpdate({ ...running, tokens: { prompt: 100, completion: 20 } }).tokens, 120);
  assert.equal(parseTaskUpdate({ ...running, tokens: { total: 7, prompt: 5 } }).tokens, 7);
});

test("malformed updates name the offending field", () => {
  const cases: [unknown, string][] = [
    [null, "$"],
    [[], "$"],
    [{ state: "running" }, "$.taskId"],
    [{ taskId: "t", state: "exploded" }, "$.state"],
    [{ taskId: "t", state: "running", files: "a.py" }, "$.files"],
    [{ taskId: "t", state: "running", verdicts: {} }, "$.verdicts"],
  ];
  for (const [raw, where] of cases) {
    assert.throws(
      () => parseTaskUpdate(raw),
      (error: unknown) => error instanceof TaskUpdateError && error.path === where,
      JSON.stringify(raw),
    );
  }
});

test("the board counts working and reviewable tasks", () => {
  const board = new TaskBoard();
  assert.equal(board.statusText().text, "$(hubot) Delegation");
  assert.equal(board.record(parseTaskUpdate(running)), undefined);
  board.record(parseTaskUpdate({ ...running, taskId: "t2", state: "checking" }));
  assert.equal(board.statusText().text, "Delegation: $(sync~spin) 2 working");
  assert.equal(board.record(parseTaskUpdate({ ...running, state: "verified" })), "running");
  assert.equal(board.statusText().text, "Delegation: $(sync~spin) 1 working, $(checklist) 1 to review");
  board.record(parseTaskUpdate({ ...running, state: "accepted" }));
  board.record(parseTaskUpdate({ ...running, taskId: "t2", state: "cancelled" }));
  assert.equal(board.statusText().text, "$(hubot) Delegation");
  assert.equal(board.list().length, 2);
  assert.match(board.statusText().tooltip, /task t2 \[fix\] cancelled/);
});

test("a task line shows kind, state, agent, files, tokens and message", () => {
  const line = describeTask(parseTaskUpdate({ ...running, tokens: 42, message: "2 fixes applied" }));
  assert.equal(line, "task t1 [fix] running by fix-1 — app.py (42 tokens): 2 fixes applied");
});
