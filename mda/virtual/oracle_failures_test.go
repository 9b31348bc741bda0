package virtual_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mda/virtual"
	"github.com/postkit-mail/postkit/queue"
)

// TestFailuresMatchPostfix compares the texts of failed deliveries with
// a private Postfix's: an mbox over virtual_mailbox_limit, a uid below
// virtual_minimum_uid, an mbox whose directory does not exist (its lock
// file cannot be made) and an address not in the table.
func TestFailuresMatchPostfix(t *testing.T) {
	pfBase := sharedDir(t)
	table := "big@v.test v.test/big\nlow@v.test v.test/low/\nnodir@v.test nodir/x\nlinked@v.test v.test/linked\nrootfile@v.test v.test/rootfile\n"
	uids := "big@v.test 65534\nlow@v.test 50\nnodir@v.test 65534\nlinked@v.test 65534\nrootfile@v.test 65534\n"
	main := "virtual_mailbox_domains = v.test\nvirtual_mailbox_base = " + pfBase + "\n" +
		"virtual_mailbox_maps = texthash:$config_directory/vmailbox\nvirtual_uid_maps = texthash:$config_directory/uids\n" +
		"virtual_gid_maps = static:65534\nsmtpd_reject_unlisted_recipient = no\nmessage_size_limit = 2000\nvirtual_mailbox_limit = 2000\n"
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main, Files: []oracle.File{{Name: "vmailbox", Data: table}, {Name: "uids", Data: uids}}})
	body := "Subject: x\r\n\r\n" + strings.Repeat("0123456789\r\n", 70)
	rcpts := []string{"big@v.test", "low@v.test", "nodir@v.test", "nouid@v.test"}
	// An mbox with a second name (hard link): refused by safe_open.
	hardLink := func(base string) {
		os.MkdirAll(filepath.Join(base, "v.test"), 0o755)
		if err := os.WriteFile(filepath.Join(base, "v.test/linked"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(base, "v.test/linked"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(base, "v.test/linked"), filepath.Join(base, "second")); err != nil {
			t.Fatal(err)
		}
		// An mbox uid 65534 may not write: virtual(8) opens it with
		// that uid's rights.
		if err := os.WriteFile(filepath.Join(base, "v.test/rootfile"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hardLink(pfBase)
	send(t, p, "s@x.test", rcpts, body)
	p.WaitLog(t, 30*time.Second, "to=<nouid@v.test>", "status=")
	send(t, p, "s@x.test", rcpts[:1], body)
	p.WaitLog(t, 30*time.Second, "to=<big@v.test>", "status=bounced")
	send(t, p, "s@x.test", []string{"linked@v.test", "rootfile@v.test"}, body)
	p.WaitLog(t, 30*time.Second, "to=<linked@v.test>", "status=")
	p.WaitLog(t, 30*time.Second, "to=<rootfile@v.test>", "status=")

	re := regexp.MustCompile(`postfix/virtual\[\d+\]: \w+: to=<([^>]+)>, relay=(\S+), delay=\S+, delays=\S+, (dsn=.*)$`)
	var logged []string
	for _, line := range strings.Split(p.Log(), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			logged = append(logged, m[1]+": relay="+m[2]+", "+strings.ReplaceAll(m[3], pfBase, "BASE"))
		}
	}

	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "v.test"), 0o755)
	ownBase(t, base, 65534, filepath.Join(base, "v.test"))
	os.WriteFile(filepath.Join(base, "vmailbox"), []byte(table), 0o644)
	os.WriteFile(filepath.Join(base, "uids"), []byte(uids), 0o644)
	hardLink(base)
	cfg, err := config.Parse("main.cf", strings.NewReader(strings.ReplaceAll(strings.ReplaceAll(main, pfBase, base), "$config_directory", base)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := virtual.FromConfig(context.Background(), cfg, virtual.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The same size as Postfix's queued message, so the second mbox
	// delivery goes over the limit as Postfix's did.
	pfBig, err := os.ReadFile(filepath.Join(pfBase, "v.test/big"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(pfBig), "\n", 5)
	queued := strings.ReplaceAll(strings.TrimSuffix(lines[4], "\n"), "\n", "\r\n")
	var got []string
	for _, rs := range [][]string{rcpts, rcpts[:1], {"linked@v.test", "rootfile@v.test"}} {
		var list []queue.Recipient
		for _, r := range rs {
			list = append(list, rcpt(r, r))
		}
		words := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
		for i, r := range a.Deliver(context.Background(), request("s@x.test", queued, list...)) {
			status := words[r.Outcome]
			got = append(got, rs[i]+": relay="+r.Relay+", dsn="+r.DSN+", status="+status+" ("+strings.ReplaceAll(r.Reason, base, "BASE")+")")
		}
	}
	// Postfix's agents may log in another order.
	slices.Sort(got)
	slices.Sort(logged)
	if strings.Join(got, "\n") != strings.Join(logged, "\n") {
		t.Errorf("postfix:\n%s\npostkit:\n%s", strings.Join(logged, "\n"), strings.Join(got, "\n"))
	}
}
