-- Headless per-hunk review against the real server (driven by tests/e2e/test_nvim_review.py):
-- `:Delegate fix` on a sample file, `:DelegateReview` lists its hunks in the quickfix list,
-- the user types inside one hunk, `:DelegateRejectHunk` on that quickfix entry undoes only
-- the agent's part of it, `:DelegateAcceptHunk` keeps the other and settles the task. Every
-- wait is a vim.wait on a condition. Results go to $DELEGATION_RESULT as JSON.
local delegation = require("delegation")
local review = require("delegation.review")
local step_ms = tonumber(vim.env.DELEGATION_STEP_MS or "90000")
local result = { steps = {} }

local function buffer_text(bufnr)
  return table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false), "\n")
end

local errors = {}
vim.notify = function(message, level)
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

local function review_items()
  local list = vim.fn.getqflist({ title = 0, items = 0 })
  return list.title == review.title and list.items or {}
end

local function run()
  vim.cmd.edit(vim.fn.fnameescape(vim.env.DELEGATION_TEST_FILE))
  local bufnr = vim.api.nvim_get_current_buf()
  wait_for("the client to attach", function()
    return #vim.lsp.get_clients({ bufnr = bufnr, name = delegation.name }) > 0
  end)
  vim.cmd("Delegate fix")
  wait_for("delegation.delegate to return a taskId", function()
    return delegation.last_task_id ~= nil
  end)
  local task_id = delegation.last_task_id
  result.task_id = task_id
  wait_for("the task to be verified", function()
    local task = delegation.tasks[task_id]
    return task ~= nil and task.state == "verified"
  end)
  wait_for("the fix to reach the buffer", function()
    return buffer_text(bufnr):find("safe_load", 1, true) ~= nil
  end)

  vim.cmd("DelegateReview")
  wait_for(":DelegateReview to fill the quickfix list", function()
    return #review_items() == 2
  end)
  result.entries = vim.tbl_map(function(item)
    return { lnum = item.lnum, text = item.text, bufnr_matches = item.bufnr == bufnr, user_data = item.user_data }
  end, review_items())

  -- The user types inside the yaml hunk (Neovim sends it as didChange).
  local row
  for n, line in ipairs(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)) do
    if line:find("safe_load", 1, true) then
      row = n - 1
    end
  end
  local col = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]:find("safe_load", 1, true) + 3
  vim.api.nvim_buf_set_text(bufnr, row, col, row, col, { "  # mine" })
  local typed = buffer_text(bufnr)

  -- Reject the entry of the yaml hunk, chosen with the cursor in the quickfix window.
  local target
  for n, item in ipairs(review_items()) do
    if item.lnum == row + 1 then
      target = n
    end
  end
  result.target = target
  vim.cmd("botright copen")
  vim.api.nvim_win_set_cursor(0, { target, 0 })
  vim.cmd("DelegateRejectHunk")
  wait_for("the rejection to reach the buffer", function()
    -- the typing inside the agent's text is kept where that text was
    local without_typing = buffer_text(bufnr):gsub("  # mine", "")
    return without_typing:find("yaml.load(handle, Loader=yaml.Loader)", 1, true) ~= nil
  end)
  wait_for("the review list to be refreshed", function()
    return #review_items() == 1
  end)
  result.buffer_typed = typed
  result.buffer_rejected = buffer_text(bufnr)
  result.decision = review.last_decision

  vim.cmd("cfirst")
  vim.cmd("wincmd p")
  vim.cmd("DelegateAcceptHunk")
  wait_for("the task to be accepted", function()
    return delegation.tasks[task_id].state == "accepted"
  end)
  wait_for("the review list to be empty", function()
    return #review_items() == 0
  end)
  result.buffer_final = buffer_text(bufnr)
  vim.cmd("DelegateAcceptHunk") -- nothing left to decide: a warning, no request
  result.warned = true
end

local ok, err = xpcall(run, debug.traceback)
result.ok = ok
result.error = (not ok) and tostring(err) or nil
local out = assert(io.open(vim.env.DELEGATION_RESULT, "w"))
out:write(vim.json.encode(result))
out:close()
vim.cmd(ok and "qall!" or "cquit! 1")
