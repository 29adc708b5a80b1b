-- Delegation Machine for Neovim: starts `delegation-machine serve` for Python buffers with
-- vim.lsp.start, adds :Delegate (range-aware), :DelegateStatus, :DelegateAccept,
-- :DelegateReject and :DelegateCancel, the per-hunk review (:DelegateReview,
-- :DelegateAcceptHunk, :DelegateRejectHunk: lua/delegation/review.lua), and reports
-- `delegation/taskUpdated` with vim.notify.
-- Edits arrive as workspace/applyEdit, which Neovim applies by itself. Works on 0.10+
-- (0.8/0.9 fall back to vim.fs.find for the root).
local M = {}

M.name = "delegation-machine"

local defaults = {
  -- The server command; a list. Defaults to a `delegation-machine` found in the project's
  -- .venv, else on PATH.
  cmd = nil,
  agents = 4,
  -- { provider = "openai", baseUrl = "http://localhost:8000/v1", model = "...",
  --   apiKeyEnv = "OPENAI_API_KEY" }: the key itself stays in the environment.
  inference = nil,
  filetypes = { "python" },
  root_markers = { "pyproject.toml", "setup.py", "setup.cfg", ".git" },
  -- Lowest level of task notifications shown; "verified"/"failed" always show.
  notify_progress = false,
}

M.config = vim.deepcopy(defaults)
--- taskId -> the last `delegation/taskUpdated` params for it.
M.tasks = {}
--- taskIds in the order they were first seen.
M.task_order = {}
M.last_status = nil

local TERMINAL = {
  verified = true, failed = true, escalated = true, cancelled = true, accepted = true,
  rejected = true, ["no-change"] = true, held = true,
}
local REVIEW = { verified = true, failed = true, escalated = true, ["no-change"] = true, held = true }
local ACTIVE = { queued = true, waiting = true, running = true, checking = true }

local function notify(message, level)
  vim.notify("Delegation: " .. message, level or vim.log.levels.INFO, { title = "Delegation Machine" })
end

-- Clients of this server attached to `bufnr` (or any buffer when nil).
local function clients(bufnr)
  local filter = { name = M.name, bufnr = bufnr }
  if vim.lsp.get_clients then
    return vim.lsp.get_clients(filter)
  end
  return vim.lsp.get_active_clients(filter)
end

-- 0.11 made client methods colon-called; keep 0.10 working too.
local function client_request(client, method, params, handler, bufnr)
  if vim.fn.has("nvim-0.11") == 1 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function find_root(bufnr)
  local markers = M.config.root_markers
  if vim.fs.root then
    return vim.fs.root(bufnr, markers)
  end
  local name = vim.api.nvim_buf_get_name(bufnr)
  local found = vim.fs.find(markers, { upward = true, path = vim.fs.dirname(name) })[1]
  return found and vim.fs.dirname(found) or nil
end

--- The server command: `config.cmd`, else <root>/.venv/bin/delegation-machine, else PATH.
function M.server_cmd(root)
  if M.config.cmd then
    return M.config.cmd
  end
  local venv = root and (root .. "/.venv/bin/delegation-machine")
  if venv and vim.fn.executable(venv) == 1 then
    return { venv, "serve" }
  end
  return { "delegation-machine", "serve" }
end

--- The `{delegation = {...}}` settings sent as initializationOptions and settings.
function M.server_settings()
  local settings = { agents = M.config.agents }
  if M.config.inference then
    local inference = vim.deepcopy(M.config.inference)
    if inference.apiKey or inference.api_key then
      notify("inference.apiKey is ignored: put the key in an environment variable and set apiKeyEnv", vim.log.levels.WARN)
      inference.apiKey, inference.api_key = nil, nil
    end
    settings.inference = inference
  end
  return { delegation = settings }
end

local function describe(update)
  local parts = { ("task %s"):format(update.taskId) }
  if update.kind and update.kind ~= vim.NIL then
    parts[#parts + 1] = ("[%s]"):format(update.kind)
  end
  parts[#parts + 1] = update.state
  if type(update.files) == "table" and #update.files > 0 then
    parts[#parts + 1] = "— " .. table.concat(update.files, ", ")
  end
  local text = table.concat(parts, " ")
  if type(update.message) == "string" and update.message ~= "" then
    text = text .. ": " .. update.message
  end
  return text
end
M.describe = describe

--- Handler for the `delegation/taskUpdated` notification.
function M.on_task_updated(_, update, _)
  if type(update) ~= "table" or type(update.taskId) ~= "string" or type(update.state) ~= "string" then
    notify("ignored a malformed delegation/taskUpdated: " .. vim.inspect(update), vim.log.levels.WARN)
    return
  end
  if not M.tasks[update.taskId] then
    M.task_order[#M.task_order + 1] = update.taskId
  end
  local previous = M.tasks[update.taskId]
  M.tasks[update.taskId] = update
  vim.api.nvim_exec_autocmds("User", { pattern = "DelegationTaskUpdated", data = update })
  if previous and previous.state == update.state then
    return
  end
  if update.state == "verified" then
    notify(describe(update) .. (" — :DelegateAccept %s or :DelegateReject %s"):format(update.taskId, update.taskId))
  elseif update.state == "held" then
    notify(describe(update) .. (" — changed its own tests: :DelegateAccept %s keeps it"):format(update.taskId), vim.log.levels.WARN)
  elseif update.state == "failed" or update.state == "escalated" or update.state == "no-change" then
    notify(describe(update), vim.log.levels.WARN)
  elseif TERMINAL[update.state] or M.config.notify_progress then
    notify(describe(update), vim.log.levels.INFO)
  end
end

--- Start (or reuse) the client for `bufnr`. Returns the client id.
function M.start(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local root = find_root(bufnr) or vim.fs.dirname(vim.api.nvim_buf_get_name(bufnr))
  local settings = M.server_settings()
  return vim.lsp.start({
    name = M.name,
    cmd = M.server_cmd(root),
    root_dir = root,
    init_options = settings,
    settings = settings,
    handlers = { ["delegation/taskUpdated"] = M.on_task_updated },
  }, { bufnr = bufnr })
end

-- Column `byte_col` of `line` in the client's position encoding.
local function lsp_character(line, byte_col, encoding)
  byte_col = math.max(0, math.min(byte_col, #line))
  if encoding == "utf-8" then
    return byte_col
  end
  if vim.fn.has("nvim-0.11") == 1 then
    return vim.str_utfindex(line, encoding, byte_col, false)
  end
  local utf32, utf16 = vim.str_utfindex(line, byte_col)
  return encoding == "utf-32" and utf32 or utf16
end

--- The LSP range of a :command's range. A charwise visual selection is exact; a line range
--- covers whole lines; no range means the whole buffer.
function M.command_range(bufnr, opts, encoding)
  local line_count = vim.api.nvim_buf_line_count(bufnr)
  local first, last = 1, line_count
  local start_col, end_col = 0, nil
  if opts.range and opts.range > 0 then
    first, last = opts.line1, opts.line2
    local vstart = vim.api.nvim_buf_get_mark(bufnr, "<")
    local vend = vim.api.nvim_buf_get_mark(bufnr, ">")
    if vim.fn.visualmode() == "v" and vstart[1] == first and vend[1] == last then
      local last_line = vim.api.nvim_buf_get_lines(bufnr, last - 1, last, false)[1] or ""
      start_col = vstart[2]
      -- '> marks the first byte of the last selected character: include all of it.
      local char_len = #(vim.fn.strcharpart(last_line:sub(vend[2] + 1), 0, 1))
      end_col = vend[2] + math.max(char_len, 1)
    end
  end
  local first_line = vim.api.nvim_buf_get_lines(bufnr, first - 1, first, false)[1] or ""
  local last_line = vim.api.nvim_buf_get_lines(bufnr, last - 1, last, false)[1] or ""
  return {
    start = { line = first - 1, character = lsp_character(first_line, start_col, encoding) },
    ["end"] = { line = last - 1, character = lsp_character(last_line, end_col or #last_line, encoding) },
  }
end

local function execute(bufnr, command, arguments, on_result)
  local client = clients(bufnr)[1] or clients(nil)[1]
  if not client then
    notify("no delegation-machine server is running for this buffer (is it a Python file?)", vim.log.levels.ERROR)
    return
  end
  client_request(client, "workspace/executeCommand", { command = command, arguments = arguments }, function(err, result)
    if err then
      notify(("%s failed: %s"):format(command, err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    if on_result then
      on_result(result)
    end
  end, bufnr)
  return client
end

--- Send `delegation.delegate` for `range` (nil: the whole buffer) with `instruction`.
function M.delegate(instruction, opts)
  opts = opts or {}
  local bufnr = opts.bufnr or vim.api.nvim_get_current_buf()
  local client = clients(bufnr)[1]
  if not client then
    notify("no delegation-machine server is attached to this buffer", vim.log.levels.ERROR)
    return
  end
  local encoding = client.offset_encoding or "utf-16"
  local arguments = {
    uri = vim.uri_from_bufnr(bufnr),
    range = M.command_range(bufnr, opts, encoding),
    instruction = instruction,
    agents = M.config.agents,
  }
  if opts.kind then
    arguments.kind = opts.kind
  end
  execute(bufnr, "delegation.delegate", { arguments }, function(result)
    if type(result) == "table" and type(result.taskId) == "string" then
      M.last_task_id = result.taskId
      notify(("delegated %q as task %s"):format(instruction, result.taskId))
    else
      notify("the server returned no taskId: " .. vim.inspect(result), vim.log.levels.ERROR)
    end
  end)
end

-- The most recent task in one of `states`, for commands called without an id.
local function latest_task(states)
  for i = #M.task_order, 1, -1 do
    local task = M.tasks[M.task_order[i]]
    if states[task.state] then
      return task.taskId
    end
  end
end

function M.task_command(verb, task_id)
  local states = verb == "cancel" and ACTIVE or REVIEW
  task_id = (task_id ~= nil and task_id ~= "") and task_id or latest_task(states)
  if not task_id then
    notify(("no task to %s; pass a task id"):format(verb), vim.log.levels.WARN)
    return
  end
  execute(vim.api.nvim_get_current_buf(), "delegation." .. verb, { { taskId = task_id } }, function(result)
    notify(("%s %s: %s"):format(verb, task_id, type(result) == "table" and (result.state or vim.inspect(result)) or "done"))
  end)
end

-- Shows `lines` in a scratch buffer (reused between calls) in a split.
local function show_scratch(name, lines)
  local bufnr = vim.fn.bufnr(name)
  if bufnr == -1 then
    bufnr = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(bufnr, name)
    vim.bo[bufnr].bufhidden = "hide"
  end
  vim.bo[bufnr].modifiable = true
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, lines)
  vim.bo[bufnr].modifiable = false
  if vim.fn.bufwinid(bufnr) == -1 then
    vim.cmd("botright split")
    vim.api.nvim_win_set_buf(0, bufnr)
  end
end

--- :DelegateStatus: the tasks this Neovim saw, then the server's full status, in a split.
function M.status()
  execute(vim.api.nvim_get_current_buf(), "delegation.status", {}, function(result)
    M.last_status = result
    local lines = { "# Tasks" }
    for _, id in ipairs(M.task_order) do
      lines[#lines + 1] = describe(M.tasks[id])
    end
    lines[#lines + 1] = ""
    lines[#lines + 1] = "# Server status (delegation.status)"
    vim.list_extend(lines, vim.split(vim.inspect(result), "\n"))
    show_scratch("delegation://status", lines)
  end)
end

--- A short text for statuslines: counts of working and reviewable tasks.
function M.statusline()
  local working, review = 0, 0
  for _, task in pairs(M.tasks) do
    if ACTIVE[task.state] then
      working = working + 1
    elseif REVIEW[task.state] then
      review = review + 1
    end
  end
  if working + review == 0 then
    return ""
  end
  return ("⚙ %d working, %d to review"):format(working, review)
end

local function complete_task_ids()
  return vim.tbl_map(function(id)
    return id
  end, M.task_order)
end

-- For lua/delegation/review.lua.
M.execute = execute
M.notify = notify

local function register_commands()
  vim.api.nvim_create_user_command("Delegate", function(opts)
    M.delegate(opts.args, { range = opts.range, line1 = opts.line1, line2 = opts.line2 })
  end, {
    nargs = "+",
    range = true,
    desc = "Delegate the selection (or buffer) to the swarm: fix | format | check | rename OLD NEW | …",
    complete = function()
      return { "fix", "format", "check", "rename " }
    end,
  })
  vim.api.nvim_create_user_command("DelegateStatus", M.status, { desc = "Show Delegation Machine status" })
  for _, verb in ipairs({ "accept", "reject", "cancel" }) do
    local name = "Delegate" .. verb:sub(1, 1):upper() .. verb:sub(2)
    vim.api.nvim_create_user_command(name, function(opts)
      M.task_command(verb, opts.args)
    end, { nargs = "?", complete = complete_task_ids, desc = ("%s a delegated task"):format(verb) })
  end
  require("delegation.review").register(M)
end

function M.setup(opts)
  opts = opts or {}
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts)
  -- Lists replace the defaults (older Neovims would merge them index by index).
  for _, key in ipairs({ "cmd", "filetypes", "root_markers" }) do
    if opts[key] ~= nil then
      M.config[key] = opts[key]
    end
  end
  register_commands()
  local group = vim.api.nvim_create_augroup("delegation-machine", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      M.start(args.buf)
    end,
  })
  -- Buffers opened before setup() ran.
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
      M.start(bufnr)
    end
  end
end

return M
