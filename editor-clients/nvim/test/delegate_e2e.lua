-- Headless end-to-end run against the real server (driven by tests/e2e/test_nvim.py):
-- open a sample file, wait for semgrep diagnostics, `:Delegate fix` over the finding, wait
-- for the applyEdit to change the buffer and for `verified`, then accept. Every wait is a
-- vim.wait on a condition with a deadline. Results go to $DELEGATION_RESULT as JSON.
local delegation = require("delegation")
local step_ms = tonumber(vim.env.DELEGATION_STEP_MS or "90000")
local result = { nvim_version = tostring(vim.version()), steps = {}, updates = {} }

local function buffer_text(bufnr)
  return table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false), "\n")
end

-- Messages Neovim shows (the server's window/showMessage and the plugin's own); an error
-- among them ends the current wait at once, since the happy path shows none.
result.messages = {}
local errors = {}
vim.notify = function(message, level)
  result.messages[#result.messages + 1] = { message = message, level = level }
  if level == vim.log.levels.ERROR then
    errors[#errors + 1] = message
  end
end

local function wait_for(what, condition)
  local ok = vim.wait(step_ms, function()
    return #errors > 0 or condition()
  end, 20)
  if #errors > 0 then
    error(("error shown while waiting for %s: %s"):format(what, errors[1]), 0)
  end
  if not ok then
    error(("timed out after %d ms waiting for %s"):format(step_ms, what), 0)
  end
  result.steps[#result.steps + 1] = what
end

local function ours(bufnr)
  return vim.tbl_filter(function(d)
    return d.source == "delegation-machine"
  end, vim.diagnostic.get(bufnr))
end

local function is_fixable_semgrep(d)
  local lsp = d.user_data and d.user_data.lsp or {}
  local fixable = not (type(lsp.data) == "table" and lsp.data.fixAvailable == false)
  return tostring(d.code or ""):match("^semgrep:") ~= nil and fixable
end

local function simple(d)
  return { code = d.code, lnum = d.lnum, col = d.col, end_lnum = d.end_lnum, end_col = d.end_col, message = d.message }
end

local function count_code(bufnr, code)
  return #vim.tbl_filter(function(d)
    return d.code == code
  end, ours(bufnr))
end

local function run()
  vim.api.nvim_create_autocmd("User", {
    pattern = "DelegationTaskUpdated",
    callback = function(args)
      result.updates[#result.updates + 1] = { taskId = args.data.taskId, state = args.data.state }
    end,
  })
  vim.cmd.edit(vim.fn.fnameescape(vim.env.DELEGATION_TEST_FILE))
  local bufnr = vim.api.nvim_get_current_buf()
  result.filetype = vim.bo[bufnr].filetype

  wait_for("the client to attach", function()
    return #vim.lsp.get_clients({ bufnr = bufnr, name = delegation.name }) > 0
  end)
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = delegation.name })[1]
  result.server_commands = client.server_capabilities.executeCommandProvider
      and client.server_capabilities.executeCommandProvider.commands
    or {}

  wait_for("a fixable semgrep diagnostic", function()
    return #vim.tbl_filter(is_fixable_semgrep, ours(bufnr)) > 0
  end)
  local finding = vim.tbl_filter(is_fixable_semgrep, ours(bufnr))[1]
  result.finding = simple(finding)
  -- The other findings, with the text they flag, to check later that none is lost.
  result.others_before = {}
  for _, d in ipairs(ours(bufnr)) do
    if d.code ~= finding.code and d.lnum == d.end_lnum then
      local line = vim.api.nvim_buf_get_lines(bufnr, d.lnum, d.lnum + 1, false)[1] or ""
      result.others_before[#result.others_before + 1] = { code = d.code, text = line:sub(d.col + 1, d.end_col) }
    end
  end
  result.count_before = count_code(bufnr, finding.code)
  result.buffer_before = buffer_text(bufnr)
  result.finding_line_before = vim.api.nvim_buf_get_lines(bufnr, finding.lnum, finding.lnum + 1, false)[1]
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)

  vim.cmd(("%d,%dDelegate fix"):format(finding.lnum + 1, finding.end_lnum + 1))
  wait_for("delegation.delegate to return a taskId", function()
    return delegation.last_task_id ~= nil
  end)
  local task_id = delegation.last_task_id
  result.task_id = task_id

  wait_for("the task to finish", function()
    local task = delegation.tasks[task_id]
    return task ~= nil and (task.state == "verified" or task.state == "failed" or task.state == "escalated" or task.state == "cancelled" or task.state == "no-change" or task.state == "held")
  end)
  result.final_state = delegation.tasks[task_id].state
  result.final_update = delegation.tasks[task_id]
  if result.final_state ~= "verified" then
    error("task ended " .. vim.inspect(result.final_update), 0)
  end

  wait_for("workspace/applyEdit to change the buffer", function()
    return vim.api.nvim_buf_get_changedtick(bufnr) > tick
  end)
  result.buffer_after = buffer_text(bufnr)
  wait_for("diagnostics republished without the finding", function()
    return count_code(bufnr, finding.code) < result.count_before
  end)
  result.diagnostics_after = vim.tbl_map(simple, ours(bufnr))
  result.count_after = count_code(bufnr, finding.code)

  vim.cmd("DelegateAccept " .. task_id)
  wait_for(":DelegateAccept to report accepted", function()
    return delegation.tasks[task_id].state == "accepted"
  end)
  vim.cmd("DelegateStatus")
  wait_for(":DelegateStatus to return", function()
    return delegation.last_status ~= nil
  end)
  result.status_mentions_task = vim.json.encode(delegation.last_status):find(task_id, 1, true) ~= nil
  result.status_buffer = vim.api.nvim_buf_get_lines(vim.fn.bufnr("delegation://status"), 0, 3, false)
  result.buffer_final = buffer_text(bufnr)
  result.diagnostics_final = vim.tbl_map(simple, ours(bufnr))
end

local ok, err = xpcall(run, debug.traceback)
result.ok = ok
result.error = (not ok) and tostring(err) or nil
local out = assert(io.open(vim.env.DELEGATION_RESULT, "w"))
out:write(vim.json.encode(result))
out:close()
vim.cmd(ok and "qall!" or "cquit! 1")
