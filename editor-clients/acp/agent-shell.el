;;; agent-shell.el --- Delegation Machine as an agent of Emacs agent-shell -*- lexical-binding: t; -*-

;; Load this after agent-shell (https://github.com/xenodium/agent-shell), e.g. from init.el:
;;   (with-eval-after-load 'agent-shell (load "/path/to/editor-clients/acp/agent-shell.el"))
;; Then M-x delegation-machine-agent-shell, or pick "Delegation Machine" in M-x agent-shell.

(require 'agent-shell)

(defcustom delegation-machine-acp-command
  '("/path/to/project/.venv/bin/delegation-machine" "acp")
  "Command and arguments that start the Delegation Machine ACP agent."
  :type '(repeat string)
  :group 'agent-shell)

(defun delegation-machine-agent-shell-config ()
  "The agent-shell configuration of the Delegation Machine."
  (agent-shell-make-agent-config
   :identifier 'delegation-machine
   :mode-line-name "Delegation"
   :buffer-name "Delegation Machine"
   :shell-prompt "Delegate> "
   :shell-prompt-regexp "Delegate> "
   :client-maker (lambda (buffer)
                   (agent-shell--make-acp-client
                    :command (car delegation-machine-acp-command)
                    :command-params (cdr delegation-machine-acp-command)
                    :context-buffer buffer))))

(defun delegation-machine-agent-shell ()
  "Start a Delegation Machine shell for the current project."
  (interactive)
  (agent-shell--dwim :config (delegation-machine-agent-shell-config) :new-shell t))

;; Offer it in M-x agent-shell too. (Releases whose `agent-shell-agent-configs' holds config
;; makers take the function itself: #'delegation-machine-agent-shell-config.)
(add-to-list 'agent-shell-agent-configs (delegation-machine-agent-shell-config) t)

;;; agent-shell.el ends here
