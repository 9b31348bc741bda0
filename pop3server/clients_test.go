package pop3server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mailbox"
)

// clientMsgs are the messages the real clients fetch: dot lines, CRLF
// stored, no final newline, a long line, an empty body.
var clientMsgs = append(append([]string{}, testMsgs...),
	"Subject: long\n\n"+strings.Repeat("x", 5000)+"\n.\n..\n",
	"From: c@example.org\nSubject: empty body\n\n",
)

func writeMsgDir(t *testing.T, msgs []string) string {
	t.Helper()
	dir := t.TempDir()
	for i, m := range msgs {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d", i+1)), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func ports(t *testing.T, e *env) (host, port, tlsPort string) {
	t.Helper()
	host, port, _ = net.SplitHostPort(e.Addr)
	_, tlsPort, _ = net.SplitHostPort(e.TLSAddr)
	return
}

// TestPoplib runs Python's poplib against the server (testdata/poplib_client.py).
func TestPoplib(t *testing.T) {
	py := oracle.Require(t, "python3")
	for _, scenario := range []string{"stls", "authplain", "inuse", "badpass"} {
		t.Run(scenario, func(t *testing.T) {
			e := startServer(t, nil)
			e.deliver(t, "alice", clientMsgs...)
			host, port, tlsPort := ports(t, e)
			cmd := exec.Command(py, "testdata/poplib_client.py", scenario, host, port, tlsPort, "alice", "secret", writeMsgDir(t, clientMsgs))
			out, err := cmd.CombinedOutput()
			if err != nil || !bytes.HasSuffix(out, []byte("ok\n")) {
				t.Fatalf("poplib %s: %v\n%s\nserver log:\n%s", scenario, err, out, e.Log.String())
			}
		})
	}
}

// TestFetchmail retrieves the maildrop with fetchmail over STLS into an
// mbox (through an MDA script), deleting on the server as fetchmail does
// by default, then checks the mbox holds every message and the server's
// maildrop is empty.
func TestFetchmail(t *testing.T) {
	fm := oracle.Require(t, "fetchmail")
	e := startServer(t, nil)
	e.deliver(t, "alice", clientMsgs...)
	dir := t.TempDir()
	mbox := filepath.Join(dir, "mbox")
	mda := filepath.Join(dir, "mda.sh")
	// A From_ line, the message, an empty line: an mbox.
	script := fmt.Sprintf("#!/bin/sh\n{ echo \"From fetchmail  Thu Jan  1 00:00:00 1970\"; cat; echo; } >> %s\n", mbox)
	if err := os.WriteFile(mda, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	host, port, _ := ports(t, e)
	rc := filepath.Join(dir, "fetchmailrc")
	conf := fmt.Sprintf(`set no syslog
poll %s protocol POP3 port %s uidl
  user "alice" there with password "secret" is "root" here
  sslproto TLS1.2+ no sslcertck
  no rewrite
  mda "%s"
`, host, port, mda)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fm, "-f", rc, "--idfile", filepath.Join(dir, "ids"), "--nodetach", "-v", "--nokeep")
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s\nserver log:\n%s", err, out, e.Log.String())
	}
	if !bytes.Contains(out, []byte("STLS")) {
		t.Errorf("fetchmail did not use STLS:\n%s", out)
	}
	f, err := os.Open(mbox)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := mailbox.ScanMbox(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(clientMsgs) {
		t.Fatalf("mbox has %d messages, want %d\n%s", len(got), len(clientMsgs), out)
	}
	for i, m := range got {
		var b bytes.Buffer
		b.ReadFrom(m.Raw(f))
		// fetchmail prepends its Received: header and gives the MDA LF
		// line ends; the message itself must follow unchanged.
		want := strings.ReplaceAll(clientMsgs[i], "\r\n", "\n")
		if !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if !strings.Contains(want, "\n\n") {
			want += "\n" // fetchmail ends a header-only message with the empty line
		}
		if !strings.HasSuffix(b.String(), want) || !strings.HasPrefix(b.String(), "Received: ") {
			t.Errorf("message %d in the mbox:\n%q\nwant Received: + \n%q", i+1, b.String(), want)
		}
	}
	// fetchmail deleted what it fetched (DELE then QUIT).
	c := dial(t, e.Addr)
	c.login("alice", "secret")
	if got := c.cmd("STAT"); got != "+OK 0 0" {
		t.Errorf("STAT after fetchmail = %q", got)
	}
}
