// Command mailserver is postkit's whole mail system in one program: SMTP
// in, the queue, delivery to Maildir or onwards by SMTP, and IMAP and
// POP3 to read the mail.
//
//	go run ./examples/mailserver
//
// starts, without root and without configuration:
//
//   - SMTP on 127.0.0.1:2525 (mail for demo@localhost, relaying only
//     for 127.0.0.0/8 and logged-in users);
//   - submission on 127.0.0.1:5870 (STARTTLS and AUTH required);
//   - submissions on 127.0.0.1:4650 (implicit TLS, AUTH required);
//   - IMAP on 127.0.0.1:1430 (STARTTLS) and IMAPS on 127.0.0.1:9930
//     (implicit TLS);
//   - POP3 on 127.0.0.1:1100 (STLS) and POP3S on 127.0.0.1:9950
//     (implicit TLS);
//   - the queue and delivery, everything under ./data.
//
// The first start creates a self-signed certificate (./data/tls) and the
// user demo with a random password, printed once (./data/passwd, a
// Dovecot passwd-file). Mail to demo@localhost lands in
// ./data/mail/demo/Maildir/new/.
//
// IMAP and POP3 serve the same users as SMTP AUTH (the passwd-file) with
// the same certificate, over the Maildir the local agent delivers to: the
// user's mail field when the passwd-file has one (userdb_mail=maildir:...),
// else HOME/home_mailbox (HOME/Maildir/ with the built-in main.cf). A
// delivery reaches an IMAP client in IDLE at once (both use
// mailbox.DefaultHub). Passwords are accepted only over TLS: IMAP announces
// LOGINDISABLED before STARTTLS; POP3 also accepts them on a plain
// connection from the server's own address (loopback to loopback), as
// Dovecot's disable_plaintext_auth does. The logins and logouts are logged
// in Dovecot's words ("dovecot: imap-login: Login: user=<demo>, ...").
//
// Trying it (PASSWORD is the one printed at first start; --cacert and
// cafile= make curl and Python trust the self-signed certificate):
//
//	swaks -s 127.0.0.1:5870 -tls -au demo -ap PASSWORD -t demo@localhost
//	curl --cacert data/tls/cert.pem -u demo:PASSWORD 'imaps://localhost:9930/INBOX;UID=1'
//	curl --cacert data/tls/cert.pem -u demo:PASSWORD pop3s://localhost:9950/1
//	python3 -c 'import imaplib,ssl; m=imaplib.IMAP4_SSL("localhost",9930,ssl_context=ssl.create_default_context(cafile="data/tls/cert.pem")); m.login("demo","PASSWORD"); m.select(); print(m.fetch("1:*","(ENVELOPE)"))'
//
// Flags:
//
//	-config DIR   read DIR/main.cf (Postfix's format, with the tables it
//	              names) and DIR/master.cf for the transports, instead of
//	              the built-in main.cf (see main.cf beside this file)
//	-data DIR     data directory (./data)
//	-smtp, -submission, -submissions, -imap, -imaps, -pop3, -pop3s ADDR:PORT
//	              listen addresses; "" turns a listener off, port 0 picks
//	              a free port (the bound addresses are printed)
//	-log FILE     log in Postfix's syslog format (IMAP and POP3 in
//	              Dovecot's) to FILE (default stderr)
//
// Signals: SIGTERM or SIGINT drains (no new connections, running SMTP
// sessions and deliveries finish or time out, the rest stays queued; IMAP
// and POP3 connections are closed after a second, a POP3 session without
// QUIT deleting nothing) and exits 0; SIGHUP rereads the configuration,
// its tables and the certificate (see server.reload): new SMTP sessions,
// deliveries and IMAP and POP3 TLS handshakes use them, the sessions
// already open go on. Logins (SMTP AUTH, IMAP, POP3) see a changed
// passwd-file at once, as Dovecot does; mail to a new user is accepted
// after SIGHUP (the recipient table is derived from the passwd-file then).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.configDir, "config", "", "Postfix-style configuration directory (main.cf, master.cf); empty: built-in")
	flag.StringVar(&o.dataDir, "data", "data", "data directory: queue, mailboxes, users, certificate")
	flag.StringVar(&o.smtp, "smtp", "127.0.0.1:2525", "SMTP listen address (empty: off)")
	flag.StringVar(&o.submission, "submission", "127.0.0.1:5870", "submission (STARTTLS, AUTH) listen address (empty: off)")
	flag.StringVar(&o.submissions, "submissions", "127.0.0.1:4650", "submissions (implicit TLS, AUTH) listen address (empty: off)")
	flag.StringVar(&o.imap, "imap", "127.0.0.1:1430", "IMAP (STARTTLS) listen address (empty: off)")
	flag.StringVar(&o.imaps, "imaps", "127.0.0.1:9930", "IMAPS (implicit TLS) listen address (empty: off)")
	flag.StringVar(&o.pop3, "pop3", "127.0.0.1:1100", "POP3 (STLS) listen address (empty: off)")
	flag.StringVar(&o.pop3s, "pop3s", "127.0.0.1:9950", "POP3S (implicit TLS) listen address (empty: off)")
	flag.StringVar(&o.logFile, "log", "", "log file, Postfix's syslog format (empty: stderr)")
	flag.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long SIGTERM waits for sessions and deliveries")
	flag.Parse()

	logw, closeLog, err := openLog(o.logFile)
	if err != nil {
		fatal(err)
	}
	defer closeLog()
	srv, err := start(o, os.Stdout, logw)
	if err != nil {
		fatal(err)
	}
	fmt.Println("ready")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			if err := srv.reload(); err != nil {
				srv.log.Error("reload failed, keeping the running configuration: " + err.Error())
			}
			continue
		}
		srv.log.Info(fmt.Sprintf("terminating on signal %d", sig.(syscall.Signal)))
		ctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
		err := srv.stop(ctx)
		cancel()
		if err != nil {
			fatal(err)
		}
		return
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mailserver: fatal:", err)
	os.Exit(1)
}
