// Package virtual is Postfix's virtual(8) delivery agent: mail for
// hosted domains goes to Maildirs and mbox files under one base
// directory, named by a table rather than by system accounts.
//
// For each recipient (spec §8.4):
//
//   - the address, folded to lower case, is looked up in
//     virtual_mailbox_maps with the keys user+ext@domain, user@domain
//     (recipient_delimiter) and @domain, each key in every table before
//     the next; not found bounces "5.1.1 unknown user: "addr"";
//   - virtual_uid_maps and virtual_gid_maps (often static:5000) give the
//     owner, the same way; a missing entry, a uid below
//     virtual_minimum_uid, a gid of 0 or a table error defers with
//     "4.3.5 mail system configuration error" and a warning;
//   - the mailbox is virtual_mailbox_base + "/" + the table's value: a
//     Maildir when the value ends in '/' (tmp/, new/, cur/ made on
//     demand), an mbox file otherwise (locked with virtual_mailbox_lock,
//     deliver_lock_attempts, deliver_lock_delay, stale_lock_time; its
//     directory must exist, as with Postfix);
//   - the message gets Return-Path, X-Original-To (with
//     enable_original_recipient) and Delivered-To in front, mbox files
//     also the From_ line, >From quoting and the blank line (package
//     mailbox writes the stores, with fsync);
//   - virtual_mailbox_limit bounds an mbox file, or each Maildir file;
//     going over bounces with 5.2.2.
//
// Results read as Postfix logs them: relay=virtual, "delivered to
// maildir", "delivered to mailbox", "maildir delivery failed: ...",
// "delivery failed to mailbox PATH: ...". TestMatchesPostfix delivers
// the same messages with a private Postfix 3.7 and with this package and
// compares the files byte for byte and the log texts.
//
// As in Postfix there is no Delivered-To loop check (virtual(8) does not
// forward, so it cannot loop), and Delivered-To keeps the recipient's
// case. virtual_mailbox_domains is not read here: deciding which domains
// reach this agent is routing's job (package route), as it is
// trivial-rewrite's in Postfix.
//
// Privileges: running as root, the agent stores with the file system
// rights of the table's uid and gid (mda.RunAs), as virtual(8) does after
// set_eugid: the directories it creates in or writes to must be writable
// by that uid (usually the base belongs to it), and files and Maildir
// directories are created owned by it. A link planted under the base
// leads nowhere that uid could not write anyway. An existing mbox with
// more than one hard link defers with 4.2.0 "file has 2 hard links". Not running as root, they
// belong to the process's user: the uid and gid maps are still checked,
// but nothing is chowned.
//
// Not built: the Maildir quota patches some distributions add to
// virtual(8) (they are not Postfix's); virtual_mailbox_base is not
// checked for ownership or mode.
package virtual
