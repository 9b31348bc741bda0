package virtual_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/mda/virtual"
	"github.com/postkit-mail/postkit/queue"
)

func Example() {
	base, _ := os.MkdirTemp("", "vmail")
	defer os.RemoveAll(base)
	// The base belongs to the mailbox owner of virtual_uid_maps and
	// virtual_gid_maps: running as root, the agent stores with those
	// rights, as Postfix's virtual(8) does.
	os.Chown(base, 5000, 5000)
	main := "virtual_mailbox_base = " + base + "\n" +
		"virtual_mailbox_maps = inline:{ bob@example.net=example.net/bob/ }\n" +
		"virtual_uid_maps = static:5000\nvirtual_gid_maps = static:5000\n"
	cfg, err := config.Parse("main.cf", strings.NewReader(main))
	if err != nil {
		fmt.Println(err)
		return
	}
	agent, err := virtual.FromConfig(context.Background(), cfg, virtual.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	msg := "From: alice@example.org\r\nSubject: hello\r\n\r\nHi Bob\r\n"
	res := agent.Deliver(context.Background(), &queue.Delivery{
		QueueID:  "4Yxk3B5xWJzBq2",
		Envelope: &cleanup.Envelope{Sender: "alice@example.org"},
		Recipients: []queue.Recipient{
			{Addr: "bob@example.net"},
			{Addr: "carol@example.net"},
		},
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(msg)), nil },
	})
	for _, r := range res {
		fmt.Printf("relay=%s, dsn=%s, status=%s (%s)\n", r.Relay, r.DSN, r.Outcome, r.Reason)
	}
	files, _ := filepath.Glob(filepath.Join(base, "example.net/bob/new/*"))
	data, _ := os.ReadFile(files[0])
	fmt.Print(string(data))
	// Output:
	// relay=virtual, dsn=2.0.0, status=delivered (delivered to maildir)
	// relay=virtual, dsn=5.1.1, status=failed (unknown user: "carol@example.net")
	// Return-Path: <alice@example.org>
	// X-Original-To: bob@example.net
	// Delivered-To: bob@example.net
	// From: alice@example.org
	// Subject: hello
	//
	// Hi Bob
}
