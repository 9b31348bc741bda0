package cleanup_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/rewrite"
	"github.com/postkit-mail/postkit/smtpserver"
)

// A locally submitted message (as pickup hands it over) gets the missing
// headers and canonical addresses.
func ExampleCleanup_Open() {
	dir, _ := os.MkdirTemp("", "cleanup-example")
	defer os.RemoveAll(dir)
	store, err := cleanup.OpenDirStore(dir)
	if err != nil {
		log.Fatal(err)
	}
	rw, err := rewrite.New(rewrite.Defaults("example.com", "example.com"))
	if err != nil {
		log.Fatal(err)
	}
	c, err := cleanup.New(cleanup.Config{
		Hostname: "mx.example.com",
		Rewriter: rw,
		Location: time.UTC,
		Now:      func() time.Time { return time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC) },
		Logger:   slog.New(slog.DiscardHandler),
	}, store)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	m, err := c.Open(ctx, &cleanup.Input{
		Sender: "joe", FullName: "Joe Public", Local: true,
		Recipients: []cleanup.Recipient{{Addr: "ann"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprint(m, "To: ann\r\nSubject: lunch\r\n\r\nnoon?\r\n")
	if err := m.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	env, data, err := store.Read(m.ID())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(env.Sender, env.Recipients[0].Addr)
	fmt.Print(strings.ReplaceAll(strings.ReplaceAll(string(data), m.ID(), "QUEUEID"), "\r\n", "\n"))
	// Output:
	// joe@example.com ann@example.com
	// To: ann@example.com
	// Subject: lunch
	// Message-Id: <20261128040000.QUEUEID@mx.example.com>
	// Date: Sat, 28 Nov 2026 04:00:00 +0000 (UTC)
	// From: Joe Public <joe@example.com>
	//
	// noon?
}

// An SMTP server whose mail goes through cleanup into a directory, all
// configured from main.cf.
func ExampleCleanup_Handoff() {
	cfg, err := config.Parse("main.cf", strings.NewReader(`compatibility_level = 3.6
myhostname = mx.example.com
mydestination = example.com
header_checks = regexp:{{/^Subject: .*viagra/ REJECT}}
`))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "cleanup-example")
	defer os.RemoveAll(dir)
	store, err := cleanup.OpenDirStore(dir)
	if err != nil {
		log.Fatal(err)
	}
	c, err := cleanup.FromConfig(ctx, cfg, store)
	if err != nil {
		log.Fatal(err)
	}
	scfg, err := smtpserver.ConfigFrom(ctx, cfg, smtpserver.RoleSMTP, restrictions.Options{})
	if err != nil {
		log.Fatal(err)
	}
	scfg.Handoff = c.Handoff()
	srv, err := smtpserver.New(scfg)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Println("listening")
	// Output: listening
}
