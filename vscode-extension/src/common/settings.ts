// Mirrors the `delegation.*` settings into a typed object, and builds the payload the server
// receives under `initializationOptions` and `workspace/didChangeConfiguration`.
// Invariant: an API key never leaves this module; only the *name* of its environment variable.
import type { WorkspaceConfiguration } from "vscode";

export type TraceLevel = "off" | "messages" | "verbose";
export type InferenceProvider = "none" | "openai" | "anthropic" | "vllm";

export interface InferenceSettings {
  provider: InferenceProvider;
  baseUrl: string;
  model: string;
  apiKeyEnv: string;
}

export interface ExtensionSettings {
  serverCommand: string[];
  pythonPath: string;
  serverArgs: string[];
  languages: string[];
  agents: number;
  inference: InferenceSettings;
  trace: TraceLevel;
}

/** What the server receives: `{delegation: {...}}` (DESIGN.md §4, "settings"). */
export interface ServerSettingsPayload {
  delegation: {
    agents: number;
    inference?: { provider: string; baseUrl?: string; model?: string; apiKeyEnv?: string };
  };
}

type ConfigReader = Pick<WorkspaceConfiguration, "get">;

const PROVIDERS: readonly InferenceProvider[] = ["none", "openai", "anthropic", "vllm"];
const TRACE_LEVELS: readonly TraceLevel[] = ["off", "messages", "verbose"];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function stringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], fallback: T): T {
  return allowed.includes(value as T) ? (value as T) : fallback;
}

/** Read the `delegation` section. `config` is `workspace.getConfiguration("delegation")`. */
export function readSettings(config: ConfigReader): ExtensionSettings {
  const agents = Number(config.get<number>("agents", 4));
  const languages = stringArray(config.get("languages", ["python"]));
  return {
    serverCommand: stringArray(config.get("server.command", [])),
    pythonPath: String(config.get<string>("server.pythonPath", "") ?? "").trim(),
    serverArgs: stringArray(config.get("server.args", [])),
    languages: languages.length > 0 ? languages : ["python"],
    agents: Number.isInteger(agents) && agents >= 1 ? agents : 4,
    inference: {
      provider: oneOf(config.get("inference.provider", "none"), PROVIDERS, "none"),
      baseUrl: String(config.get<string>("inference.baseUrl", "") ?? "").trim(),
      model: String(config.get<string>("inference.model", "") ?? "").trim(),
      apiKeyEnv: String(config.get<string>("inference.apiKeyEnv", "") ?? "").trim(),
    },
    trace: oneOf(config.get("trace.server", "off"), TRACE_LEVELS, "off"),
  };
}

/** Problems a user must fix, each naming the setting. Empty when the settings are usable. */
export function settingsProblems(settings: ExtensionSettings, config?: ConfigReader): string[] {
  const problems: string[] = [];
  const { apiKeyEnv, provider, baseUrl } = settings.inference;
  if (apiKeyEnv && !ENV_NAME.test(apiKeyEnv)) {
    problems.push(
      "delegation.inference.apiKeyEnv must be the NAME of an environment variable " +
        "(e.g. OPENAI_API_KEY), not the key itself; it was ignored.",
    );
  }
  if (config?.get("inference.apiKey") !== undefined) {
    problems.push(
      "delegation.inference.apiKey is not a setting: keys are read from the environment only. " +
        "Remove it from settings.json and set delegation.inference.apiKeyEnv instead.",
    );
  }
  if (provider === "openai" && !baseUrl) {
    problems.push("delegation.inference.baseUrl is required when the provider is 'openai'.");
  }
  return problems;
}

/** The `{delegation: {...}}` object sent to the server; empty strings are left out. */
export function serverSettingsPayload(settings: ExtensionSettings): ServerSettingsPayload {
  const payload: ServerSettingsPayload = { delegation: { agents: settings.agents } };
  const { provider, baseUrl, model, apiKeyEnv } = settings.inference;
  if (provider !== "none") {
    payload.delegation.inference = {
      provider,
      ...(baseUrl ? { baseUrl } : {}),
      ...(model ? { model } : {}),
      ...(apiKeyEnv && ENV_NAME.test(apiKeyEnv) ? { apiKeyEnv } : {}),
    };
  }
  return payload;
}

/** Settings whose change needs a server restart rather than a didChangeConfiguration. */
export const RESTART_SETTINGS = ["delegation.server", "delegation.languages", "delegation.trace"];
