-- Headless checks of the plugin's pure parts (no server needed), driven by
-- tests/e2e/test_nvim.py: ranges in the client's encoding, settings, task tracking.
-- Each check records {name, got, expected}; results go to $DELEGATION_RESULT as JSON.
local delegation = require("delegation")
local checks = {}

local function check(name, got, expected)
  checks[#checks + 1] = { name = name, ok = vim.deep_equal(got, expected), got = got, expected = expected }
end

local function run()
  local bufnr = vim.api.nvim_create_buf(true, false)
  vim.api.nvim_set_current_buf(bufnr)
  -- "é" is 2 bytes / 1 UTF-16 unit; "😀" is 4 bytes / 2 UTF-16 units.
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, { "x = 'é😀'", "y = yaml.load(s)", "z = 3" })

  -- Charwise visual selection from the "'" before é to the 😀 on line 1, then to line 2 col 7.
  vim.cmd([[execute "normal! gg0f'v\<Esc>"]])
  vim.cmd([[execute "normal! gg0f'vf😀\<Esc>"]])
  check("charwise, one line, utf-16", delegation.command_range(bufnr, { range = 2, line1 = 1, line2 = 1 }, "utf-16"), {
    start = { line = 0, character = 4 },
    ["end"] = { line = 0, character = 8 },
  })
  check("charwise, one line, utf-8", delegation.command_range(bufnr, { range = 2, line1 = 1, line2 = 1 }, "utf-8"), {
    start = { line = 0, character = 4 },
    ["end"] = { line = 0, character = 11 },
  })
  vim.cmd([[execute "normal! 2G4|vjl\<Esc>"]])
  check("charwise, two lines", delegation.command_range(bufnr, { range = 2, line1 = 2, line2 = 3 }, "utf-16"), {
    start = { line = 1, character = 3 },
    ["end"] = { line = 2, character = 5 },
  })
  vim.cmd([[execute "normal! 2GVj\<Esc>"]])
  check("linewise covers whole lines", delegation.command_range(bufnr, { range = 2, line1 = 2, line2 = 3 }, "utf-16"), {
    start = { line = 1, character = 0 },
    ["end"] = { line = 2, character = 5 },
  })
  check("no range is the whole buffer", delegation.command_range(bufnr, { range = 0 }, "utf-16"), {
    start = { line = 0, character = 0 },
    ["end"] = { line = 2, character = 5 },
  })

  delegation.setup({
    cmd = { "/opt/dm/bin/delegation-machine", "serve" },
    agents = 3,
    inference = { provider = "openai", baseUrl = "http://localhost:8000/v1", apiKeyEnv = "OPENAI_API_KEY", apiKey = "sk-secret" },
  })
  check("settings carry inference but never a key", delegation.server_settings(), {
    delegation = {
      agents = 3,
      inference = { provider = "openai", baseUrl = "http://localhost:8000/v1", apiKeyEnv = "OPENAI_API_KEY" },
    },
  })
  check("explicit cmd wins", delegation.server_cmd("/nowhere"), { "/opt/dm/bin/delegation-machine", "serve" })
  delegation.setup({ root_markers = { "pyproject.toml" } })
  check("lists replace defaults", delegation.config.root_markers, { "pyproject.toml" })
  check("default cmd is on PATH", delegation.server_cmd("/nowhere"), { "delegation-machine", "serve" })
  local commands = vim.api.nvim_get_commands({})
  check("user commands exist", {
    commands.Delegate ~= nil,
    commands.DelegateStatus ~= nil,
    commands.DelegateAccept ~= nil,
    commands.DelegateReject ~= nil,
    commands.DelegateCancel ~= nil,
  }, { true, true, true, true, true })
  check("Delegate takes a range", commands.Delegate.range, ".")

  local seen = {}
  vim.api.nvim_create_autocmd("User", {
    pattern = "DelegationTaskUpdated",
    callback = function(args)
      seen[#seen + 1] = args.data.state
    end,
  })
  local notified = {}
  vim.notify = function(message, level)
    notified[#notified + 1] = { message = message, level = level }
  end
  delegation.on_task_updated(nil, { taskId = "t1", state = "running", kind = "fix", files = { "a.py" } }, {})
  check("statusline while working", delegation.statusline(), "⚙ 1 working, 0 to review")
  delegation.on_task_updated(nil, { taskId = "t1", state = "verified", kind = "fix", files = { "a.py" } }, {})
  delegation.on_task_updated(nil, { taskId = 7 }, {})
  check("updates fire the User autocmd", seen, { "running", "verified" })
  check("statusline to review", delegation.statusline(), "⚙ 0 working, 1 to review")
  check("verified notifies with the accept hint", notified[1] and notified[1].message,
    "Delegation: task t1 [fix] verified — a.py — :DelegateAccept t1 or :DelegateReject t1")
  check("a malformed update warns", notified[2] and notified[2].level, vim.log.levels.WARN)
end

local ok, err = xpcall(run, debug.traceback)
local out = assert(io.open(vim.env.DELEGATION_RESULT, "w"))
out:write(vim.json.encode({ ok = ok, error = (not ok) and tostring(err) or nil, checks = checks }))
out:close()
vim.cmd(ok and "qall!" or "cquit! 1")
