import * as assert from "node:assert/strict";
import { test } from "node:test";
import { readSettings, serverSettingsPayload, settingsProblems } from "../../src/common/settings";

function reader(values: Record<string, unknown>) {
  return { get: <T>(key: string, fallback?: T) => (key in values ? (values[key] as T) : fallback) } as any;
}

test("defaults when nothing is configured", () => {
  const settings = readSettings(reader({}));
  assert.deepEqual(settings, {
    serverCommand: [],
    pythonPath: "",
    serverArgs: [],
    languages: ["python"],
    agents: 4,
    inference: { provider: "none", baseUrl: "", model: "", apiKeyEnv: "" },
    trace: "off",
  });
  assert.deepEqual(serverSettingsPayload(settings), { delegation: { agents: 4 } });
});

test("invalid values fall back instead of reaching the server", () => {
  const settings = readSettings(
    reader({ agents: 0, "inference.provider": "gpt", "trace.server": "loud", languages: [], "server.command": ["a", 3] }),
  );
  assert.equal(settings.agents, 4);
  assert.equal(settings.inference.provider, "none");
  assert.equal(settings.trace, "off");
  assert.deepEqual(settings.languages, ["python"]);
  assert.deepEqual(settings.serverCommand, ["a"]);
});

test("the payload carries inference settings under `delegation`, leaving out empty strings", () => {
  const settings = readSettings(
    reader({
      agents: 8,
      "inference.provider": "openai",
      "inference.baseUrl": " http://localhost:8000/v1 ",
      "inference.model": "qwen",
      "inference.apiKeyEnv": "OPENAI_API_KEY",
    }),
  );
  assert.deepEqual(serverSettingsPayload(settings), {
    delegation: {
      agents: 8,
      inference: { provider: "openai", baseUrl: "http://localhost:8000/v1", model: "qwen", apiKeyEnv: "OPENAI_API_KEY" },
    },
  });
  assert.deepEqual(settingsProblems(settings), []);
});

test("a key pasted into apiKeyEnv is refused and never sent", () => {
  const values = { "inference.provider": "anthropic", "inference.apiKeyEnv": "sk-ant-123-secret", "inference.apiKey": "sk-x" };
  const settings = readSettings(reader(values));
  const payload = JSON.stringify(serverSettingsPayload(settings));
  assert.ok(!payload.includes("sk-"), payload);
  const problems = settingsProblems(settings, reader(values));
  assert.equal(problems.length, 2);
  assert.match(problems[0], /apiKeyEnv must be the NAME/);
  assert.match(problems[1], /delegation\.inference\.apiKey is not a setting/);
  assert.ok(problems.every((p) => !p.includes("sk-")), "problems must not echo the key");
});

test("openai without a base URL is reported", () => {
  const settings = readSettings(reader({ "inference.provider": "openai" }));
  assert.deepEqual(settingsProblems(settings), [
    "delegation.inference.baseUrl is required when the provider is 'openai'.",
  ]);
});
