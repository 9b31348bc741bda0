package local_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/mda/local"
	"github.com/postkit-mail/postkit/queue"
)

// A local agent delivering to ~/Maildir/ for the users of a Go callback
// user database, as examples/mailserver does.
func Example() {
	dir, err := os.MkdirTemp("", "local-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	users := auth.UserDBFunc(func(ctx context.Context, name string) (auth.User, error) {
		if name != "demo" {
			return auth.User{}, auth.ErrUnknownUser
		}
		return auth.User{Name: "demo", UID: os.Getuid(), GID: os.Getgid(), Home: filepath.Join(dir, "demo")}, nil
	})
	os.MkdirAll(filepath.Join(dir, "demo"), 0o700)

	cfg, err := config.Parse("main.cf", strings.NewReader(
		"mydestination = localhost\nalias_maps =\nhome_mailbox = Maildir/\nrecipient_delimiter = +\n"))
	if err != nil {
		log.Fatal(err)
	}
	agent, err := local.FromConfig(context.Background(), cfg, local.Options{Users: users})
	if err != nil {
		log.Fatal(err)
	}
	defer agent.Close()

	content := "Subject: hello\r\n\r\nHi there.\r\n"
	env := &cleanup.Envelope{QueueID: "3F1A2B4C5D", Sender: "alice@example.org", Arrival: time.Now()}
	d := &queue.Delivery{
		QueueID: env.QueueID, Envelope: env, Transport: "local",
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil },
	}
	for i, rcpt := range []string{"demo+news@localhost", "nobody@localhost"} {
		r := cleanup.Recipient{Addr: rcpt, Original: rcpt}
		d.Recipients = append(d.Recipients, queue.Recipient{Index: i, Addr: rcpt, Recipient: r})
	}
	for i, res := range agent.Deliver(context.Background(), d) {
		fmt.Printf("to=<%s>, relay=%s, dsn=%s, status=%v (%s)\n", d.Recipients[i].Addr, res.Relay, res.DSN, res.Outcome, res.Reason)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "demo/Maildir/new/*"))
	data, _ := os.ReadFile(files[0])
	fmt.Print(string(data))
	// Output:
	// to=<demo+news@localhost>, relay=local, dsn=2.0.0, status=delivered (delivered to maildir)
	// to=<nobody@localhost>, relay=local, dsn=5.1.1, status=failed (unknown user: "nobody")
	// Return-Path: <alice@example.org>
	// X-Original-To: demo+news@localhost
	// Delivered-To: demo+news@localhost
	// Subject: hello
	//
	// Hi there.
}
