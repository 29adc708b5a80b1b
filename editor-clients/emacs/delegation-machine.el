;;; delegation-machine.el --- Delegation Machine for eglot or lsp-mode  -*- lexical-binding: t; -*-

;;; Commentary:
;; Starts `delegation-machine serve' for Python buffers, with either eglot or lsp-mode,
;; and adds commands that send the delegation.* LSP commands. Edits come back as
;; workspace/applyEdit, which both clients apply.  Example configuration; see README.md.

;;; Code:

(require 'cl-lib)

(defgroup delegation-machine nil
  "Delegate code to a swarm of agents over LSP."
  :group 'tools)

(defcustom delegation-machine-command '("delegation-machine" "serve")
  "Command that starts the language server over stdio."
  :type '(repeat string))

(defcustom delegation-machine-settings '(:delegation (:agents 4))
  "Sent as initializationOptions and workspace/didChangeConfiguration.
For a model: (:delegation (:agents 4 :inference (:provider \"openai\"
:baseUrl \"http://localhost:8000/v1\" :model \"qwen\" :apiKeyEnv \"OPENAI_API_KEY\"))).
Never put the key itself here."
  :type 'sexp)

(defvar delegation-machine-last-task nil "Id of the last task this Emacs heard of.")

(defun delegation-machine--report (task-id state message)
  (setq delegation-machine-last-task task-id)
  (message "Delegation: task %s %s%s" task-id state
           (if (and message (stringp message)) (concat ": " message) "")))

;;;; eglot

(defun delegation-machine-eglot-setup ()
  "Use Delegation Machine as the eglot server for Python buffers."
  (require 'eglot)
  (add-to-list 'eglot-server-programs
               `((python-mode python-ts-mode)
                 . (,@delegation-machine-command
                    :initializationOptions ,delegation-machine-settings)))
  (setq-default eglot-workspace-configuration delegation-machine-settings)
  (cl-defmethod eglot-handle-notification
    (_server (_method (eql delegation/taskUpdated)) &key taskId state message &allow-other-keys)
    (delegation-machine--report taskId state message)))

;;;; lsp-mode

(defun delegation-machine-lsp-mode-setup ()
  "Register Delegation Machine with lsp-mode as an add-on beside other Python servers."
  (require 'lsp-mode)
  (lsp-register-client
   (make-lsp-client
    :new-connection (lsp-stdio-connection (lambda () delegation-machine-command))
    :activation-fn (lsp-activate-on "python")
    :server-id 'delegation-machine
    :add-on? t
    :initialization-options (lambda () delegation-machine-settings)
    :notification-handlers
    (let ((handlers (make-hash-table :test 'equal)))
      (puthash "delegation/taskUpdated"
               (lambda (_workspace params)
                 (delegation-machine--report (gethash "taskId" params)
                                             (gethash "state" params)
                                             (gethash "message" params)))
               handlers)
      handlers))))

;;;; commands (work with either client)

(defun delegation-machine--utf16-position (point)
  "LSP position of POINT: 0-based line, column in UTF-16 code units."
  (save-excursion
    (goto-char point)
    (let ((before (buffer-substring-no-properties (line-beginning-position) point)))
      (list :line (1- (line-number-at-pos))
            ;; UTF-16LE without a BOM takes 2 bytes per code unit.
            :character (/ (length (encode-coding-string before 'utf-16le t)) 2)))))

(defun delegation-machine--execute (command arguments)
  "Send workspace/executeCommand COMMAND with ARGUMENTS through the running client."
  (let ((params (list :command command :arguments (vconcat arguments))))
    (cond
     ((and (fboundp 'eglot-current-server) (eglot-current-server))
      (jsonrpc-request (eglot-current-server) :workspace/executeCommand params))
     ((and (fboundp 'lsp-workspaces) (lsp-workspaces))
      (lsp-request "workspace/executeCommand" params))
     (t (user-error "No Delegation Machine server in this buffer")))))

(defun delegation-machine-delegate (instruction)
  "Delegate the region, or the whole buffer, with INSTRUCTION."
  (interactive "sDelegate (fix | format | check | rename OLD NEW | …): ")
  (let* ((start (if (use-region-p) (region-beginning) (point-min)))
         (end (if (use-region-p) (region-end) (point-max)))
         (result (delegation-machine--execute
                  "delegation.delegate"
                  (list (list :uri (concat "file://" (expand-file-name (buffer-file-name)))
                              :range (list :start (delegation-machine--utf16-position start)
                                           :end (delegation-machine--utf16-position end))
                              :instruction instruction))))
         (task-id (if (hash-table-p result) (gethash "taskId" result) (plist-get result :taskId))))
    (setq delegation-machine-last-task task-id)
    (message "Delegation: delegated %S as task %s" instruction task-id)))

(defun delegation-machine--task-command (verb task-id)
  (delegation-machine--execute (concat "delegation." verb)
                               (list (list :taskId (or task-id delegation-machine-last-task)))))

(defun delegation-machine-accept (task-id)
  "Accept TASK-ID (default: the last task)."
  (interactive (list (read-string "Accept task: " delegation-machine-last-task)))
  (delegation-machine--task-command "accept" task-id))

(defun delegation-machine-reject (task-id)
  "Reject TASK-ID: undo only that task's edits."
  (interactive (list (read-string "Reject task: " delegation-machine-last-task)))
  (delegation-machine--task-command "reject" task-id))

(defun delegation-machine-cancel (task-id)
  "Cancel TASK-ID."
  (interactive (list (read-string "Cancel task: " delegation-machine-last-task)))
  (delegation-machine--task-command "cancel" task-id))

(defun delegation-machine-status ()
  "Show the swarm's status."
  (interactive)
  (let ((status (delegation-machine--execute "delegation.status" nil)))
    (with-current-buffer (get-buffer-create "*delegation-status*")
      (erase-buffer)
      (insert (format "%S" status))
      (display-buffer (current-buffer)))))

(provide 'delegation-machine)
;;; delegation-machine.el ends here
