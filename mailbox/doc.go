// Package mailbox stores and reads mail the way Postfix's delivery agents
// and Dovecot do: Maildir (with Maildir++ folders) and mbox, with the
// locking, fsync discipline, stable IMAP UIDs and change notification that
// the delivery agents (mda/local, mda/virtual) and the IMAP and POP3
// servers share. It imports no server.
//
// # Delivery (postfix-spec §8.2, §8.3)
//
// DeliverMaildir writes tmp/SECONDS.PpidQn.HOST (O_EXCL, 0600), fsyncs it,
// links it to new/SECONDS.VdevIinoMusec.HOST and fsyncs new/: Postfix's
// final names exactly (device and inode in hex, microseconds in decimal,
// one clock reading). Postfix's tmp/ name has only the pid, which is not
// unique in a process delivering from many goroutines, hence the Qn
// counter. The host name is used as is, like Postfix; a caller-supplied
// name with '/' or ':' (Postfix refuses such host names) is escaped as
// \057 and \072, the Maildir convention. Unlike Postfix, the directory is
// fsynced after the link, so an acknowledged message survives a crash;
// concurrent deliveries into one new/ share that fsync (each returns after
// one that began after its own link: dirsync.go).
//
// DeliverMbox appends "From SENDER  asctime", the message with mboxo
// ">From " quoting (only lines beginning "From "), a final newline if
// missing and the empty separator line; locks per mailbox_delivery_lock
// (dotlock first, then flock, then fcntl; Postfix's deliver_lock_attempts,
// deliver_lock_delay and stale_lock_time semantics, stale judged by
// ctime); truncates back to the original size on any error; fsyncs. The
// fcntl lock is an open-file-description lock on Linux (F_OFD_SETLK): it
// conflicts with the classic fcntl locks of Postfix, procmail and mutt but
// belongs to the descriptor, so goroutines exclude each other too; an
// in-process lock per path serialises this process's deliveries before
// any file lock is tried. If the file does not end with an empty line (a
// writer killed mid-message), the new message starts after one, so it is
// intact; Postfix does not do this. As Postfix's safe_open, a new mbox is
// created with O_EXCL (a file that appears meanwhile counts as existing
// and is never chowned to the recipient), an existing one with more than
// one hard link is refused (ErrUnsafeFile, "file has 2 hard links"), and
// MboxOptions.Check lets the agent judge the opened file (its owner)
// before anything is written.
//
// Postfix parameters honoured through the options: mailbox_size_limit and
// virtual_mailbox_limit (MboxOptions.SizeLimit: whole file; MaildirOptions.SizeLimit:
// per message file), mailbox_delivery_lock (Locks), deliver_lock_attempts,
// deliver_lock_delay, stale_lock_time. ErrTooLarge maps to 5.2.2 and
// ErrLocked to 4.2.0 in the agents. The Return-Path, X-Original-To and
// Delivered-To headers are the agent's job (mda.DeliveryHeaders): these
// functions store the bytes they are given (LF line ends).
//
// # Reading (for IMAP and POP3)
//
// A Store is a Maildir++ tree: the root Maildir is INBOX, folder
// "Archive.2024" lives in ROOT/.Archive.2024 (Separator '.'), with the
// "maildirfolder" marker file and a "subscriptions" file in the root.
// Folder names are checked by ValidFolderName (no '/', no empty level, no
// control characters, no wildcards) and FolderPath never leaves the root.
// CreateSpecialFolders makes Drafts, Sent, Trash and Junk (SpecialFolders
// gives their RFC 6154 attributes).
//
// A Maildir (OpenMaildir or Store.OpenFolder) lists messages with stable
// UIDs: UIDVALIDITY, the next UID and each message's UID live in the file
// postkit-uidlist beside new/ and cur/ (see UIDListName for the format),
// replaced atomically with fsync under a flock'ed lock file, so any number
// of sessions in any number of processes agree on UIDs. Sync moves new/
// to cur/ (adding ":2,"; not in ReadOnly mode), numbers unknown files in
// delivery order and reports New, Expunged and Flags changes since the
// previous Sync of that *Maildir. Flags are the ":2,DFPRST" letters;
// IMAP keywords are the letters a-z, named in Dovecot's dovecot-keywords
// file, which postkit reads and extends with Dovecot's own
// dotlock-and-rename protocol (SetKeywords), so both servers agree on them; letters
// postkit does not know are kept through flag changes.
// SetFlags renames, Expunge unlinks, Append writes with flags and internal
// date (the file's mtime), Copy writes a new file (fsynced), Move renames.
// A lost or corrupt uidlist starts a new, greater UIDVALIDITY. The
// Dovecot files (dovecot-uidlist...) are left alone: Dovecot and postkit
// may both serve one Maildir, each with its own UIDs.
//
// ScanMbox splits an mbox (a From_ line at the start or after an empty
// line begins a message; the empty line before the next one is not part of
// the message, as Python's mailbox module has it), with Status/X-Status
// flags; MboxMessage.Reader removes one level of ">From " quoting and Raw
// keeps it (as Dovecot and Python do). LockMbox takes the delivery locks
// for a reader that must hold the file still.
//
// # Servers running as root
//
// With UID and GID set (an IMAP or POP3 server running as root for a
// user), nothing in the user's Maildir is trusted: lock files are created
// with O_EXCL and only a file made here is chowned (an existing one is
// opened read-only, never through a symbolic link); message files, the
// uidlist, dovecot-keywords and subscriptions are read only as regular
// files reached without a symbolic link, so a link the user planted
// gives them neither another file's content nor its ownership; a Maildir
// or folder (or its new/, cur/, tmp/) reached through a symbolic link must
// lead to a directory of that UID, so a link to another user's Maildir is
// refused. Creating directories (Create, CreateFolder) still follows links
// in the path above them: a server should run with the user's file system
// rights where it can.
//
// # Change notification
//
// A Hub (DefaultHub unless an option names another) delivers Events per
// mailbox path to subscribers: deliveries announce EventNew, and the
// Maildir operations EventNew/EventExpunge/EventFlags with UIDs. Changes
// by other processes are detected with inotify on Linux (new/ and cur/ of a
// Maildir, or the mbox file; syscall package only, no new dependency) and
// by polling modification times every second elsewhere, when inotify
// cannot be used, or for a path inotify refuses (the max_user_watches
// limit); HubOptions.Watch selects. Events are hints: a reader
// that gets one calls Sync.
//
// # Not built
//
// Maildir++ quota (maildirsize) is not kept; mbox flags
// and expunges are not written back (mbox is read-only on the reading
// side); no mbox UIDs (X-UID/X-IMAPbase); folder renames are a sequence
// of directory renames, not atomic for a folder with children; the
// subscriptions file is rewritten without a lock; an mbox that is a
// symbolic link is refused (O_NOFOLLOW; Postfix allows root-owned links).
// Message.Size counts LF line ends: IMAP's RFC822.SIZE and POP3's sizes
// (CRLF) come from CRLFSize, or KeyVSize when a Dovecot delivery put
// ",W=" in the name. Unix only (Linux tested).
package mailbox
