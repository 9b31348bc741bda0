package pop3server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/corpus"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mailbox"
)

// exchange is one command and what the server answered.
type exchange struct {
	cmd, status, body string
	multi             bool
}

// transcript runs the same conversation against a server.
func transcript(t *testing.T, addr string, n int) []exchange {
	t.Helper()
	c := dial(t, addr)
	var out []exchange
	do := func(cmd string, multi bool) {
		st := c.cmd("%s", cmd)
		ex := exchange{cmd: cmd, status: st}
		if multi && strings.HasPrefix(st, "+OK") {
			ex.body, ex.multi = c.multi(), true
		}
		out = append(out, ex)
	}
	do("CAPA", true)
	do("USER alice", false)
	do("PASS secret", false)
	do("CAPA", true)
	do("STAT", false)
	do("LIST", true)
	do("UIDL", true)
	for i := 1; i <= n; i++ {
		do(fmt.Sprintf("LIST %d", i), false)
		do(fmt.Sprintf("UIDL %d", i), false)
		do(fmt.Sprintf("RETR %d", i), true)
		do(fmt.Sprintf("TOP %d 0", i), true)
		do(fmt.Sprintf("TOP %d 3", i), true)
	}
	for _, cmd := range []string{"LIST 0", fmt.Sprintf("LIST %d", n+1), "RETR abc", fmt.Sprintf("TOP %d 0", n+1),
		"DELE 1", "RETR 1", "DELE 1", "LIST 1", "TOP 1 1", "STAT", "LIST", "RSET", "STAT", "NOOP", "FOO", "RETR 3", "DELE 2"} {
		do(cmd, cmd == "LIST" || strings.HasPrefix(cmd, "RETR") || strings.HasPrefix(cmd, "TOP"))
	}
	do("QUIT", false)
	return out
}

var (
	respCode = regexp.MustCompile(`^-ERR (\[[A-Z/-]+\])`)
	uidlRE   = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// compareTranscripts checks what must agree between postkit and Dovecot:
// multi-line bodies byte for byte (UIDL by shape: the values are each
// server's own UIDs), +OK/-ERR and response codes everywhere, and the
// whole status line of STAT, LIST n and RETR (sizes).
func compareTranscripts(t *testing.T, dove, pk []exchange) {
	t.Helper()
	if len(dove) != len(pk) {
		t.Fatalf("transcripts differ in length: %d vs %d", len(dove), len(pk))
	}
	for i := range dove {
		d, p := dove[i], pk[i]
		dok, pok := strings.HasPrefix(d.status, "+OK"), strings.HasPrefix(p.status, "+OK")
		if dok != pok {
			t.Errorf("%s: dovecot %q, postkit %q", d.cmd, d.status, p.status)
			continue
		}
		if dm, pm := respCode.FindStringSubmatch(d.status), respCode.FindStringSubmatch(p.status); fmt.Sprint(dm) != fmt.Sprint(pm) && (dm != nil || pm != nil) {
			if len(dm) != len(pm) || dm[1] != pm[1] {
				t.Errorf("%s: response codes differ: dovecot %q, postkit %q", d.cmd, d.status, p.status)
			}
		}
		verb := strings.Fields(d.cmd)[0]
		if dok && (verb == "STAT" || verb == "RETR" || verb == "LIST" && len(strings.Fields(d.cmd)) == 2) && d.status != p.status {
			t.Errorf("%s: dovecot %q, postkit %q", d.cmd, d.status, p.status)
		}
		if verb == "UIDL" {
			dl, pl := strings.Split(d.body, "\r\n"), strings.Split(p.body, "\r\n")
			if d.multi && len(dl) != len(pl) {
				t.Errorf("UIDL: %d lines vs %d", len(dl), len(pl))
			}
			for _, l := range append(append(pl, dl...), strings.TrimPrefix(d.status, "+OK "), strings.TrimPrefix(p.status, "+OK ")) {
				if f := strings.Fields(l); len(f) == 2 && !uidlRE.MatchString(f[1]) {
					t.Errorf("UIDL value %q is not Dovecot's %%08Xu%%08Xv shape", l)
				}
			}
			continue
		}
		if d.body != p.body {
			t.Errorf("%s body differs:\ndovecot %q\npostkit %q", d.cmd, trunc(d.body), trunc(p.body))
		}
	}
}

func trunc(s string) string {
	if len(s) > 600 {
		return s[:600] + "..."
	}
	return s
}

// TestDovecotDifferential serves the same Maildir content from Dovecot
// 2.3's pop3 and from postkit and compares the conversations.
func TestDovecotDifferential(t *testing.T) {
	msgs := append([]string{}, clientMsgs...)
	for _, p := range corpus.BrokenMIME(t) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(b))
	}
	diffMaildrop(t, msgs)
}

// TestDovecotDifferentialSpamAssassin does the same with 200 messages of
// the SpamAssassin corpus (every 30th file), stored as delivered.
func TestDovecotDifferentialSpamAssassin(t *testing.T) {
	files := corpus.SpamAssassin(t)
	var msgs []string
	for i := 0; i < len(files) && len(msgs) < 200; i += 30 {
		b := corpus.Message(t, files[i])
		msgs = append(msgs, strings.ReplaceAll(string(b), "\r\n", "\n"))
	}
	diffMaildrop(t, msgs)
}

func diffMaildrop(t *testing.T, msgs []string) {
	e := startServer(t, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.Auth.AuthMechanisms = []string{"PLAIN", "LOGIN"}
	})
	// Distinct delivery seconds: both servers number new mail in the
	// order of the times in the file names.
	base := time.Now().Add(-time.Duration(len(msgs)+10) * time.Second)
	for i, m := range msgs {
		if _, err := mailbox.DeliverMaildir(context.Background(), e.maildir("alice"), strings.NewReader(m),
			mailbox.MaildirOptions{Create: true, Hub: e.Srv.Hub, Time: base.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	mailRoot, err := os.MkdirTemp("", "dvpmail")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(mailRoot) })
	os.Chmod(mailRoot, 0o755)
	dmail := filepath.Join(mailRoot, "alice")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dmail, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(filepath.Join(e.maildir("alice"), "new"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(e.maildir("alice"), "new", ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dmail, "new", ent.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := oracle.StartDovecotPOP3(t, oracle.DovecotPOP3Options{
		Passwd:       "alice:{PLAIN}secret\n",
		MailLocation: "maildir:" + mailRoot + "/%u",
		CertFile:     e.CertFile, KeyFile: e.KeyFile,
		LockSession: true,
	})
	d.Chown(t, mailRoot)

	dove := transcript(t, d.Addr, len(msgs))
	pk := transcript(t, e.Addr, len(msgs))
	compareTranscripts(t, dove, pk)
	// The logout lines count the same things: TOP and RETR commands and
	// bytes sent, deletions, messages and size at login.
	logout := regexp.MustCompile(`Disconnected: Logged out (top=\d+/\d+, retr=\d+/\d+, del=\d+/\d+, size=\d+)`)
	var dl, pl []string
	waitFor(t, "logout lines", func() bool {
		dl, pl = logout.FindStringSubmatch(d.Log(t)), logout.FindStringSubmatch(e.Log.String())
		return dl != nil && pl != nil
	})
	t.Logf("logout line (both): %s", pl[1])
	if dl[1] != pl[1] {
		t.Errorf("logout line: dovecot %q, postkit %q", dl[1], pl[1])
	}
	t.Logf("%d exchanges compared; dovecot CAPA %q, RETR 2 %q", len(dove), dove[0].body, trunc(dove[9+5].body))

	// Both applied DELE 2 at QUIT, and marked seen only message 3, the
	// one RETR sent after RSET (which forgets the earlier retrievals).
	for _, addr := range []string{d.Addr, e.Addr} {
		c := dial(t, addr)
		c.login("alice", "secret")
		c.cmd("LIST")
		if got := c.multi(); strings.Count(got, "\r\n") != len(msgs)-1 || strings.HasPrefix(got, "1 ") == false {
			t.Errorf("%s: LIST after DELE 2 + QUIT: %q", addr, trunc(got))
		}
		c.cmd("QUIT")
	}
	seen := func(dir string) (n int) {
		for _, sub := range []string{"cur", "new"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range ents {
				if _, flags, ok := strings.Cut(e.Name(), ":2,"); ok && strings.Contains(flags, "S") {
					n++
				}
			}
		}
		return n
	}
	if a, b := seen(dmail), seen(e.maildir("alice")); a != 1 || b != 1 {
		t.Errorf("seen messages: dovecot %d, postkit %d, want 1 each", a, b)
	}
	if t.Failed() {
		t.Logf("dovecot log:\n%s", d.Log(t))
	}
}

// TestDovecotPlaintextRefusal compares the conversation of a client at
// another address (127.0.0.2, so not "secured") with Dovecot's
// disable_plaintext_auth = yes and postkit's default: CAPA before and
// after STLS, and the refusals of USER, PASS and AUTH PLAIN.
func TestDovecotPlaintextRefusal(t *testing.T) {
	e := startServer(t, func(s *Server) { s.Auth.AuthMechanisms = []string{"PLAIN", "LOGIN"} })
	mailRoot, err := os.MkdirTemp("", "dvpmail")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(mailRoot) })
	os.Chmod(mailRoot, 0o755)
	d := oracle.StartDovecotPOP3(t, oracle.DovecotPOP3Options{
		Passwd:       "alice:{PLAIN}secret\n",
		MailLocation: "maildir:" + mailRoot + "/%u",
		CertFile:     e.CertFile, KeyFile: e.KeyFile,
		DisablePlaintextAuth: true,
	})
	d.Chown(t, mailRoot)
	run := func(addr string) []exchange {
		c := dialFrom(t, "127.0.0.2", addr)
		var out []exchange
		do := func(cmd string, multi bool) {
			st := c.cmd("%s", cmd)
			ex := exchange{cmd: cmd, status: st}
			if multi && strings.HasPrefix(st, "+OK") {
				ex.body, ex.multi = c.multi(), true
			}
			out = append(out, ex)
		}
		do("CAPA", true)
		do("USER alice", false)
		do("PASS secret", false)
		do("AUTH PLAIN AGFsaWNlAHNlY3JldA==", false)
		do("AUTH", true)
		do("STLS", false)
		tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.conn, c.br = tc, bufio.NewReader(tc)
		do("CAPA", true)
		do("STLS", false)
		do("AUTH", true)
		do("AUTH PLAIN AGFsaWNlAHNlY3JldA==", false)
		do("STAT", false)
		do("QUIT", false)
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot log:\n%s", d.Log(t))
		}
	})
	dove, pk := run(d.Addr), run(e.Addr)
	compareTranscripts(t, dove, pk)
	for i := range dove {
		if dove[i].status != pk[i].status && strings.HasPrefix(dove[i].status, "-ERR [AUTH]") {
			t.Logf("%s: dovecot %q, postkit %q", dove[i].cmd, dove[i].status, pk[i].status)
		}
	}
	if t.Failed() {
		t.Logf("dovecot log:\n%s", d.Log(t))
	}
}
