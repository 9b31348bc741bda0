package cleanup_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
)

// e2eServer runs postkit's SMTP server on a loopback port with cleanup
// behind it, both built from mainCF, queuing into a DirStore.
func e2eServer(t *testing.T, mainCF string, files map[string]string) (string, *cleanup.DirStore) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mainCF = strings.ReplaceAll(mainCF, "{DIR}", dir)
	c, err := config.Parse("main.cf", strings.NewReader("compatibility_level = 3.6\nmyhostname = mx.example.com\nmydomain = example.com\n"+mainCF))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := cleanup.OpenDirStore(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cleanup.ConfigFromMain(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	cc.Logger = slog.New(slog.DiscardHandler)
	cl, err := cleanup.New(cc, st)
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := smtpserver.ConfigFrom(ctx, c, smtpserver.RoleSMTP, restrictions.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	scfg.Handoff = cl.Handoff()
	scfg.ErrorSleepTime = -1
	srv, err := smtpserver.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, smtpserver.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), st
}

func runClient(t *testing.T, stdin string, path string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("%s: %v\n%s", path, err, out.String())
	return "", -1
}

func onlyMessage(t *testing.T, st *cleanup.DirStore) (*cleanup.Envelope, string) {
	t.Helper()
	ids, err := st.List()
	if err != nil || len(ids) != 1 {
		t.Fatalf("queue holds %v (%v), want one message", ids, err)
	}
	env, data, err := st.Read(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	return env, string(data)
}

const e2eMain = `mynetworks = 127.0.0.0/8
mydestination = example.com
local_recipient_maps =
virtual_alias_maps = texthash:{DIR}/virtual
canonical_maps = texthash:{DIR}/canonical
header_checks = regexp:{DIR}/header_checks
body_checks = regexp:{DIR}/body_checks
always_bcc = archive@example.com
`

var e2eFiles = map[string]string{
	"virtual":       "sales@example.com  ann@example.com, bob@example.net\n",
	"canonical":     "joe@example.com  joe.public@example.com\n",
	"header_checks": "/^Subject: .*reject me/  REJECT 5.7.1 no thanks\n/^Subject: .*hold me/  HOLD review\n/^Subject: .*discard me/  DISCARD\n",
	"body_checks":   "/^tempfail here$/  REJECT 4.7.1 try later\n",
}

// TestSwaksThroughCleanup: swaks talks to the real SMTP server on a
// loopback port; the message goes through cleanup into the DirStore.
// 127.0.0.1 is this host, so header addresses are rewritten and missing
// headers added (local_header_rewrite_clients = permit_inet_interfaces).
func TestSwaksThroughCleanup(t *testing.T) {
	swaks := oracle.Require(t, "swaks")
	addr, st := e2eServer(t, e2eMain+"inet_interfaces = 127.0.0.1\n", e2eFiles)
	host, port, _ := net.SplitHostPort(addr)
	data := "From: Joe <joe@example.com>\r\nTo: sales@example.com\r\nSubject: quarterly\r\n\r\nnumbers\r\n.leading dot\r\n"
	out, code := runClient(t, data, swaks, "--server", host, "--port", port, "--helo", "client.example",
		"--from", "joe@example.com", "--to", "sales@example.com", "--data", "-", "--timeout", "10")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	env, msg := onlyMessage(t, st)
	if !strings.Contains(out, "250 2.0.0 Ok: queued as "+env.QueueID) {
		t.Errorf("swaks did not see the queue ID %s:\n%s", env.QueueID, out)
	}
	if env.Sender != "joe.public@example.com" {
		t.Errorf("sender %q", env.Sender)
	}
	var got []string
	for _, r := range env.Recipients {
		got = append(got, r.Addr+"<"+r.Original+">"+strings.Join(r.Notify, ","))
	}
	want := "ann@example.com<sales@example.com>,bob@example.net<sales@example.com>,archive@example.com<archive@example.com>NEVER"
	if strings.Join(got, ",") != want {
		t.Errorf("recipients %s\nwant %s", strings.Join(got, ","), want)
	}
	for _, w := range []string{
		"Received: from client.example (unknown [127.0.0.1])\r\n\tby mx.example.com (Postfix) with ESMTP id " + env.QueueID + "\r\n\tfor <sales@example.com>; ",
		"\r\nFrom: Joe <joe.public@example.com>\r\nTo: sales@example.com\r\nSubject: quarterly\r\n",
		"\r\nMessage-Id: <" + env.Arrival.UTC().Format("20060102150405") + "." + env.QueueID + "@mx.example.com>\r\n",
		"\r\nDate: ",
		"\r\n\r\nnumbers\r\n.leading dot\r\n",
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("stored message lacks %q:\n%s", w, msg)
		}
	}
	if env.MessageID == "" || env.Client.Addr != "127.0.0.1" || env.Client.Helo != "client.example" {
		t.Errorf("envelope %+v", env)
	}
}

// TestSmtplibVerdicts: Python's smtplib sends messages that the checks
// reject, defer, hold and discard; the client sees the replies and the
// store holds only what was accepted.
func TestSmtplibVerdicts(t *testing.T) {
	py := oracle.Require(t, "python3")
	// 127.0.0.2 is not this host's address: remote mail, no header
	// rewriting, no added headers.
	addr, st := e2eServer(t, e2eMain+"inet_interfaces = 127.0.0.2\n", e2eFiles)
	host, port, _ := net.SplitHostPort(addr)
	script := `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="py.example")
def send(subject, body="hello"):
    msg = "Subject: %s\r\nFrom: joe@example.com\r\n\r\n%s\r\n" % (subject, body)
    try:
        s.sendmail("joe@example.com", ["user@example.com"], msg)
        print(subject, "-> 250")
    except smtplib.SMTPDataError as e:
        print(subject, "->", e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPResponseException as e:
        print(subject, "->", e.smtp_code, e.smtp_error.decode())
send("please reject me")
send("tempfail", "tempfail here")
send("please hold me")
send("please discard me")
send("plain")
s.quit()
`
	out, code := runClient(t, "", py, "-c", script, host, port)
	if code != 0 {
		t.Fatalf("python exit %d:\n%s", code, out)
	}
	for _, w := range []string{
		"please reject me -> 550 5.7.1 no thanks",
		"tempfail -> 451 4.7.1 try later",
		"please hold me -> 250",
		"please discard me -> 250",
		"plain -> 250",
	} {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("client output lacks %q:\n%s", w, out)
		}
	}
	ids, _ := st.List()
	if len(ids) != 2 {
		t.Fatalf("queue holds %d messages, want 2 (hold and plain)", len(ids))
	}
	var held int
	for _, id := range ids {
		env, data, err := st.Read(id)
		if err != nil {
			t.Fatal(err)
		}
		if env.Hold {
			held++
			if !strings.Contains(string(data), "Subject: please hold me") {
				t.Errorf("held the wrong message:\n%s", data)
			}
		}
		if strings.Contains(string(data), "Message-Id:") || strings.Contains(string(data), "Date:") {
			t.Errorf("headers added to remote mail:\n%s", data)
		}
		if !strings.Contains(string(data), "From: joe@example.com\r\n") {
			t.Errorf("header address rewritten for remote mail:\n%s", data)
		}
	}
	if held != 1 {
		t.Errorf("%d held messages, want 1", held)
	}
	// Nothing is left from the refused and discarded messages.
	ents, _ := os.ReadDir(st.Dir)
	if len(ents) != 4 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("queue directory holds %v, want two messages and their envelopes", names)
	}
}
