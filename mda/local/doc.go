// Package local is postkit's local(8) delivery agent: it delivers mail for
// the domains in mydestination to aliases, .forward files, commands,
// files and the users' mailboxes (mbox or Maildir), following Postfix's
// decision sequence (postfix-spec §8.1, Postfix's local(8) and aliases(5)
// manual pages). An Agent is a queue.Deliverer for the "local" transport.
//
// For each recipient user+extension@domain: the Delivered-To loop check
// (5.4.6 "mail forwarding loop for ADDR"); the local part is folded to
// lower case and split at recipient_delimiter; alias_maps are searched for
// user+extension, then user; a user's .forward (forward_path); then the
// mailbox: mailbox_command_maps, mailbox_command, home_mailbox (a Maildir
// when it ends in '/'), mail_spool_directory (a Maildir when it ends in
// '/', else the mbox <spool>/<user>); and for a user the database does not
// know, luser_relay, the postmaster discard, or 5.1.1 `unknown user:
// "name"`. Each stored copy starts with Return-Path:, X-Original-To: and
// Delivered-To: (package mda's DeliveryHeaders); mbox and file copies
// get the From_ line, ">From " quoting and the blank line (package
// mailbox), command input the From_ line only.
//
// Alias and .forward values: addresses (delivered here when their domain
// is in mydestination, otherwise forwarded as a new message through
// Options.Resubmit, logged "forwarded as QUEUEID"), "|command" (run with
// /bin/sh -c, umask 077, Postfix's environment and PATH, within
// command_time_limit; exit codes map to DSNs as in pipe(8): 75 defers with
// 4.3.0, 67 bounces with 5.1.1, output "4.x.y text" decides by itself),
// "/file" (mbox append; "/dir/" is a Maildir), and ":include:/file".
// An alias that lists its own name delivers to the user of that name;
// owner-NAME makes owner-NAME@$myorigin the envelope sender of the
// expansion (every member is then resubmitted) and drops ENVID, RET, ORCPT
// and the original recipient; NOTIFY=SUCCESS is never propagated. Nesting
// deeper than 100 bounces with 5.4.6. allow_mail_to_commands and
// allow_mail_to_files name the sources (alias, forward, include) that may
// use commands and files (5.7.1 "mail to command is restricted").
//
// Results: one queue.Result per queue recipient, relay "local", with
// Postfix's texts: "delivered to mailbox", "delivered to maildir",
// "delivered to file: PATH", "delivered to command: CMD", "forwarded as
// ID", "discarded", and Postfix's failure texts ("cannot update mailbox
// PATH for user USER. error writing message: File too large", 5.2.2). When
// one recipient expands to several deliveries, a deferral of any of them
// defers the recipient (the whole expansion is tried again, as in Postfix),
// else a bounce bounces it; each part is logged through Options.Logger.
// The texts, files and modes are compared with a private Postfix 3.7 in
// the package's oracle tests.
//
// local_recipient_maps is not consulted here: it is the SMTP server's
// recipient validation (package restrictions); mail that reaches the agent
// for an unknown user bounces as described above.
//
// # Users and privileges
//
// Users come from an auth.UserDB (Options.Users), by default the
// system's /etc/passwd (SystemUsers). Running as root, deliveries use the
// recipient's uid and gid: mailboxes and Maildirs are created owned by the
// user, commands run as the user, and |command and /file entries of a
// root-owned alias table (or of root's .forward) run as default_privs, as in
// Postfix. Home mailboxes and Maildirs, /file destinations, .forward
// files and the :include: files of a .forward or of a user's alias table
// are opened and written with that identity's file system rights
// (mda.RunAs, Postfix's set_eugid and open_as), so a user's symbolic link
// or a file the user cannot read gives the user nothing; the spool mbox
// is opened by root after Postfix's checks (strict_mailbox_ownership, no
// symbolic link, no second hard link: "file has 2 hard links"). Not
// running as root, every delivery runs as the process's own user, whatever
// uid the user database gives (Postfix refuses to run that way; postkit
// allows it so that examples/mailserver works without privileges).
//
// # Parameters
//
// alias_maps, allow_mail_to_commands, allow_mail_to_files,
// command_execution_directory, command_expansion_filter,
// command_time_limit, default_privs, deliver_lock_attempts,
// deliver_lock_delay, double_bounce_sender, enable_original_recipient,
// expand_owner_alias, export_environment, forward_expansion_filter,
// forward_path, frozen_delivered_to, home_mailbox, local_command_shell,
// luser_relay, mail_spool_directory, mailbox_command,
// mailbox_command_maps, mailbox_delivery_lock, mailbox_size_limit (per file
// for Maildir, the whole file for mbox and /file), mydestination, myorigin,
// owner_request_special, prepend_delivered_header,
// propagate_unmatched_extensions (its alias, forward and include classes),
// recipient_delimiter, stale_lock_time, strict_mailbox_ownership.
//
// # Not built
//
// mailbox_transport(_maps) and fallback_transport(_maps) (FromConfig
// refuses a non-empty value); biff; the sendmail "\user"
// escape (it does not work in Postfix either); inet_interfaces address
// literals as local domains; duplicate_filter_limit (duplicates are
// tracked without limit within one delivery request); forwarded copies are
// grouped per queue recipient, where Postfix groups them per delivery
// request; local_command_shell is used as "SHELL -c COMMAND" without the
// umask wrapper. With command_execution_directory empty, commands run in
// the agent's working directory (Postfix's is its queue directory).
package local
