// Package pickup is local mail submission: the maildrop directory that
// "postkit sendmail" writes into, and the Service that feeds what it finds
// to cleanup, as Postfix's postdrop(1) and pickup(8) do.
//
// Why a directory and not a socket: a local program that runs sendmail
// must be able to submit while the mail system is down, and get exit
// status 0 only when the message is safe on disk. So sendmail writes one
// file per message, durably (temporary name, fsync, rename, fsync of the
// directory; see Writer), and the service picks it up whenever it runs.
//
// # The maildrop
//
// The directory is $queue_directory/maildrop (ConfigFrom). Create makes it
// with DirMode: owned by the service's user, group-writable for the group
// of users allowed to submit, not listable by them, sticky (nobody removes
// another's file) and setgid (files get the directory's group, so the
// service, a member of that group, can read them). That replaces Postfix's
// set-gid postdrop helper: postkit needs no privileged program. An
// administrator who wants every local user to submit sets mode 1733
// instead; the files stay readable only by their owner and the group.
// Create also writes the marker file .postkit-maildrop: Postfix's maildrop
// has the same path and another format, so sendmail and the service
// refuse a directory without the marker (Check) rather than leave files
// there that Postfix's pickup would call corrupt, or the other way round.
//
// The file format (maildrop.go) is postkit's own: a first line naming the
// format, the content (CRLF lines), a text envelope (sender, recipients,
// sendmail -F full name, -t, rewriting context, arrival time, submitting
// uid and user, DSN options), and a fixed-size trailer with the content and
// envelope lengths and a SHA-256 of everything before it, so a torn or
// altered file is detected. FuzzDecode fuzzes the reader.
//
// # The service
//
// Service.Run scans the directory at start, whenever a datagram arrives on
// the unix datagram socket Dir/.pickup (sendmail sends one after each
// submission; see Wake), and every PollInterval (60s, as Postfix's master
// wakes pickup). Each file, oldest first, goes to cleanup.Open with
// Input.Local set (header rewriting in the local context) and the client
// localhost[127.0.0.1]; the service logs Postfix's line
// "QUEUEID: uid=UID from=<SENDER>" (the uid is the file owner's, which a
// user cannot forge, not the envelope's) and writes Postfix pickup's
// header first:
//
//	Received: by $myhostname ($mail_name, from userid UID)
//		id QUEUEID; DATE
//
// The maildrop file is removed only after cleanup's Commit returned nil.
// Then:
//   - a file that is not a valid maildrop file (torn, altered, not a
//     regular file, a symbolic link) is moved to Dir/corrupt and logged;
//   - a message cleanup rejects with a 5xx reply is moved to Dir/rejected
//     and logged. Postfix's pickup has cleanup bounce it to the sender;
//     postkit has no bounce service yet, so the file waits for the
//     administrator;
//   - a temporary failure (cleanup or its store failed, a 4xx reply) leaves
//     the file where it is; it is tried again after RetryDelay.
//
// Nothing is ever dropped unread. A message may be queued twice if the
// process dies between cleanup's Commit and the removal of the file, as
// with Postfix.
package pickup
