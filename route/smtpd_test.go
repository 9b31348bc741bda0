package route

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/restrictions"
)

// For configurations without tables, SMTPD answers as the restrictions'
// own built-in resolver (itself compared with Postfix's smtpd and
// trivial-rewrite) does. Both share internal/tok822's resolver loop; the
// classes, transports and flags around it are each package's own.
func TestSMTPDMatchesBuiltin(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"10-classes", "60-options"} {
		var sc oracle.Scenario
		for _, s := range loadCases(t) {
			if s.Name == name {
				sc = s
			}
		}
		dir := t.TempDir()
		main := oracle.DefaultMainCF(dir) + sc.Main
		if name == "60-options" {
			// No transport_maps, which the built-in resolver lacks.
			main += "transport_maps =\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		r := postkitResolver(t, dir)
		rc, err := restrictions.ConfigFrom(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rc.Mynetworks = []string{"127.0.0.0/8"}
		c, err := restrictions.New(ctx, rc)
		if err != nil {
			t.Fatal(err)
		}
		builtin := c.Resolver()
		ours := r.SMTPD()
		rng := rand.New(rand.NewPCG(3, 4))
		for n := 0; n < 2000; n++ {
			addr := oracle.RandomAddress(rng, randomLocals, randomDomains)
			want, err1 := builtin.Resolve(ctx, "", addr)
			got, err2 := ours.Resolve(ctx, "", addr)
			if (err1 != nil) != (err2 != nil) || want != got {
				t.Errorf("%s: <%s>\n builtin: %+v %v\n  route: %+v %v", name, addr, want, err1, got, err2)
			}
		}
		c.Close()
	}
}

// With SMTPD as the restrictions' resolver, smtpd rejects what
// relocated_maps and transport_maps error: entries say, as Postfix does.
func TestSMTPDRejectsLikePostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	main := `mydestination = example.com
local_recipient_maps =
relocated_maps = hash:$config_directory/relocated
transport_maps = hash:$config_directory/transport
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
`
	files := []oracle.File{
		{Name: "relocated", Postmap: "hash", Data: "moved@example.com joe@new.example\n"},
		{Name: "transport", Postmap: "hash", Data: "closed@example.com error:5.2.1 mailbox closed\nlater@example.com retry:4.2.0 come back later\n"},
	}
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main, Files: files})
	ctx := context.Background()
	cfg, err := config.Load(p.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	r := postkitResolver(t, p.ConfigDir)
	rc, err := restrictions.ConfigFrom(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rc.Addresses.Resolver = r.SMTPD()
	c, err := restrictions.New(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, rcpt := range []string{"moved@example.com", "closed@example.com", "later@example.com", "alice@example.com"} {
		s := p.Session(t)
		s.Cmd("XCLIENT NAME=client.example.org ADDR=127.0.0.1")
		s.Cmd("EHLO client.example.org")
		s.Cmd("MAIL FROM:<sender@example.org>")
		want := s.Cmd("RCPT TO:<" + rcpt + ">")
		s.Close()
		d := c.Check(ctx, restrictions.StageRecipient, &restrictions.Snapshot{
			ClientAddr: netip.MustParseAddr("127.0.0.1"), ClientName: "client.example.org",
			Helo: "client.example.org", ESMTP: true, Sender: "sender@example.org", Recipient: rcpt,
		})
		got := "250 2.1.5 Ok"
		if !d.Accepted() {
			got = d.Reply.String()
		}
		if got != want.String() {
			t.Errorf("RCPT TO:<%s>\n Postfix: %s\n postkit: %s", rcpt, want, got)
		}
	}
}

// What Route reports for an invalid address and an unknown virtual alias
// recipient is what Postfix's queue manager bounces them with: the same
// DSN and text in its log ("dsn=5.1.3, status=bounced (bad address
// syntax)").
func TestRouteErrorsLikePostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: "mydestination = example.com\nvirtual_alias_domains = alias.example\n"})
	p.EnablePickup(t)
	r := postkitResolver(t, p.ConfigDir)
	for _, rcpt := range []string{"joe@a..b", "nobody@alias.example"} {
		if res := p.Sendmail(t, []byte("Subject: x\n\nhi\n"), "-f", "s@example.org", rcpt); res.Code != 0 {
			t.Fatalf("sendmail %s: exit %d: %s", rcpt, res.Code, res.Stderr)
		}
		line := p.WaitLog(t, 30*time.Second, "to=<"+rcpt+">", "status=")
		_, err := r.Route(context.Background(), &cleanup.Envelope{Sender: "s@example.org"}, rcpt)
		var re *queue.RouteError
		if !errors.As(err, &re) || !re.Permanent {
			t.Fatalf("Route(%s) = %v, want a permanent RouteError", rcpt, err)
		}
		if want := "dsn=" + re.DSN + ", status=bounced (" + re.Reason + ")"; !strings.Contains(line, want) {
			t.Errorf("Postfix logged %q\npostkit would log %q", line, want)
		}
	}
}
