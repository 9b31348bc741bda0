// Command smarthost is a relay-only MTA for a LAN: printers, scanners,
// cron jobs and appliances hand it their mail over plain SMTP, and it
// queues the mail durably and forwards all of it to one relay host (the
// provider's submission port) with SMTP AUTH over mandatory TLS, retrying
// while the relay host is down and returning bounces to the sender.
//
//	go run ./examples/smarthost -relayhost '[smtp.example.com]:587' \
//	    -sasl-user me@example.com -sasl-password secret \
//	    -listen 0.0.0.0:25 -mynetworks '127.0.0.0/8 192.168.1.0/24'
//
// The configuration is main.cf beside this file (Postfix's parameters:
// relayhost, smtp_sasl_password_maps, smtp_tls_security_level = encrypt,
// smtpd_relay_restrictions = permit_mynetworks, reject); -config DIR reads
// a Postfix main.cf instead. The queue and the password table live in
// -data (./smarthost-data). SIGTERM drains and exits.
package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/bounce"
	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/mda/smtp"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/route"
	"github.com/postkit-mail/postkit/smtpserver"
)

//go:embed main.cf
var builtinMainCF string

func main() {
	configDir := flag.String("config", "", "read DIR/main.cf instead of the built-in one")
	dataDir := flag.String("data", "smarthost-data", "queue and password table")
	listen := flag.String("listen", "127.0.0.1:2526", "SMTP listen address for the LAN")
	relayhost := flag.String("relayhost", "", "where all mail goes, e.g. [smtp.example.com]:587 (required without -config)")
	user := flag.String("sasl-user", "", "login at the relay host")
	password := flag.String("sasl-password", "", "password at the relay host (or $SMARTHOST_PASSWORD)")
	mynetworks := flag.String("mynetworks", "127.0.0.0/8 [::1]/128", "clients allowed to send")
	hostname := flag.String("hostname", "", "myhostname (default: the system's)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fatal := func(err error) { log.Error("fatal: " + err.Error()); os.Exit(1) }

	data, err := filepath.Abs(*dataDir)
	if err != nil {
		fatal(err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		fatal(err)
	}
	var cfg *config.Config
	if *configDir != "" {
		cfg, err = config.Load(*configDir)
	} else {
		if *relayhost == "" {
			fatal(fmt.Errorf("-relayhost is required"))
		}
		cfg, err = config.Parse("(built-in main.cf)", strings.NewReader(strings.ReplaceAll(builtinMainCF, "@DATA@", data)))
		if err == nil {
			cfg.Set("relayhost", *relayhost)
			cfg.Set("mynetworks", *mynetworks)
			if *hostname != "" {
				cfg.Set("myhostname", *hostname)
			}
			pw := *password
			if pw == "" {
				pw = os.Getenv("SMARTHOST_PASSWORD")
			}
			// The password table, Postfix's sasl_passwd format.
			err = os.WriteFile(filepath.Join(data, "sasl_passwd"), []byte(*relayhost+" "+*user+":"+pw+"\n"), 0o600)
		}
	}
	if err != nil {
		fatal(err)
	}
	cfg.Set("queue_directory", filepath.Join(data, "queue"))

	// The pipeline: SMTP server -> cleanup -> queue -> scheduler ->
	// routing (everything to relayhost) -> smtp(8) client.
	ctx := context.Background()
	q, err := queue.Open(filepath.Join(data, "queue"), queue.Options{Logger: log})
	check(err, fatal)
	cl, err := cleanup.FromConfig(ctx, cfg, q)
	check(err, fatal)
	rt, err := route.FromConfig(ctx, cfg, route.Options{Logger: log})
	check(err, fatal)
	relay, err := smtp.FromConfig(ctx, cfg, "smtp", smtp.Options{Logger: log})
	check(err, fatal)
	agents := map[string]queue.Deliverer{"smtp": relay, "relay": relay, "error": mda.Error(), "discard": mda.Discard(), "retry": mda.Retry()}
	settings, err := bounce.FromConfig(cfg)
	check(err, fatal)
	notifier := bounce.NewNotifier(settings, bounce.NewCleanupSubmitter(cl))
	sc, err := queue.SchedulerConfigFromMain(cfg, "smtp", "relay")
	check(err, fatal)
	sc.Deliverer, sc.Router, sc.Notifier, sc.Logger = &mda.Dispatcher{Agents: agents, Logger: log}, rt, notifier, log
	sched, err := queue.NewScheduler(q, sc)
	check(err, fatal)
	sched.Start()

	smtpd, err := smtpserver.ConfigFrom(ctx, cfg, smtpserver.RoleSMTP, restrictions.Options{Logger: log})
	check(err, fatal)
	smtpd.Handoff, smtpd.Logger = cl.Handoff(), log
	srv, err := smtpserver.New(smtpd)
	check(err, fatal)
	ln, err := net.Listen("tcp", *listen)
	check(err, fatal)
	fmt.Printf("listening smtp %s, relaying to %s\n", ln.Addr(), cfg.Get("relayhost"))
	go srv.Serve(ln)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	sched.Stop(ctx) // unfinished mail stays queued for the next start
	relay.Close()
	rt.Close()
	check(q.Close(), fatal)
}

func check(err error, fatal func(error)) {
	if err != nil {
		fatal(err)
	}
}
