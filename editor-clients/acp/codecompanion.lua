-- Neovim with CodeCompanion.nvim: an ACP adapter for `delegation-machine acp`.
-- It extends the built-in "goose" adapter (a plain stdio ACP agent with no authentication)
-- and replaces its name and command. Open a chat with :CodeCompanionChat, type "fix" (or
-- "rename old new"), and #buffer or a visual selection to target a file or lines.
require("codecompanion").setup({
  adapters = {
    acp = {
      delegation_machine = function()
        return require("codecompanion.adapters").extend("goose", {
          name = "delegation_machine",
          formatted_name = "Delegation Machine",
          commands = {
            default = { "/path/to/project/.venv/bin/delegation-machine", "acp" },
          },
          defaults = { mcpServers = {}, timeout = 60000 }, -- the first start builds an index
        })
      end,
    },
  },
  strategies = { -- `interactions` in CodeCompanion releases that renamed it
    chat = { adapter = "delegation_machine" },
  },
})
