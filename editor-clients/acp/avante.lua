-- Neovim with avante.nvim: `delegation-machine acp` as an ACP provider.
-- (With lazy.nvim, put the table passed to setup() under `opts` instead.)
require("avante").setup({
  provider = "delegation-machine",
  acp_providers = {
    ["delegation-machine"] = {
      command = "/path/to/project/.venv/bin/delegation-machine",
      args = { "acp" },
      env = {},
    },
  },
})
