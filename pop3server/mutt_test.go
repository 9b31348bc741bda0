package pop3server

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mailbox"
)

// TestMutt has mutt fetch the maildrop over POP3 (its fetch-mail
// function, pop_host) into an mbox spool. Mutt has no batch mode for
// reading, so it runs on a pseudo-terminal made by script(1), driven by a
// push of "<fetch-mail><quit>"; pop_delete=yes makes it delete what it
// fetched, which the next STAT checks.
func TestMutt(t *testing.T) {
	muttBin := oracle.Require(t, "mutt")
	scriptBin := oracle.Require(t, "script")
	e := startServer(t, nil)
	e.deliver(t, "alice", clientMsgs...)
	dir := t.TempDir()
	spool := filepath.Join(dir, "inbox")
	if err := os.WriteFile(spool, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := ports(t, e)
	rc := filepath.Join(dir, "muttrc")
	conf := fmt.Sprintf(`set pop_host="pop://alice:secret@%s:%s/"
set pop_delete=yes
set ssl_starttls=no
set ssl_force_tls=no
set mbox_type=mbox
set spoolfile="%s"
set folder="%s"
set move=no
set confirmappend=no
set sort=mailbox-order
`, host, port, spool, dir)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	muttCmd := fmt.Sprintf("%s -n -F %s -e 'push <fetch-mail><quit>'", muttBin, rc)
	cmd := exec.CommandContext(ctx, scriptBin, "-qec", muttCmd, "/dev/null")
	cmd.Env = append(os.Environ(), "HOME="+dir, "TERM=vt100", "COLUMNS=80", "LINES=24")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mutt: %v\n%q\nserver log:\n%s", err, out, e.Log.String())
	}
	f, err := os.Open(spool)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := mailbox.ScanMbox(f)
	if err != nil {
		t.Fatalf("spool: %v\nmutt output %q\nserver log:\n%s", err, out, e.Log.String())
	}
	if len(got) != len(clientMsgs) {
		t.Fatalf("spool has %d messages, want %d", len(got), len(clientMsgs))
	}
	for i, m := range got {
		var b bytes.Buffer
		b.ReadFrom(m.Reader(f))
		// Mutt adds Status:, Content-Length: and Lines: at the end of the
		// header (and the empty line a header-only message lacks);
		// everything else must be the message as stored, LF line ends.
		head, body, _ := strings.Cut(b.String(), "\n\n")
		var kept []string
		for _, l := range strings.Split(head, "\n") {
			if !strings.HasPrefix(l, "Status: ") && !strings.HasPrefix(l, "Lines: ") &&
				!(strings.HasPrefix(l, "Content-Length: ") && l == fmt.Sprintf("Content-Length: %d", len(body))) {
				kept = append(kept, l)
			}
		}
		gotMsg := strings.Join(kept, "\n") + "\n\n" + body
		want := strings.ReplaceAll(clientMsgs[i], "\r\n", "\n")
		if !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if !strings.Contains(want, "\n\n") {
			want += "\n"
		}
		if gotMsg != want {
			t.Errorf("message %d in mutt's spool:\n%q\nwant\n%q", i+1, trunc(b.String()), trunc(want))
		}
	}
	c := dial(t, e.Addr)
	c.login("alice", "secret")
	if got := c.cmd("STAT"); got != "+OK 0 0" {
		t.Errorf("STAT after mutt's fetch-mail with pop_delete = %q", got)
	}
}
