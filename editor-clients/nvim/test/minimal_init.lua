-- Minimal init for headless tests: only this plugin on the runtimepath, nothing from the
-- user's config. The server command comes from $DELEGATION_SERVER_CMD (a JSON list).
local here = vim.fs.dirname(debug.getinfo(1, "S").source:sub(2))
local plugin_root = vim.fs.dirname(here)
vim.opt.runtimepath:prepend(plugin_root)
vim.opt.swapfile = false
vim.opt.shadafile = "NONE"
vim.cmd("filetype on")

local cmd = vim.env.DELEGATION_SERVER_CMD and vim.json.decode(vim.env.DELEGATION_SERVER_CMD) or nil
require("delegation").setup({ cmd = cmd, agents = 2 })
