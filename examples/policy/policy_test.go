package policy_test

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/contentcheck"
	"github.com/postkit-mail/postkit/restrictions"
)

// loadPolicy reads main.cf from this directory, as Postfix would read
// /etc/postfix/main.cf.
func loadPolicy(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(".")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRecipientPolicy asks the restrictions what each RCPT TO would get,
// exactly as the SMTP server would ask them during a session.
func TestRecipientPolicy(t *testing.T) {
	ctx := context.Background()
	checker, err := restrictions.FromConfig(ctx, loadPolicy(t), restrictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer checker.Close()

	lan := netip.MustParseAddr("192.0.2.10")      // in mynetworks
	outside := netip.MustParseAddr("203.0.113.5") // anywhere else

	for _, tc := range []struct {
		name     string
		client   netip.Addr
		saslUser string
		from, to string
		want     string // the reply, or "" when the recipient is accepted
	}{
		{"mail for a local user", outside, "", "carol@example.org", "alice@example.com", ""},
		{"unknown local user", outside, "", "carol@example.org", "nobody@example.com",
			"550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local recipient table"},
		{"stranger relaying", outside, "", "carol@example.org", "dave@example.org",
			"554 5.7.1 <dave@example.org>: Relay access denied"},
		{"LAN host relaying", lan, "", "alice@example.com", "dave@example.org", ""},
		{"logged-in user relaying", outside, "alice", "alice@example.com", "dave@example.org", ""},
		{"recipient without a domain", outside, "", "carol@example.org", "alice@localhost",
			"504 5.5.2 <alice@localhost>: Recipient address rejected: need fully-qualified address"},
		{"recipient table: OK", outside, "", "spammer@example.net", "abuse@example.com", ""},
		{"recipient table: REJECT with text", outside, "", "carol@example.org", "sales@example.com",
			"554 5.7.1 <sales@example.com>: Recipient address rejected: Sales moved to sales@example.net"},
		{"sender table", outside, "", "spammer@example.net", "bob@example.com",
			"554 5.7.1 <spammer@example.net>: Sender address rejected: You are not welcome"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &restrictions.Snapshot{
				ClientAddr: tc.client, ClientName: "client.example.org",
				Helo: "client.example.org", ESMTP: true,
				Sender: tc.from, Recipient: tc.to,
			}
			if tc.saslUser != "" {
				s.SASLMethod, s.SASLUsername = "PLAIN", tc.saslUser
			}
			d := checker.Check(ctx, restrictions.StageRecipient, s)
			got := ""
			if !d.Accepted() {
				got = d.Reply.String()
			}
			if got != tc.want {
				t.Errorf("RCPT TO:<%s> from %s:\n got: %q\nwant: %q", tc.to, tc.client, got, tc.want)
			}
		})
	}
}

// TestHeaderChecks runs messages through header_checks and
// mime_header_checks, as cleanup does while the message arrives.
func TestHeaderChecks(t *testing.T) {
	ctx := context.Background()
	checks, err := contentcheck.FromConfig(ctx, loadPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	inspect := func(message string) (string, contentcheck.Verdict) {
		t.Helper()
		var out bytes.Buffer
		w := checks.NewWalker(ctx, &out, contentcheck.Hooks{}, contentcheck.LogInfo{QueueID: "TEST"})
		if _, err := io.WriteString(w, strings.ReplaceAll(message, "\n", "\r\n")); err != nil {
			t.Fatal(err)
		}
		v, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(out.String(), "\r\n", "\n"), v
	}

	t.Run("clean message passes unchanged", func(t *testing.T) {
		msg := "From: alice@example.com\nSubject: lunch?\n\nAt noon.\n"
		out, v := inspect(msg)
		if v.Reject != nil || v.Hold || out != msg {
			t.Errorf("verdict %+v, message %q", v, out)
		}
	})
	t.Run("spam subject is rejected", func(t *testing.T) {
		_, v := inspect("Subject: FREE MONEY for you\n\nClick.\n")
		if v.Reject == nil || v.Reject.String() != "550 5.7.1 Looks like spam to us" {
			t.Errorf("reject = %v", v.Reject)
		}
	})
	t.Run("bulk mailer is held", func(t *testing.T) {
		_, v := inspect("X-Mailer: MassMailer 2.0\nSubject: news\n\nHello.\n")
		if !v.Hold || v.HoldText != "bulk mail waits for review" {
			t.Errorf("hold = %v %q", v.Hold, v.HoldText)
		}
	})
	t.Run("internal header is removed", func(t *testing.T) {
		out, _ := inspect("X-Originating-IP: 10.1.2.3\nSubject: hi\n\nHello.\n")
		if want := "Subject: hi\n\nHello.\n"; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
	})
	t.Run("executable attachment is rejected", func(t *testing.T) {
		_, v := inspect(`Subject: invoice
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

See attached.
--b1
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="invoice.exe"

TVqQAAMAAAAEAAAA
--b1--
`)
		if v.Reject == nil || v.Reject.String() != "550 5.7.1 Executable attachments are not accepted" {
			t.Errorf("reject = %v", v.Reject)
		}
	})
}
