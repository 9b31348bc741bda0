package virtual_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mda/virtual"
	"github.com/postkit-mail/postkit/queue"
)

// TestMatchesPostfix delivers the same messages with a private Postfix's
// virtual(8) and with postkit's, to Maildir and mbox, and compares the
// files byte for byte (postkit is given the content Postfix queued and
// the time of Postfix's From_ line) and the dsn, status and reason of
// every recipient's log line, including an unknown user and a message
// that already has the recipient's Delivered-To (virtual(8) delivers it:
// unlike local(8) it has no loop check).
func TestMatchesPostfix(t *testing.T) {
	pfBase := sharedDir(t)
	table := "bob@v.test v.test/bob/Maildir/\ncarol@v.test v.test/carol\n@w.test w.test/all/\n"
	main := "virtual_mailbox_domains = v.test w.test\nvirtual_mailbox_base = " + pfBase + "\n" +
		"virtual_mailbox_maps = texthash:$config_directory/vmailbox\nvirtual_uid_maps = static:65534\n" +
		"virtual_gid_maps = static:65534\nrecipient_delimiter = +\nsmtpd_reject_unlisted_recipient = no\n"
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main, Files: []oracle.File{{Name: "vmailbox", Data: table}}})

	body := "Subject: virtual test\r\nX-Long: a\r\n folded header\r\n\r\nFrom here on\r\n>From there\r\n.\r\nlast line\r\n"
	rcpts := []string{"Bob+Ext@v.test", "carol@v.test", "nobody@v.test", "x@w.test"}
	send(t, p, "s@x.test", rcpts, body)
	// The second message only once the first is in carol's mbox, so the
	// mbox holds them in this order.
	p.WaitLog(t, 30*time.Second, "to=<carol@v.test>", "status=sent")
	send(t, p, "", []string{"carol@v.test"}, "Delivered-To: carol@v.test\r\nSubject: loop\r\n\r\nloop\r\n")

	re := regexp.MustCompile(`to=<([^>]+)>, (?:orig_to=<[^>]+>, )?relay=(\S+), delay=\S+, delays=\S+, (dsn=.*)$`)
	logged := map[string][]string{}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		logged = map[string][]string{}
		n := 0
		for _, line := range strings.Split(p.Log(), "\n") {
			if m := re.FindStringSubmatch(line); m != nil && strings.Contains(line, "postfix/virtual") {
				logged[m[1]] = append(logged[m[1]], "relay="+m[2]+", "+m[3])
				n++
			}
		}
		if n == len(rcpts)+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix logged %d of %d virtual deliveries:\n%s", n, len(rcpts)+1, p.Log())
		}
	}

	// postkit delivers to its own base, with the content Postfix queued.
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "v.test"), 0o755)
	ownBase(t, base, 65534, filepath.Join(base, "v.test"))
	os.WriteFile(filepath.Join(base, "vmailbox"), []byte(table), 0o644)
	cfg, err := config.Parse("main.cf", strings.NewReader(strings.ReplaceAll(strings.ReplaceAll(main, pfBase, base), "$config_directory", base)))
	if err != nil {
		t.Fatal(err)
	}
	// Postfix's mbox From_ line gives the time to use.
	carol, err := os.ReadFile(filepath.Join(pfBase, "v.test/carol"))
	if err != nil {
		t.Fatalf("Postfix delivered no mbox: %v\n%s", err, p.Log())
	}
	first, _, _ := strings.Cut(string(carol), "\n")
	when, err := time.ParseInLocation("Mon Jan _2 15:04:05 2006", first[len(first)-24:], time.Local)
	if err != nil {
		t.Fatalf("From_ line %q: %v", first, err)
	}
	host, _ := os.Hostname()
	a, err := virtual.FromConfig(context.Background(), cfg, virtual.Options{Hostname: host, Now: func() time.Time { return when }})
	if err != nil {
		t.Fatal(err)
	}
	bobFiles, _ := filepath.Glob(filepath.Join(pfBase, "v.test/bob/Maildir/new/*"))
	if len(bobFiles) != 1 {
		t.Fatalf("Postfix's maildir has %v", bobFiles)
	}
	pfBob, _ := os.ReadFile(bobFiles[0])
	// The queued content is the file without virtual's three headers.
	lines := strings.SplitN(string(pfBob), "\n", 4)
	queued := strings.ReplaceAll(lines[3], "\n", "\r\n")
	res := a.Deliver(context.Background(), request("s@x.test", queued,
		rcpt("Bob+Ext@v.test", "Bob+Ext@v.test"), rcpt("carol@v.test", "carol@v.test"), rcpt("nobody@v.test", "nobody@v.test"), rcpt("x@w.test", "x@w.test")))
	// The second message, as Postfix queued it, from Postfix's mbox.
	i := strings.Index(string(carol), "\n\nFrom MAILER-DAEMON  ")
	if i < 0 {
		t.Fatalf("Postfix's mbox has no second message:\n%s", carol)
	}
	second := string(carol)[i+2:]
	first2, _, _ := strings.Cut(second, "\n")
	when2, err := time.ParseInLocation("Mon Jan _2 15:04:05 2006", first2[len(first2)-24:], time.Local)
	if err != nil {
		t.Fatalf("From_ line %q: %v", first2, err)
	}
	a2, err := virtual.FromConfig(context.Background(), cfg, virtual.Options{Hostname: host, Now: func() time.Time { return when2 }})
	if err != nil {
		t.Fatal(err)
	}
	queued2 := strings.ReplaceAll(strings.TrimSuffix(strings.SplitN(second, "\n", 5)[4], "\n"), "\n", "\r\n")
	loopRes := a2.Deliver(context.Background(), request("", queued2, rcpt("carol@v.test", "carol@v.test")))

	words := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	format := func(r queue.Result) string {
		return "relay=" + r.Relay + ", dsn=" + r.DSN + ", status=" + words[r.Outcome] + " (" + r.Reason + ")"
	}
	check := func(addr string, want []string, got string) {
		if len(want) == 0 || want[0] != got {
			t.Errorf("%s:\npostfix: %q\npostkit: %q", addr, want, got)
		}
	}
	check("Bob+Ext@v.test", logged["Bob+Ext@v.test"], format(res[0]))
	check("carol@v.test", logged["carol@v.test"][:1], format(res[1]))
	check("nobody@v.test", logged["nobody@v.test"], format(res[2]))
	check("x@w.test", logged["x@w.test"], format(res[3]))
	if l := logged["carol@v.test"]; len(l) != 2 {
		t.Errorf("Postfix logged %q for carol", l)
	} else {
		check("carol@v.test (loop)", l[1:], format(loopRes[0]))
	}

	same := func(name, pf, pk string) {
		want, err1 := os.ReadFile(pf)
		got, err2 := os.ReadFile(pk)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", name, err1, err2)
		}
		if d := oracle.Diff(string(want), string(got)); d != "" {
			t.Errorf("%s differs from Postfix's:\n%s", name, d)
		}
	}
	pkBob, _ := filepath.Glob(filepath.Join(base, "v.test/bob/Maildir/new/*"))
	if len(pkBob) != 1 {
		t.Fatalf("postkit's maildir has %v", pkBob)
	}
	same("maildir file", bobFiles[0], pkBob[0])
	// virtual(8) has no Delivered-To loop check (only local(8) does):
	// Postfix delivered the second message too.
	same("mbox file", filepath.Join(pfBase, "v.test/carol"), filepath.Join(base, "v.test/carol"))
	pfAll, _ := filepath.Glob(filepath.Join(pfBase, "w.test/all/new/*"))
	pkAll, _ := filepath.Glob(filepath.Join(base, "w.test/all/new/*"))
	if len(pfAll) != 1 || len(pkAll) != 1 {
		t.Fatalf("catch-all: postfix %v, postkit %v", pfAll, pkAll)
	}
	same("catch-all maildir file", pfAll[0], pkAll[0])
	for _, d := range []string{"v.test/bob/Maildir", "v.test/bob/Maildir/new", "w.test/all"} {
		pst, _ := os.Stat(filepath.Join(pfBase, d))
		kst, _ := os.Stat(filepath.Join(base, d))
		if pst == nil || kst == nil || pst.Mode() != kst.Mode() {
			t.Errorf("%s: Postfix mode %v, postkit %v", d, pst.Mode(), kst.Mode())
		}
	}
}

// sharedDir is a mailbox base the unprivileged virtual(8) (uid 65534)
// can write.
func sharedDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "gvirt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "v.test"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "v.test")} {
		if err := os.Chown(d, 65534, 65534); err != nil {
			oracle.Unavailable(t, "cannot give the mailbox base to uid 65534 (not root?): %v", err)
		}
	}
	return dir
}

func send(t *testing.T, p *oracle.Postfix, sender string, rcpts []string, body string) {
	t.Helper()
	c := p.Session(t)
	defer c.Close()
	c.Cmd("EHLO client.test")
	if r := c.Cmd("MAIL FROM:<" + sender + ">"); !strings.HasPrefix(r.String(), "250") {
		t.Fatalf("MAIL: %s", r)
	}
	for _, r := range rcpts {
		if rep := c.Cmd("RCPT TO:<" + r + ">"); !strings.HasPrefix(rep.String(), "250") {
			t.Fatalf("RCPT %s: %s", r, rep)
		}
	}
	c.Cmd("DATA")
	if r := c.Message(body); !strings.HasPrefix(r.String(), "250") {
		t.Fatalf("DATA: %s", r)
	}
}
