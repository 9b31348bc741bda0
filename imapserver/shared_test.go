package imapserver

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// One Maildir served by postkit and by Dovecot 2.3 at once: flags and
// keywords set through either server show the same through the other
// (Maildir info letters and the shared dovecot-keywords file).
func TestFlagsSharedWithDovecot(t *testing.T) {
	dv := startDovecotIMAPServer(t, oracle.DovecotIMAPOptions{})
	dvAddr, home := dv.Addr, dv.Home("alice")
	root := filepath.Join(home, "Maildir")
	e := newEnv(t)
	opts := e.options()
	opts.MailRoot = func(context.Context, auth.User) (string, error) { return root, nil }
	_, pkAddr := e.start(t, opts)

	pk := dialRaw(t, pkAddr)
	for i := 0; i < 4; i++ {
		msg := fmt.Sprintf("Subject: shared %d\r\n\r\nbody\r\n", i)
		pk.cmd(t, fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	}
	dv.Chown(t, home)
	pk.cmd(t, "SELECT INBOX")
	pk.cmd(t, `STORE 1 +FLAGS (\Seen \Flagged)`)
	pk.cmd(t, `STORE 2 +FLAGS (\Answered $Label1 Project)`)
	pk.cmd(t, `STORE 3 +FLAGS (\Draft \Deleted)`)

	d := dialRaw(t, dvAddr)
	d.cmd(t, "SELECT INBOX")
	// Dovecot numbers the messages itself, in the same order: compare by
	// sequence number.
	seqFlags := func(r *rawIMAP) []string {
		var out []string
		for _, l := range strings.Split(r.lines(t, "FETCH 1:* (FLAGS)"), "\n") {
			if m := regexp.MustCompile(`FLAGS \(([^)]*)\)`).FindStringSubmatch(l); m != nil {
				var fs []string
				for _, x := range strings.Fields(m[1]) {
					if x != `\Recent` {
						fs = append(fs, strings.ToLower(x))
					}
				}
				sort.Strings(fs)
				out = append(out, strings.Join(fs, " "))
			}
		}
		return out
	}
	want := seqFlags(pk)
	if got := seqFlags(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("flags set by postkit:\n  postkit %q\n  dovecot %q", want, got)
	}
	if !strings.Contains(strings.Join(want, "|"), "$label1 \\answered project") {
		t.Errorf("postkit flags %q", want)
	}
	// And back: Dovecot changes flags, postkit sees them at its next
	// command (inotify on cur/).
	d.cmd(t, `STORE 4 +FLAGS (\Seen Other)`)
	d.cmd(t, `STORE 1 -FLAGS (\Flagged)`)
	want = seqFlags(d)
	for deadline := time.Now().Add(5 * time.Second); ; {
		pk.lines(t, "NOOP") // takes the unsolicited FETCH FLAGS
		got := seqFlags(pk)
		if strings.Join(got, "|") == strings.Join(want, "|") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flags set by Dovecot:\n  dovecot %q\n  postkit %q", want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
