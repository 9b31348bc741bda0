// Package imapserver is postkit's IMAP server (the role of Dovecot's imap
// and imap-login): IMAP4rev1 and IMAP4rev2 over the Maildir++ stores of
// package mailbox, with users and passwords from package auth. The
// protocol engine is github.com/emersion/go-imap/v2's imapserver
// (v2.0.0-beta.8); this package is the backend behind it, plus the
// connection handling go-imap lacks.
//
// # Serving
//
// New(Options) builds a Server; Serve(ln) accepts plain connections
// (STARTTLS when Options.TLSConfig is set), ServeTLS(ln) implicit TLS
// (port 993). Close drops everything at once; Shutdown stops accepting and
// waits for the sessions to end. Before TLS the server announces
// LOGINDISABLED and refuses LOGIN and AUTHENTICATE unless
// AllowPlaintextAuth is set (Dovecot's disable_plaintext_auth = no).
//
// LOGIN and AUTHENTICATE go through auth.Authenticator: its Verify for
// LOGIN, and its server mechanisms for AUTHENTICATE (PLAIN, LOGIN, and
// CRAM-MD5 and SCRAM-SHA-256 when the password database can serve them;
// SASL-IR). Failed attempts are delayed by the Authenticator's
// FailureDelay (auth_failure_delay, 2 s). The user's UserDB entry gives the
// store: Mail "maildir:PATH" (Dovecot's mail_location, with ~ and %u, %n,
// %d), else HOME/Maildir, or Options.MailRoot. At login the store is made
// if missing, with Drafts, Sent, Trash and Junk (SPECIAL-USE).
//
// # Commands
//
// go-imap parses and answers; this package implements: LIST and LSUB
// (LIST-EXTENDED selection and return options, CHILDREN, SPECIAL-USE,
// LIST-STATUS; Maildir++ levels without a folder of their own show as
// \Noselect), STATUS (STATUS=SIZE), CREATE, DELETE, RENAME (INBOX moves
// its messages), SUBSCRIBE, UNSUBSCRIBE, SELECT, EXAMINE, FETCH of every
// item (FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY,
// BODYSTRUCTURE, BODY[section]<partial> and BODY.PEEK, RFC822.*, BINARY),
// STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE (UIDPLUS: APPENDUID, COPYUID),
// SEARCH with every key (ESEARCH RETURN options, SEARCHRES $; CHARSET
// US-ASCII and UTF-8), APPEND (APPENDLIMIT), IDLE, UNSELECT, CLOSE,
// NAMESPACE, ENABLE, UNAUTHENTICATE, LITERAL+.
//
// Mailbox names arrive in UTF-8 from go-imap and are stored in modified
// UTF-7 ("Caf&AOk-"), as Dovecot names Maildir++ directories; every name
// passes mailbox.ValidFolderName, so no name leaves the store.
//
// Messages are stored with LF line ends (Dovecot's mail_save_crlf = no)
// and served with CRLF; RFC822.SIZE is the CRLF size (read from a
// Dovecot ",W=" file name when there is one, else counted once and
// cached with the envelope, per file, for all sessions). BODYSTRUCTURE
// and BODY[section] come from this package's own MIME parser, which
// follows Dovecot where go-imap's helpers differ: a header line without a
// colon stays in the header instead of ending the parse, Content-Type is
// read token by token (type and subtype keep their case, parameters up
// to the first broken one are kept, the first of repeated Content-Type
// fields counts), a closing boundary may have trailing junk, a part
// restating the defaults is sent as "text" "plain" ("charset"
// "us-ascii"), a text part without a charset gets
// ("charset" "us-ascii"), part 1.1 of a single-part message is empty,
// the line end after a nested multipart's closing delimiter belongs to
// it, an unparsable Content-Type gives empty type and subtype, envelope
// subjects have their blank runs folded and an address field without a
// parsable address reads MISSING_MAILBOX@MISSING_DOMAIN. SEARCH HEADER,
// BODY and TEXT compare case-insensitively with the decoded text (RFC
// 2047 words, transfer encodings, charsets), address fields also in
// their parsed form; a message without a usable Date is dated at the
// epoch for SENTBEFORE/SENTSINCE, and only text parts are searched, as
// in Dovecot. Differential tests against Dovecot 2.3 check all of this on
// 150 SpamAssassin messages and 85 of enmime's broken-MIME files.
//
// Sessions that select the same mailbox share it: one open Maildir (its
// message list) and one subscription to the mailbox.Hub per mailbox
// (path, read-only or not, owner), whatever the number of sessions.
// Each session keeps only its own view (the sequence numbers its client
// knows, 12 bytes a message) and a wake-up channel. Changes reach the
// shared mailbox through the hub: an mda delivery or another session in
// this process notifies directly, another process (Dovecot, mutt,
// Postfix's local) through inotify; the mailbox syncs the Maildir once
// and wakes its sessions, which send EXISTS, FETCH FLAGS and, when the
// command allows it, EXPUNGE. During IDLE that happens at once; a change
// announced before a command ends shows in that command's answer.
// SELECT of a mailbox already open here takes its current list (kept
// current by the hub) instead of reading the directory again. \Recent
// goes to the first session that sees a message moved from new/. A new
// UIDVALIDITY (a lost uidlist) ends the session with BYE. A mailbox
// whose sessions are all in IDLE hibernates after IdleHibernate (30 s):
// it lets go of its message list, keeping the hub subscription, and
// reads the directory again at the next change or when a session
// leaves IDLE (the role of Dovecot's imap_hibernate_timeout).
//
// Memory: 5,000 connections logged in with INBOX (100 messages)
// selected and idling hold about 130 MB of heap and goroutine stacks
// with 10 connections per user, 180 MB with one per user (see
// docs/performance.md, Issue 8); the process's RSS adds the garbage
// collector's headroom, which GOMEMLIMIT bounds. Most of what remains is
// go-imap's: a 4 KiB read and a 4 KiB write buffer per connection and
// two goroutines (the connection's and the one IDLE starts).
//
// # Limits and logs
//
// Connections: MaxConnections in all (1000), MaxIPConnections per client
// address (100; refused with "* BYE" before the greeting),
// MaxUserIPConnections per user and address (Dovecot's
// mail_max_userip_connections, 10; refused at login with NO [LIMIT]).
// IdleTimeout (30 minutes) bounds the wait for a command, IDLE included;
// go-imap fixes the rest: 30 s for a command line and before login, 50
// KiB per command line, 4 KiB for a literal outside APPEND; AppendLimit
// (64 MiB) bounds APPEND.
//
// Logins and logouts are logged in Dovecot's words (at slog Info):
//
//	imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=4242, TLS, session=<...>
//	imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=..., lip=..., session=<...>
//	imap(alice)<4242><...>: Disconnected: Logged out in=341 out=2212
//
// mpid is this process's pid (there are no per-user processes); in= and
// out= count bytes on the wire (after TLS encryption, unlike Dovecot).
//
// # Not built
//
// ID, QUOTA, CONDSTORE and QRESYNC, COMPRESS, SORT, THREAD, METADATA,
// NOTIFY, MULTIAPPEND and CATENATE: go-imap's server does not parse them
// (an unknown command before login ends the connection, as go-imap
// defends against cross-protocol attacks, so clients that send ID before
// LOGIN must not insist). CONDSTORE would need MODSEQ kept per message in
// mailbox (the uidlist) and a go-imap parser for the CONDSTORE modifiers.
// Not like Dovecot: loopback clients are not
// exempt from LOGINDISABLED; the ENVELOPE date is re-formatted by go-imap (Dovecot
// sends the header's text) and BODYSTRUCTURE encodings are lower-cased
// by it; go-imap's address parser (ENVELOPE) gives up on an unencoded
// 8-bit display name or two addresses without a comma, where Dovecot
// keeps what it can; SEARCH CHARSET is US-ASCII or UTF-8 only (go-imap);
// \Recent is per session (set for messages that session
// moved from new/); CREATE-SPECIAL-USE; privileges are not dropped per
// user (files are created owned by the user's uid and gid when running as
// root). There are no Postfix parameters here: the settings are named
// after Dovecot's.
package imapserver
