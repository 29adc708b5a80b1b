-- Per-hunk review for Neovim: :DelegateReview puts every pending agent hunk (the server's
-- `delegation.hunks`) in the quickfix list; :DelegateAcceptHunk / :DelegateRejectHunk decide
-- the entry under the cursor in the quickfix window (elsewhere: the current quickfix entry)
-- with `delegation.acceptHunk` / `delegation.rejectHunk`, then the list is refreshed. The
-- edit of a rejected hunk arrives as workspace/applyEdit, like every task change.
local M = {}

M.title = "Delegation review"
--- The hunks of the last :DelegateReview, in quickfix order.
M.hunks = {}

local function summary(hunk)
  local text = hunk.after ~= "" and hunk.after or hunk.before
  local line = vim.trim(vim.split(text, "\n", { plain = true })[1] or "")
  local change = (hunk.after ~= "" and hunk.before ~= "") and "changed" or (hunk.after ~= "" and "added" or "removed")
  return ("%s %s: %s"):format(hunk.taskId, change, line)
end

--- Quickfix items for `hunks` (positions are the server's; columns are close enough here).
function M.quickfix_items(hunks)
  return vim.tbl_map(function(hunk)
    return {
      filename = vim.uri_to_fname(hunk.uri),
      lnum = hunk.range.start.line + 1,
      col = hunk.range.start.character + 1,
      text = summary(hunk),
      user_data = { taskId = hunk.taskId, hunkId = hunk.hunkId },
    }
  end, hunks)
end

--- The hunk a decision applies to: explicit ids, else the quickfix entry under the cursor.
function M.selected(args)
  local task_id, hunk_id = (args or ""):match("^%s*(%S+)%s+(%S+)%s*$")
  if task_id then
    return { taskId = task_id, hunkId = hunk_id }
  end
  local list = vim.fn.getqflist({ title = 0, idx = 0, items = 0 })
  if list.title ~= M.title or #list.items == 0 then
    return nil
  end
  local index = list.idx
  if vim.bo.buftype == "quickfix" then
    index = vim.fn.line(".")
  end
  local item = list.items[index]
  local data = item and item.user_data
  if type(data) == "table" and data.taskId and data.hunkId then
    return { taskId = data.taskId, hunkId = data.hunkId }
  end
  return nil
end

--- :DelegateReview: list the pending hunks in the quickfix list and open it.
function M.review(delegation, on_done)
  delegation.execute(vim.api.nvim_get_current_buf(), "delegation.hunks", { vim.empty_dict() }, function(result)
    M.hunks = type(result) == "table" and result.hunks or {}
    local current = vim.fn.getqflist({ title = 0 }).title == M.title and "r" or " "
    vim.fn.setqflist({}, current, { title = M.title, items = M.quickfix_items(M.hunks) })
    if #M.hunks == 0 then
      delegation.notify("no pending hunks to review")
    elseif current == " " then
      vim.cmd("botright copen")
    end
    if on_done then
      on_done(M.hunks)
    end
  end)
end

--- :DelegateAcceptHunk / :DelegateRejectHunk.
function M.decide(delegation, verb, args)
  local hunk = M.selected(args)
  if not hunk then
    delegation.notify("no hunk selected: run :DelegateReview and put the cursor on an entry", vim.log.levels.WARN)
    return
  end
  local command = verb == "accept" and "delegation.acceptHunk" or "delegation.rejectHunk"
  delegation.execute(vim.api.nvim_get_current_buf(), command, { hunk }, function(result)
    M.last_decision = result
    delegation.notify(("%s hunk %s of %s: %s"):format(verb, hunk.hunkId, hunk.taskId, result and result.state or "done"))
    M.review(delegation)
  end)
end

function M.register(delegation)
  vim.api.nvim_create_user_command("DelegateReview", function()
    M.review(delegation)
  end, { desc = "Pending agent hunks in the quickfix list" })
  for _, verb in ipairs({ "accept", "reject" }) do
    local name = "Delegate" .. verb:sub(1, 1):upper() .. verb:sub(2) .. "Hunk"
    vim.api.nvim_create_user_command(name, function(opts)
      M.decide(delegation, verb, opts.args)
    end, { nargs = "*", desc = ("%s the hunk under the cursor in the review list"):format(verb) })
  end
end

return M
