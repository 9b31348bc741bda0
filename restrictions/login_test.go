package restrictions

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/postkit-mail/postkit/maps"
)

// TestSenderLoginMismatch: the replies Postfix 3.7.11 gave in the lab
// configuration, with smtpd_sender_login_maps = texthash:login holding
// "owned@example.com alice bob,dave" and "@owned.example Émile", a SASL
// login through a Dovecot-protocol auth server, and
// smtpd_recipient_restrictions = reject.
func TestSenderLoginMismatch(t *testing.T) {
	dir := t.TempDir()
	login := filepath.Join(dir, "login")
	if err := os.WriteFile(login, []byte("owned@example.com alice bob,dave\n@owned.example  Émile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const (
		accepted = "554 5.7.1 <rcpt@remote.example>: Recipient address rejected: Access denied"
	)
	cases := []struct {
		name, restriction, maps, sender, user, want string
	}{
		{"owner", "reject_sender_login_mismatch", "texthash:" + login, "owned@example.com", "bob", accepted},
		{"first owner", "reject_sender_login_mismatch", "texthash:" + login, "owned@example.com", "alice", accepted},
		{"owner, other case", "reject_sender_login_mismatch", "texthash:" + login, "owned@example.com", "BOB", accepted},
		{"owner after comma", "reject_sender_login_mismatch", "texthash:" + login, "owned@example.com", "dave", accepted},
		{"not an owner", "reject_sender_login_mismatch", "texthash:" + login, "owned@example.com", "carol",
			"553 5.7.1 <owned@example.com>: Sender address rejected: not owned by user carol"},
		{"not logged in", "reject_sender_login_mismatch", "texthash:" + login, "owned@example.com", "",
			"553 5.7.1 <owned@example.com>: Sender address rejected: not logged in"},
		{"UTF-8 owner", "reject_sender_login_mismatch", "texthash:" + login, "x@owned.example", "émile", accepted},
		{"UTF-8 owner, other case", "reject_sender_login_mismatch", "texthash:" + login, "x@owned.example", "ÉMILE", accepted},
		{"unowned, logged in", "reject_sender_login_mismatch", "inline:{owned@example.com=bob}", "free@example.com", "bob",
			"553 5.7.1 <free@example.com>: Sender address rejected: not owned by user bob"},
		{"unowned, not logged in", "reject_sender_login_mismatch", "inline:{owned@example.com=bob}", "free@example.com", "", accepted},
		{"known: unowned, logged in", "reject_known_sender_login_mismatch", "inline:{owned@example.com=bob}", "free@example.com", "bob", accepted},
		{"known: unowned, not logged in", "reject_known_sender_login_mismatch", "inline:{owned@example.com=bob}", "free@example.com", "", accepted},
		{"known: owned by another", "reject_known_sender_login_mismatch", "inline:{owned@example.com=bob}", "owned@example.com", "alice",
			"553 5.7.1 <owned@example.com>: Sender address rejected: not owned by user alice"},
		{"authenticated only", "reject_authenticated_sender_login_mismatch", "inline:{owned@example.com=bob}", "free@example.com", "bob",
			"553 5.7.1 <free@example.com>: Sender address rejected: not owned by user bob"},
		{"unauthenticated only, logged in", "reject_unauthenticated_sender_login_mismatch", "inline:{owned@example.com=bob}", "owned@example.com", "alice", accepted},
		// An empty smtpd_sender_login_maps owns nothing.
		{"no maps", "reject_sender_login_mismatch", "", "owned@example.com", "bob",
			"553 5.7.1 <owned@example.com>: Sender address rejected: not owned by user bob"},
		{"null sender", "reject_sender_login_mismatch", "", "", "bob", accepted},
		// The sender is resolved and searched like a recipient table:
		// user+ext@domain, user@domain, user (local domain), @domain.
		{"local part, extension", "reject_known_sender_login_mismatch", "inline:{owned=bob}", "owned+x@Example.COM", "",
			"553 5.7.1 <owned+x@Example.COM>: Sender address rejected: not logged in"},
	}
	for _, tc := range cases {
		c := labChecker(t, func(cfg *Config) {
			cfg.SASLEnabled = true
			cfg.SenderRestrictions = tc.restriction
			cfg.RecipientRestrictions = "reject"
			cfg.Addresses.RecipientDelimiter = "+"
			cfg.Addresses.SenderLoginMaps = nil
			if tc.maps != "" {
				cfg.Addresses.SenderLoginMaps = []string{tc.maps}
			}
		})
		s := labSnap(tc.sender, "rcpt@remote.example")
		if tc.user != "" {
			s.SASLMethod, s.SASLUsername = "PLAIN", tc.user
		}
		d := c.Check(context.Background(), StageRecipient, s)
		if got := d.Reply.String(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestSenderLoginMismatchInRecipientList: the reply names the sender
// whatever list the restriction is in.
func TestSenderLoginMismatchInRecipientList(t *testing.T) {
	c := labChecker(t, func(cfg *Config) {
		cfg.SASLEnabled = true
		cfg.RecipientRestrictions = "reject_sender_login_mismatch, reject"
		cfg.Addresses.SenderLoginMaps = []string{"inline:{owned@example.com=bob}"}
	})
	s := labSnap("owned@example.com", "rcpt@remote.example")
	s.SASLUsername = "alice"
	d := c.Check(context.Background(), StageRecipient, s)
	if want := "553 5.7.1 <owned@example.com>: Sender address rejected: not owned by user alice"; d.Reply.String() != want {
		t.Errorf("%q, want %q", d.Reply, want)
	}
}

func TestSenderLoginMismatchNoSASL(t *testing.T) {
	c := labChecker(t, func(cfg *Config) {
		cfg.SenderRestrictions = "reject_sender_login_mismatch, reject_known_sender_login_mismatch"
		cfg.RecipientRestrictions = "reject"
	})
	d := c.Check(context.Background(), StageRecipient, labSnap("joe@example.com", "rcpt@remote.example"))
	want := []string{
		"restriction `reject_authenticated_sender_login_mismatch' ignored: no SASL support",
		"restriction `reject_unauthenticated_sender_login_mismatch' ignored: no SASL support",
		"restriction `reject_known_sender_login_mismatch' ignored: no SASL support",
	}
	if d.Reply.String() != "554 5.7.1 <rcpt@remote.example>: Recipient address rejected: Access denied" || !slices.Equal(d.Warnings, want) {
		t.Errorf("reply %q warnings %q", d.Reply, d.Warnings)
	}
}

// TestSenderLoginMapsFailure: a login table that cannot answer ends the
// stage with 451, as an inline table with a syntax error did in Postfix.
func TestSenderLoginMapsFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"temporary", &maps.Error{Map: "mem:login", Temporary: true, Err: errors.New("timeout")},
			"451 4.3.0 <owned@example.com>: Temporary lookup failure"},
		{"permanent", &maps.Error{Map: "mem:login", Err: errors.New("corrupt")}, "451 4.3.5 Server configuration error"},
	} {
		c := labChecker(t, func(cfg *Config) {
			cfg.SASLEnabled = true
			cfg.SenderRestrictions = "reject_sender_login_mismatch"
			cfg.Addresses.SenderLoginMaps = []string{"mem:login"}
			cfg.Tables = map[string]maps.Map{"mem:login": maps.FuncMap(func(context.Context, string) (string, bool, error) {
				return "", false, tc.err
			})}
		})
		s := labSnap("owned@example.com", "rcpt@remote.example")
		s.SASLUsername = "bob"
		if d := c.Check(context.Background(), StageRecipient, s); d.Reply.String() != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, d.Reply, tc.want)
		}
	}
	c := labChecker(t, func(cfg *Config) {
		cfg.SASLEnabled = true
		cfg.SenderRestrictions = "reject_sender_login_mismatch"
		cfg.Addresses.SenderLoginMaps = []string{"inline:{owned@example.com=alice bob,dave}"}
	})
	s := labSnap("owned@example.com", "rcpt@remote.example")
	s.SASLUsername = "bob"
	if d := c.Check(context.Background(), StageRecipient, s); d.Reply.String() != "451 4.3.0 <owned@example.com>: Temporary lookup failure" {
		t.Errorf("bad inline table: %q", d.Reply)
	}
}
