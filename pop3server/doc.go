// Package pop3server is postkit's POP3 server (the role of Dovecot's pop3
// and pop3-login): RFC 1939 over the user's Maildir INBOX (package
// mailbox), with logins checked by package auth.
//
// # Protocol
//
// Commands: USER, PASS, AUTH (RFC 5034: any mechanism auth.Authenticator
// offers, PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256; an initial response or
// "=", "*" to cancel, and the RFC 1734 listing for a bare AUTH), STLS (RFC
// 2595; input pipelined after it is discarded), CAPA (RFC 2449), QUIT; then
// STAT, LIST [n], UIDL [n], RETR, TOP n m, DELE, RSET, NOOP, QUIT. Implicit
// TLS (POP3S) with ServeTLS. Commands may be pipelined (PIPELINING):
// responses are flushed when no further input is waiting.
//
// CAPA lists what Dovecot 2.3 lists, in its order: CAPA, TOP, UIDL,
// RESP-CODES, PIPELINING, AUTH-RESP-CODE, then before login STLS (with
// TLSConfig, before TLS), USER (when plaintext logins are allowed) and
// SASL with the mechanisms allowed on the connection (a bare "SASL" when
// none is, as Dovecot says it); IMPLEMENTATION after login when
// Server.Implementation is set.
//
// The maildrop is the Maildir as listed at login (RFC 1939 8): mail that
// arrives later is seen by the next session. Sizes (STAT, LIST, "+OK n
// octets") count CRLF line ends, the bytes sent before byte-stuffing:
// a Maildir file has LF ends, so each bare LF counts two; the size is
// computed once per message file (or read from Dovecot's ",W=" key field)
// and cached. RETR and TOP send CRLF line ends, double a leading '.', and
// end an unterminated last line with CRLF, byte for byte as Dovecot does.
//
// UIDL is Dovecot's default pop3_uidl_format "%08Xu%08Xv": the message's
// IMAP UID and the Maildir's UIDVALIDITY (mailbox's postkit-uidlist), each
// as eight lower-case hex digits (Dovecot's %X prints lower case). It stays
// the same for as long as the IMAP UID does, so POP3 and IMAP clients
// (and a later switch between them) agree on what is new.
//
// DELE marks; the deletions happen only on QUIT (the UPDATE state, RFC 1939
// 6): a dropped connection, an idle timeout or Server.Close deletes
// nothing. RETR of a whole message marks it seen, as Dovecot does by default
// (pop3_no_flag_updates = no; Server.NoFlagUpdates turns it off): the 'S'
// flag is set when the session ends, on QUIT and, like Dovecot, also when
// the client just disconnects, except for messages marked deleted. RSET
// forgets both the deletions and the retrievals (Dovecot again). TOP does
// not mark seen.
//
// One session per mailbox (RFC 1939 8's exclusive-access lock, Dovecot's
// pop3_lock_session = yes): the session holds mailbox's LockSession; a
// second login gets "-ERR [IN-USE]" at once (Dovecot waits for the lock
// first). Deliveries and IMAP sessions are not kept out.
//
// # Logins and limits
//
// USER/PASS ("-ERR [AUTH] Plaintext authentication disallowed on
// non-secure (SSL/TLS) connections.") and the plaintext SASL mechanisms
// ("-ERR [AUTH] Plaintext authentication disabled.") are refused on a
// connection that is neither TLS nor from the server's
// own address, unless AllowPlaintextAuth is set: Dovecot's
// disable_plaintext_auth with its notion of "secured". Failed logins
// answer "-ERR [AUTH] Authentication failed." after auth's failure delay
// (auth_failure_delay, 2 s); after MaxAuthFailures (3) the connection is
// closed. A database that cannot answer gives the RFC 3206 SYS/TEMP
// response code. Limits:
// MaxIPConnections per client address (50), MaxUserIPConnections logged-in
// sessions per user and address (10, Dovecot's
// mail_max_userip_connections, "-ERR [IN-USE]"), MaxLineLength (2046
// bytes, about Dovecot's input buffer; longer lines end the connection),
// IdleTimeout (10 minutes, RFC 1939's autologout timer); 20 unknown
// commands in a row end the connection (Dovecot's limit).
//
// The user's Maildir comes from the userdb (auth.User): Mail
// "maildir:PATH" with ~, %u, %n and %d, or HOME/Maildir, created when
// missing and owned by the user's uid and gid (see DefaultMailboxPath). A
// user name that would put '/', "." or ".." into the path is refused.
//
// Logs follow Dovecot's lines, through slog at level Info:
//
//	pop3-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=1234, TLS, session=<...>
//	pop3(alice)<1234><...>: Disconnected: Logged out top=0/0, retr=1/1290, del=1/3, size=4500
//	pop3-login: Disconnected (auth failed, 3 attempts in 6 secs): user=<alice>, method=PLAIN, rip=..., lip=..., session=<...>
//
// with pop3_logout_format's default fields (TOP and RETR counts and bytes
// sent, messages deleted of messages at login, maildrop size at login) and
// "Connection closed" instead of "Logged out" when the client dropped the
// connection. mpid is the server's process id (there is no mail process).
//
// No Postfix parameter applies (POP3 is not Postfix's); the settings are
// named after Dovecot's, listed above with their defaults.
//
// # Checked against
//
// Dovecot 2.3's pop3 serving copies of the same Maildir (the test
// messages, enmime's broken-MIME files, 200 SpamAssassin messages): CAPA,
// STAT, LIST, UIDL (shape), RETR and TOP bytes, response codes, the
// plaintext refusals, Seen flags and deletions after QUIT, and the counters
// of the logout line are compared. Python's poplib, fetchmail and mutt
// (driven on a pseudo-terminal) read the maildrop in the tests.
//
// # Not built
//
// APOP (it needs plaintext passwords; Dovecot offers it only then);
// Dovecot's login proxying, pop3_reuse_xuidl, pop3_save_uidl, pop3_deleted_flag
// and pop3_uidl_format other than the default; mbox maildrops (only
// Maildir); SASL mechanisms needing a channel binding (SCRAM-*-PLUS);
// the RFC 2449 LOGIN-DELAY and EXPIRE capabilities; waiting for a locked
// maildrop (refused at once with [IN-USE]).
package pop3server
