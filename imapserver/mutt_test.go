package imapserver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mailbox"
)

// mutt, driven in batch mode through a pseudo-terminal (script(1)),
// opens INBOX over IMAP, copies both messages into an mbox, flags the
// first one and quits: the mbox holds the delivered messages byte for
// byte (as mutt writes them), and the flag is on the Maildir file.
func TestMuttReadsOverIMAP(t *testing.T) {
	mutt := oracle.Require(t, "mutt")
	script := oracle.Require(t, "script")
	e := newEnv(t)
	_, addr := e.start(t, e.options())
	// log in once so that the store exists, then deliver two messages
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	c.Close()
	root := filepath.Join(e.home, "Maildir")
	bodies := []string{"Subject: one\nFrom: a@example.org\n\nfirst body\n", "Subject: two\nFrom: b@example.org\n\nsecond body\n"}
	for _, b := range bodies {
		if _, err := mailbox.DeliverMaildir(context.Background(), root, strings.NewReader(b), mailbox.MaildirOptions{Hub: e.hub}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "copied.mbox")
	muttrc, _ := filepath.Abs("testdata/muttrc")
	cmd := mutt + " -d 2 -n -F " + muttrc + " -f imap://alice@" + addr + "/INBOX" +
		` -e 'push "<jump>1<enter><copy-message><kill-line>` + out + `<enter><jump>2<enter><copy-message><kill-line>` + out +
		`<enter><jump>1<enter><flag-message><sync-mailbox><quit>"'`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, script, "-qec", cmd, "/dev/null")
	mhome := t.TempDir()
	run.Env = append(os.Environ(), "TERM=xterm", "HOME="+mhome)
	defer func() {
		if t.Failed() {
			d, _ := os.ReadFile(filepath.Join(mhome, ".muttdebug0"))
			t.Logf("mutt debug log:\n%s", d)
		}
	}()
	run.Stdin = strings.NewReader("")
	if o, err := run.CombinedOutput(); err != nil {
		t.Fatalf("mutt: %v\n%s", err, o)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("mutt wrote no mbox: %v", err)
	}
	for _, b := range bodies {
		hdr, body, _ := strings.Cut(b, "\n\n")
		for _, l := range strings.Split(hdr, "\n") {
			if !strings.Contains(string(data), l+"\n") {
				t.Errorf("mbox lacks %q:\n%s", l, data)
			}
		}
		if !strings.Contains(string(data), "\n\n"+body) {
			t.Errorf("mbox lacks body %q:\n%s", body, data)
		}
	}
	if n := strings.Count(string(data), "\nFrom ") + boolInt(strings.HasPrefix(string(data), "From ")); n != 2 {
		t.Errorf("%d messages in the mbox:\n%s", n, data)
	}
	// The flag mutt set went through STORE to the file name.
	md, err := mailbox.OpenMaildir(context.Background(), root, mailbox.MaildirOpenOptions{Hub: e.hub})
	if err != nil {
		t.Fatal(err)
	}
	msgs := md.Messages()
	if len(msgs) != 2 || msgs[0].Flags&mailbox.FlagFlagged == 0 {
		t.Errorf("after mutt: %+v", msgs)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
