// Package postkit is a toolkit for building mail systems in Go: the parts of
// Postfix and Dovecot as importable packages, composed into servers by short
// programs in examples/.
//
// # The parts
//
// Mail flows through the parts as it flows through Postfix:
//
//	MUA / remote MTA
//	    |
//	smtpserver   (smtpd: listeners, TLS, AUTH, limits; asks restrictions)
//	    v
//	cleanup      (header fix-ups, rewrite of addresses, header/body checks)
//	    v
//	queue        (durable store and scheduler: qmgr)
//	    v
//	mda          (local, virtual, pipe, smtp, lmtp delivery; bounces)
//	    v
//	mailbox      (Maildir and mbox)  <-  imapserver, pop3server
//
// Every part reads its settings and tables through the foundation:
//
//   - [github.com/postkit-mail/postkit/config]: main.cf as Postfix reads it
//     (logical lines, $name expansion, built-in defaults, typed getters,
//     postconf -e style editing).
//   - [github.com/postkit-mail/postkit/address]: RFC 5321/5322 addresses,
//     quoting as Postfix keeps it, IDNA, recipient_delimiter.
//   - [github.com/postkit-mail/postkit/maps]: the Map interface and every
//     Postfix table type (hash, btree, lmdb, dbm, cdb, texthash, inline,
//     static, unionmap, pipemap, fail, regexp, pcre, cidr, pgsql, mysql,
//     sqlite), the lookup-key order Postfix uses for addresses and clients,
//     and match lists (mydestination, mynetworks, ...).
//   - [github.com/postkit-mail/postkit/resolver]: DNS (MX, A/AAAA, PTR, TXT,
//     NS) with caching, retries and TCP fallback; resolver/dnstest is an
//     in-process DNS server for tests.
//
// The SMTP server asks [github.com/postkit-mail/postkit/restrictions] at
// every stage: the smtpd_*_restrictions evaluator, a pure function of a
// session snapshot to Postfix's reply, usable on its own to unit-test a
// mail policy.
//
// The command line, cmd/postkit, offers postmap, postalias, newaliases,
// postconf, sendmail, postqueue, postsuper, postcat and mailq with
// Postfix's flags, output and exit codes.
//
// [github.com/postkit-mail/postkit/smtpserver] is the SMTP and LMTP server
// (Postfix's smtpd and anvil), streaming accepted mail to a hand-off
// interface; [github.com/postkit-mail/postkit/auth] holds the user
// databases, password schemes and SASL mechanisms it authenticates with,
// and speaks Dovecot's auth protocol both ways.
//
// Behind the server's hand-off, [github.com/postkit-mail/postkit/cleanup]
// turns a received message into a queued one: it rewrites addresses with
// [github.com/postkit-mail/postkit/rewrite] (trivial-rewrite's canonical
// form, canonical, virtual and generic maps, masquerading), runs
// header_checks and body_checks with
// [github.com/postkit-mail/postkit/contentcheck], and milters and DKIM with
// [github.com/postkit-mail/postkit/milter] and
// [github.com/postkit-mail/postkit/dkim]. Local submission enters through
// [github.com/postkit-mail/postkit/pickup], which postkit sendmail writes
// into.
//
// [github.com/postkit-mail/postkit/queue] stores accepted mail durably and
// schedules its delivery (Postfix's queue directories and qmgr); package
// queue/control serves postqueue, postsuper and postcat on a running queue,
// and [github.com/postkit-mail/postkit/bounce] writes the delivery status
// notifications. The scheduler asks [github.com/postkit-mail/postkit/route]
// (trivial-rewrite's resolve and transport) where each recipient goes and
// hands the batches to [github.com/postkit-mail/postkit/mda], whose agents
// (mda/local, mda/virtual, mda/pipe, mda/smtp on
// [github.com/postkit-mail/postkit/smtpclient]) deliver into
// [github.com/postkit-mail/postkit/mailbox] stores or to the next MTA.
// [github.com/postkit-mail/postkit/imapserver] and
// [github.com/postkit-mail/postkit/pop3server] read those stores.
//
// examples/mailserver composes all of it into one program; examples/smarthost
// is a relay-only MTA and examples/policy unit-tests a mail policy.
package postkit
