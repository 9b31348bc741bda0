package mda_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/mda"
)

func TestCleanupResubmitter(t *testing.T) {
	store, err := cleanup.OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	cl, err := cleanup.New(cleanup.Config{Hostname: "mail.example.net", Location: time.UTC, Logger: quiet}, store)
	if err != nil {
		t.Fatal(err)
	}
	arrival := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	orig := &cleanup.Envelope{Sender: "alice@example.org", Arrival: arrival, Body: "8BITMIME", Ret: "HDRS", EnvID: "env1"}
	content := "From: alice@example.org\r\nTo: list@example.net\r\nSubject: fwd\r\nMessage-Id: <1@example.org>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n"
	rs := mda.NewCleanupResubmitter(cl)
	id, err := rs.Resubmit(context.Background(), "owner-list@example.net",
		[]cleanup.Recipient{{Addr: "bob@example.com", Original: "list@example.net"}, {Addr: "carol@example.com", Original: "list@example.net"}},
		orig, strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	env, data, err := store.Read(id)
	if err != nil {
		t.Fatalf("reading %s: %v", id, err)
	}
	if env.Sender != "owner-list@example.net" || len(env.Recipients) != 2 || env.Recipients[1].Addr != "carol@example.com" {
		t.Errorf("envelope %+v", env)
	}
	if !env.Arrival.Equal(arrival) || env.Body != "8BITMIME" || env.Ret != "HDRS" || env.EnvID != "env1" {
		t.Errorf("envelope lost the original's attributes: %+v", env)
	}
	if !strings.Contains(string(data), "\r\n\r\nhello\r\n") || !strings.Contains(string(data), "Subject: fwd\r\n") {
		t.Errorf("content:\n%s", data)
	}
	if _, err := rs.Resubmit(context.Background(), "", nil, orig, strings.NewReader(content)); err == nil {
		t.Error("no recipients: no error")
	}
}
