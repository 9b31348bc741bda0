// Command mailserver is postkit's whole mail system in one program: SMTP
// in, the queue, delivery to Maildir or onwards by SMTP.
//
//	go run ./examples/mailserver
//
// starts, without root and without configuration:
//
//   - SMTP on 127.0.0.1:2525 (mail for demo@localhost, relaying only
//     for 127.0.0.0/8 and logged-in users);
//   - submission on 127.0.0.1:5870 (STARTTLS and AUTH required);
//   - submissions on 127.0.0.1:4650 (implicit TLS, AUTH required);
//   - the queue and delivery, everything under ./data.
//
// The first start creates a self-signed certificate (./data/tls) and the
// user demo with a random password, printed once (./data/passwd, a
// Dovecot passwd-file). Mail to demo@localhost lands in
// ./data/mail/demo/Maildir/new/.
//
// Flags:
//
//	-config DIR   read DIR/main.cf (Postfix's format, with the tables it
//	              names) and DIR/master.cf for the transports, instead of
//	              the built-in main.cf (see main.cf beside this file)
//	-data DIR     data directory (./data)
//	-smtp, -submission, -submissions ADDR:PORT
//	              listen addresses; "" turns a listener off, port 0 picks
//	              a free port (the bound addresses are printed)
//	-log FILE     log in Postfix's syslog format to FILE (default stderr)
//
// Signals: SIGTERM or SIGINT drains (no new connections, running sessions
// and deliveries finish or time out, the rest stays queued) and exits 0;
// SIGHUP rereads the configuration and its tables (see server.reload).
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
