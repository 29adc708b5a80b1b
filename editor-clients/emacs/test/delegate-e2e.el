;;; delegate-e2e.el --- headless eglot run against the real server  -*- lexical-binding: t; -*-

;;; Commentary:
;; Driven by tests/e2e/test_emacs.py: `emacs --batch -Q -l test/delegate-e2e.el'.  Opens a
;; sample file with eglot and delegation-machine.el, waits for a semgrep diagnostic,
;; delegates the finding's line with `delegation-machine-delegate', waits for the
;; workspace/applyEdit to change the buffer and for `verified', then accepts.  Every wait
;; is `accept-process-output' on the server with a deadline.  Results go to
;; $DELEGATION_RESULT as JSON.

;;; Code:

(require 'cl-lib)
(require 'json)
;; Debian's elpa-* packages (eglot and its dependencies) are not on `load-path' under -Q.
(dolist (dir (and (file-directory-p "/usr/share/emacs/site-lisp/elpa")
                  (directory-files "/usr/share/emacs/site-lisp/elpa" t "^[a-z]")))
  (add-to-list 'load-path dir))
(require 'eglot)
(load (expand-file-name "../delegation-machine.el"
                        (file-name-directory (or load-file-name buffer-file-name))))

(defvar e2e-result (list :steps nil :updates nil))
(defvar e2e-diagnostics nil "The latest publishDiagnostics params, per URI.")
(defvar e2e-step-s (/ (string-to-number (or (getenv "DELEGATION_STEP_MS") "60000")) 1000.0))

(defun e2e-put (key value) (setq e2e-result (plist-put e2e-result key value)))

(cl-defmethod eglot-handle-notification :before
  (_server (_method (eql textDocument/publishDiagnostics)) &key uri diagnostics &allow-other-keys)
  (setf (alist-get uri e2e-diagnostics nil nil #'equal) diagnostics))

(advice-add 'delegation-machine--report :before
            (lambda (task-id state _message)
              (e2e-put :updates (append (plist-get e2e-result :updates)
                                        (list (list :taskId task-id :state state))))))

(defun e2e-wait (what condition)
  "Process server output until CONDITION holds; fail after the step deadline."
  (let ((deadline (+ (float-time) e2e-step-s)))
    (while (and (not (funcall condition)) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (unless (funcall condition)
      (error "Timed out after %ss waiting for %s" e2e-step-s what))
    (e2e-put :steps (append (plist-get e2e-result :steps) (list what)))))

(defun e2e-ours (uri)
  (cl-remove-if-not (lambda (d) (equal (plist-get d :source) "delegation-machine"))
                    (append (alist-get uri e2e-diagnostics nil nil #'equal) nil)))

(defun e2e-semgrep-p (d)
  (let ((data (plist-get d :data)))
    (and (string-prefix-p "semgrep:" (format "%s" (plist-get d :code)))
         (not (eq (plist-get data :fixAvailable) :json-false)))))

(defun e2e-count (uri code)
  (cl-count-if (lambda (d) (equal (plist-get d :code) code)) (e2e-ours uri)))

(defun e2e-state (task-id)
  (plist-get (car (last (cl-remove-if-not (lambda (u) (equal (plist-get u :taskId) task-id))
                                          (plist-get e2e-result :updates))))
             :state))

(defun e2e-run ()
  (setq delegation-machine-command (append (json-read-from-string (getenv "DELEGATION_SERVER_CMD")) nil)
        delegation-machine-settings '(:delegation (:agents 2))
        ;; eglot asks before applying a server's edit by default; agents' edits should land.
        eglot-confirm-server-initiated-edits nil)
  (delegation-machine-eglot-setup)
  (find-file (getenv "DELEGATION_TEST_FILE"))
  (python-mode)
  (transient-mark-mode 1)
  (let* ((uri (concat "file://" (expand-file-name (buffer-file-name))))
         (buffer (current-buffer)))
    (call-interactively #'eglot)
    (e2e-wait "eglot to connect" (lambda () (eglot-current-server)))
    (e2e-wait "a fixable semgrep diagnostic"
              (lambda () (cl-some #'e2e-semgrep-p (e2e-ours uri))))
    (let* ((finding (cl-find-if #'e2e-semgrep-p (e2e-ours uri)))
           (code (plist-get finding :code))
           (line (plist-get (plist-get (plist-get finding :range) :start) :line))
           (before (buffer-string))
           (line-text (save-excursion (goto-char (point-min)) (forward-line line)
                                      (buffer-substring-no-properties (line-beginning-position)
                                                                      (line-end-position))))
           (count-before (e2e-count uri code))
           (tick (buffer-modified-tick)))
      (e2e-put :code code)
      (e2e-put :count_before count-before)
      (e2e-put :finding_line_before line-text)
      (e2e-put :buffer_before before)
      (goto-char (point-min))
      (forward-line line)
      (set-mark (line-beginning-position))
      (goto-char (line-end-position))
      (activate-mark)
      (delegation-machine-delegate "fix")
      (let ((task-id delegation-machine-last-task))
        (e2e-put :task_id task-id)
        (e2e-wait "the task to finish"
                  (lambda () (member (e2e-state task-id) '("verified" "failed" "escalated" "cancelled" "no-change" "held"))))
        (e2e-put :final_state (e2e-state task-id))
        (unless (equal (e2e-state task-id) "verified")
          (error "Task ended %s" (e2e-state task-id)))
        (e2e-wait "workspace/applyEdit to change the buffer"
                  (lambda () (> (buffer-modified-tick) tick)))
        (e2e-put :buffer_after (with-current-buffer buffer (buffer-string)))
        (e2e-wait "diagnostics republished without the finding"
                  (lambda () (< (e2e-count uri code) count-before)))
        (e2e-put :count_after (e2e-count uri code))
        (delegation-machine-accept task-id)
        (e2e-wait "accepted" (lambda () (equal (e2e-state task-id) "accepted")))
        (e2e-put :buffer_final (with-current-buffer buffer (buffer-string)))))))

(let ((ok t))
  (condition-case err
      (e2e-run)
    (error (setq ok nil)
           (e2e-put :error (error-message-string err))))
  (e2e-put :ok (if ok t :json-false))
  ;; Lists of plists would encode ambiguously: make them arrays of objects.
  (e2e-put :updates (vconcat (mapcar (lambda (u) `((taskId . ,(plist-get u :taskId))
                                                   (state . ,(plist-get u :state))))
                                     (plist-get e2e-result :updates))))
  (e2e-put :steps (vconcat (plist-get e2e-result :steps)))
  (with-temp-file (getenv "DELEGATION_RESULT")
    (insert (json-encode e2e-result)))
  (ignore-errors (eglot-shutdown (eglot-current-server)))
  (kill-emacs (if ok 0 1)))

;;; delegate-e2e.el ends here
