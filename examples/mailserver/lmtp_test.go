package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/smtpserver"
)

// The lmtp transport: transport_maps sends a domain to an LMTP server on
// a unix socket (here postkit's own smtpserver in the LMTP role, storing
// what it accepts in a cleanup.DirStore), and the message arrives with
// its envelope; the log line names the socket as the relay.
func TestLMTPTransport(t *testing.T) {
	dir := t.TempDir()
	sock, err := os.MkdirTemp("", "lmtp") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	sockPath := filepath.Join(sock, "lmtp")
	store, err := cleanup.OpenDirStore(filepath.Join(dir, "lmtp-store"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cleanup.New(cleanup.Config{Hostname: "lmtp.example"}, store)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtpserver.New(smtpserver.Config{Hostname: "lmtp.example", Role: smtpserver.RoleLMTP, Handoff: cl.Handoff()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	conf := writeConfig(t, dir, "")
	write(t, filepath.Join(conf, "transport"), "lists.test lmtp:unix:"+sockPath+"\n")
	p := startServer(t, dir, "-config", conf)
	swaks(t, "-s", p.addrs["smtp"], "-f", "demo@localhost", "-t", "team@lists.test", "--header", "Subject: over lmtp")

	deadline := time.Now().Add(20 * time.Second)
	var ids []string
	for len(ids) == 0 && time.Now().Before(deadline) {
		ids, _ = store.List()
		time.Sleep(50 * time.Millisecond)
	}
	if len(ids) != 1 {
		t.Fatalf("the LMTP server stored %d messages, want 1", len(ids))
	}
	env, content, err := store.Read(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if env.Sender != "demo@localhost" || len(env.Recipients) != 1 || env.Recipients[0].Addr != "team@lists.test" ||
		!strings.Contains(string(content), "Subject: over lmtp") {
		t.Errorf("the LMTP server got sender %q, recipients %+v, content:\n%s", env.Sender, env.Recipients, content)
	}
	log := waitLog(t, p.logPath, "to=<team@lists.test>")
	if !regexp.MustCompile(`postfix/lmtp\[\d+\]: \w+: to=<team@lists\.test>, relay=\S+, .*dsn=2\.0\.0, status=sent \(`).MatchString(log) {
		t.Errorf("no lmtp delivery line:\n%s", log)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}
