//! Zed dev extension: starts `delegation-machine serve` for Python worktrees.
//! The binary comes from `lsp.delegation-machine.binary` in settings, else from PATH.
use zed_extension_api::{self as zed, serde_json, settings::LspSettings, LanguageServerId, Result};

const SERVER: &str = "delegation-machine";

struct DelegationMachine;

impl zed::Extension for DelegationMachine {
    fn new() -> Self {
        DelegationMachine
    }

    fn language_server_command(
        &mut self,
        _id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<zed::Command> {
        let binary = LspSettings::for_worktree(SERVER, worktree).ok().and_then(|s| s.binary);
        let path = binary
            .as_ref()
            .and_then(|b| b.path.clone())
            .or_else(|| worktree.which(SERVER))
            .ok_or_else(|| {
                format!("{SERVER} is not on PATH: `pip install delegation-machine` or set lsp.{SERVER}.binary.path")
            })?;
        let args = binary
            .and_then(|b| b.arguments)
            .unwrap_or_else(|| vec!["serve".to_string()]);
        Ok(zed::Command { command: path, args, env: worktree.shell_env() })
    }

    fn language_server_initialization_options(
        &mut self,
        _id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<Option<serde_json::Value>> {
        let configured = LspSettings::for_worktree(SERVER, worktree)
            .ok()
            .and_then(|s| s.initialization_options);
        Ok(Some(configured.unwrap_or_else(|| serde_json::json!({ "delegation": { "agents": 4 } }))))
    }

    fn language_server_workspace_configuration(
        &mut self,
        _id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<Option<serde_json::Value>> {
        Ok(LspSettings::for_worktree(SERVER, worktree).ok().and_then(|s| s.settings))
    }
}

zed::register_extension!(DelegationMachine);
