package restrictions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/maps"
)

// labSnap is the lab client (127.0.0.1, localhost) at RCPT TO.
func labSnap(sender, rcpt string) *Snapshot {
	return &Snapshot{
		ClientAddr: netip.MustParseAddr("127.0.0.1"), ClientName: "localhost", ReverseName: "localhost",
		Helo: "client.example", ESMTP: true, Sender: sender, Recipient: rcpt,
	}
}

type replyCase struct{ rcpt, want string }

// checkReplies runs RCPT TO for each case and compares the reply line.
func checkReplies(t *testing.T, c *Checker, sender string, cases []replyCase) {
	t.Helper()
	for _, tc := range cases {
		d := c.Check(context.Background(), StageRecipient, labSnap(sender, tc.rcpt))
		if got := d.Reply.String(); got != tc.want {
			t.Errorf("RCPT TO:<%s> = %q, want %q (warnings %q)", tc.rcpt, got, tc.want, d.Warnings)
		}
	}
}

// The replies in these tests are what Postfix 3.7.11 answered in the lab
// configuration (labConfig) with the same restriction lists.

func TestUnauthDestination(t *testing.T) {
	cases := []struct {
		name, list string
		edit       func(*Config)
		replies    []replyCase
	}{
		{"reject_unauth_destination", "reject_unauth_destination", nil, []replyCase{
			{"joe@remote.example", "554 5.7.1 <joe@remote.example>: Relay access denied"},
			{"joe%remote.example@relay.example", "554 5.7.1 <joe%remote.example@relay.example>: Relay access denied"},
			{"known@relay.example", ""},
			{"realuser@example.com", ""},
			{"aliased@valias.example", ""},
			{"box@vmbox.example", ""},
		}},
		{"defer_unauth_destination", "defer_unauth_destination", nil, []replyCase{
			{"joe@remote.example", "454 4.7.1 <joe@remote.example>: Relay access denied"},
			{"joe%remote.example@relay.example", "454 4.7.1 <joe%remote.example@relay.example>: Relay access denied"},
			{"known@relay.example", ""},
		}},
		{"check_relay_domains", "check_relay_domains", nil, []replyCase{
			{"joe@remote.example", "554 5.7.1 <joe@remote.example>: Recipient address rejected: Relay access denied"},
			{"joe%remote.example@relay.example", "554 5.7.1 <joe%remote.example@relay.example>: Recipient address rejected: Relay access denied"},
			{"known@relay.example", ""},
		}},
		{"check_relay_domains client", "check_relay_domains", func(cfg *Config) {
			cfg.Addresses.RelayDomains = []string{"localhost", "relay.example"}
		}, []replyCase{
			{"joe@remote.example", ""},
			{"joe%remote.example@relay.example", "550 5.1.1 <joe%remote.example@relay.example>: Recipient address rejected: User unknown in relay recipient table"},
			{"known@relay.example", ""},
		}},
		{"permit_auth_destination", "permit_auth_destination, reject", func(cfg *Config) {
			cfg.Addresses.RelayDomainsRejectCode = 550
		}, []replyCase{
			{"joe@remote.example", "554 5.7.1 <joe@remote.example>: Recipient address rejected: Access denied"},
			{"joe%remote.example@relay.example", "554 5.7.1 <joe%remote.example@relay.example>: Recipient address rejected: Access denied"},
			{"known@relay.example", ""},
		}},
		{"allow_untrusted_routing", "reject_unauth_destination", func(cfg *Config) {
			cfg.Addresses.RelayDomainsRejectCode = 550
			cfg.AllowUntrustedRouting = true
		}, []replyCase{
			{"joe@remote.example", "550 5.7.1 <joe@remote.example>: Relay access denied"},
			{"joe%remote.example@relay.example", "550 5.1.1 <joe%remote.example@relay.example>: Recipient address rejected: User unknown in relay recipient table"},
			{"known@relay.example", ""},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := labChecker(t, func(cfg *Config) {
				cfg.RecipientRestrictions = tc.list
				if tc.edit != nil {
					tc.edit(cfg)
				}
			})
			checkReplies(t, c, "s@example.com", tc.replies)
		})
	}
}

func TestCheckRelayDomainsWarnings(t *testing.T) {
	c := labChecker(t, func(cfg *Config) { cfg.RecipientRestrictions = "check_relay_domains, reject" })
	d := c.Check(context.Background(), StageRecipient, labSnap("s@example.com", "joe@remote.example"))
	want := []string{
		`support for restriction "check_relay_domains" will be removed from Postfix; use "reject_unauth_destination" instead`,
		"restriction `reject' after `check_relay_domains' is ignored",
	}
	if !slices.Equal(d.Warnings, want) {
		t.Errorf("warnings %q, want %q", d.Warnings, want)
	}
	// The deprecation warning comes once per Checker, as once per smtpd.
	d = c.Check(context.Background(), StageRecipient, labSnap("s@example.com", "joe@remote.example"))
	if !slices.Equal(d.Warnings, want[1:]) {
		t.Errorf("second check warnings %q", d.Warnings)
	}
}

// TestRecipientValidation is reject_unlisted_recipient (implicit and
// explicit) for each address class, with the replies Postfix gave.
func TestRecipientValidation(t *testing.T) {
	echo := "check_recipient_access inline:{x=y}, permit_auth_destination, reject"
	for _, list := range []string{echo, "reject_unlisted_recipient, " + echo} {
		c := labChecker(t, func(cfg *Config) { cfg.RecipientRestrictions = list })
		checkReplies(t, c, "s@example.com", []replyCase{
			{"joe@example.com", "550 5.1.1 <joe@example.com>: Recipient address rejected: User unknown in local recipient table"},
			{"Joe@Example.COM.", "550 5.1.1 <Joe@Example.COM.>: Recipient address rejected: User unknown in local recipient table"},
			{"joe", "550 5.1.1 <joe>: Recipient address rejected: User unknown in local recipient table"},
			{"joe@[127.0.0.1]", "550 5.1.1 <joe@[127.0.0.1]>: Recipient address rejected: User unknown in local recipient table"},
			{"joe@valias.example", "550 5.1.1 <joe@valias.example>: Recipient address rejected: User unknown in virtual alias table"},
			{"joe@vmbox.example", "550 5.1.1 <joe@vmbox.example>: Recipient address rejected: User unknown in virtual mailbox table"},
			{"joe@relay.example", "550 5.1.1 <joe@relay.example>: Recipient address rejected: User unknown in relay recipient table"},
			{"joe@sub.relay.example", "550 5.1.1 <joe@sub.relay.example>: Recipient address rejected: User unknown in relay recipient table"},
			{"joe smith@example.com", "550 5.1.1 <joe smith@example.com>: Recipient address rejected: User unknown in local recipient table"},
			{"joe@example.com@example.com", "550 5.1.1 <joe@example.com@example.com>: Recipient address rejected: User unknown in local recipient table"},
			{"postmaster+x@example.com", "550 5.1.1 <postmaster+x@example.com>: Recipient address rejected: User unknown in local recipient table"},
			{"realuser@example.com", ""},
			{"realuser@Example.com.", ""},
			{"aliased@valias.example", ""},
			{"box@vmbox.example", ""},
			{"known@relay.example", ""},
			// Absorbed or generated by Postfix itself.
			{"postmaster@example.com", ""},
			{"MAILER-DAEMON@example.com", ""},
			{"@example.com", ""},
			{"double-bounce", ""},
			// Other classes have no recipient table.
			{"joe@remote.example", "554 5.7.1 <joe@remote.example>: Recipient address rejected: Access denied"},
		})
	}
}

func TestRecipientValidationSettings(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		edit func(*Config)
		rcpt string
		want string
	}{
		{"show_user_unknown_table_name", func(cfg *Config) { cfg.Addresses.ShowUserUnknownTableName = false },
			"joe@example.com", "550 5.1.1 <joe@example.com>: Recipient address rejected: User unknown"},
		{"unknown_local_recipient_reject_code", func(cfg *Config) { cfg.Addresses.UnknownLocalRecipientRejectCode = 450 },
			"joe@example.com", "450 4.1.1 <joe@example.com>: Recipient address rejected: User unknown in local recipient table"},
		{"unknown_virtual_alias_reject_code", func(cfg *Config) { cfg.Addresses.UnknownVirtualAliasRejectCode = 554 },
			"joe@valias.example", "554 5.1.1 <joe@valias.example>: Recipient address rejected: User unknown in virtual alias table"},
		{"unknown_virtual_mailbox_reject_code", func(cfg *Config) { cfg.Addresses.UnknownVirtualMailboxRejectCode = 551 },
			"joe@vmbox.example", "551 5.1.1 <joe@vmbox.example>: Recipient address rejected: User unknown in virtual mailbox table"},
		{"unknown_relay_recipient_reject_code", func(cfg *Config) { cfg.Addresses.UnknownRelayRecipientRejectCode = 552 },
			"joe@relay.example", "552 5.1.1 <joe@relay.example>: Recipient address rejected: User unknown in relay recipient table"},
		{"soft_bounce", func(cfg *Config) { cfg.SoftBounce = true },
			"joe@example.com", "450 4.1.1 <joe@example.com>: Recipient address rejected: User unknown in local recipient table"},
		{"no local_recipient_maps", func(cfg *Config) { cfg.Addresses.LocalRecipientMaps = nil }, "joe@example.com", ""},
		{"no_unknown_recipient_checks", func(cfg *Config) { cfg.Addresses.NoUnknownRecipientChecks = true }, "joe@example.com", ""},
		{"smtpd_reject_unlisted_recipient=no", func(cfg *Config) { cfg.RejectUnlistedRecipient = false }, "joe@example.com", ""},
		// An address a canonical or virtual alias table has is known.
		{"canonical_maps", func(cfg *Config) { cfg.Addresses.CanonicalMaps = []string{"inline:{joe=jim}"} }, "joe@example.com", ""},
		{"recipient_canonical_maps", func(cfg *Config) { cfg.Addresses.RecipientCanonicalMaps = []string{"inline:{@vmbox.example=x}"} }, "joe@vmbox.example", ""},
		{"sender_canonical_maps", func(cfg *Config) { cfg.Addresses.SenderCanonicalMaps = []string{"inline:{joe=jim}"} },
			"joe@example.com", "550 5.1.1 <joe@example.com>: Recipient address rejected: User unknown in local recipient table"},
		{"virtual_alias_maps", func(cfg *Config) { cfg.Addresses.VirtualAliasMaps = []string{"inline:{joe@relay.example=x}"} }, "joe@relay.example", ""},
		// recipient_delimiter: user+ext is found as user.
		{"recipient_delimiter", func(cfg *Config) { cfg.Addresses.RecipientDelimiter = "+" }, "realuser+tag@example.com", ""},
		{"no recipient_delimiter", nil, "realuser+tag@example.com",
			"550 5.1.1 <realuser+tag@example.com>: Recipient address rejected: User unknown in local recipient table"},
		// The localpart key is tried for $myorigin even when it is not local.
		{"myorigin", func(cfg *Config) {
			cfg.Addresses.Myorigin = "relay.example"
			cfg.Addresses.RelayRecipientMaps = []string{"inline:{joe=x}"}
		}, "joe@relay.example", ""},
		{"warn_if_reject", func(cfg *Config) { cfg.RecipientRestrictions = "warn_if_reject reject_unlisted_recipient" },
			"joe@example.com", "550 5.1.1 <joe@example.com>: Recipient address rejected: User unknown in local recipient table"},
	}
	for _, tc := range cases {
		c := labChecker(t, func(cfg *Config) {
			cfg.RecipientRestrictions = "permit"
			cfg.RelayRestrictions = "reject_unauth_destination"
			if tc.edit != nil {
				tc.edit(cfg)
			}
		})
		d := c.Check(ctx, StageRecipient, labSnap("s@example.com", tc.rcpt))
		if got := d.Reply.String(); got != tc.want {
			t.Errorf("%s: RCPT TO:<%s> = %q, want %q", tc.name, tc.rcpt, got, tc.want)
		}
	}
}

// TestRecipientValidationWarnIfReject: under warn_if_reject the check only
// logs and does not count as done, so the implicit check rejects after all.
func TestRecipientValidationWarnIfReject(t *testing.T) {
	c := labChecker(t, func(cfg *Config) {
		cfg.RecipientRestrictions = "warn_if_reject reject_unlisted_recipient, reject_unauth_destination"
	})
	d := c.Check(context.Background(), StageRecipient, labSnap("s@example.com", "joe@example.com"))
	text := "550 5.1.1 <joe@example.com>: Recipient address rejected: User unknown in local recipient table"
	want := []LogEntry{{"reject_warning", text}, {"reject", text}}
	if d.Reply.String() != text || !slices.Equal(d.Log, want) {
		t.Errorf("reply %q log %q", d.Reply, d.Log)
	}
	// Without warn_if_reject the explicit check runs once.
	c = labChecker(t, func(cfg *Config) {
		cfg.RecipientRestrictions = "reject_unlisted_recipient, reject_unlisted_recipient, reject_unauth_destination"
		cfg.Addresses.LocalRecipientMaps = []string{"counting:x"}
		cfg.Tables = map[string]maps.Map{"counting:x": countingMap(&lookups)}
	})
	lookups = 0
	c.Check(context.Background(), StageRecipient, labSnap("s@example.com", "joe@example.com"))
	// One search: joe@example.com, joe (the domain is local), @example.com.
	if lookups != 3 {
		t.Errorf("local_recipient_maps asked %d times, want the 3 keys of one search", lookups)
	}
}

var lookups int

func countingMap(n *int) maps.Map {
	return maps.FuncMap(func(context.Context, string) (string, bool, error) {
		*n++
		return "", false, nil
	})
}

// TestSenderValidation is reject_unlisted_sender and
// smtpd_reject_unlisted_sender.
func TestSenderValidation(t *testing.T) {
	cases := []struct{ sender, want string }{
		{"joe@example.com", "550 5.1.0 <joe@example.com>: Sender address rejected: User unknown in local recipient table"},
		// The error transport's 5.1.1 becomes a sender's 5.1.7.
		{"joe@valias.example", "550 5.1.7 <joe@valias.example>: Sender address rejected: User unknown in virtual alias table"},
		{"joe@vmbox.example", "550 5.1.0 <joe@vmbox.example>: Sender address rejected: User unknown in virtual mailbox table"},
		{"joe@relay.example", "550 5.1.0 <joe@relay.example>: Sender address rejected: User unknown in relay recipient table"},
		{"realuser@example.com", "554 5.7.1 <rcpt@remote.example>: Recipient address rejected: Access denied"},
		{"joe@remote.example", "554 5.7.1 <rcpt@remote.example>: Recipient address rejected: Access denied"},
		{"", "554 5.7.1 <rcpt@remote.example>: Recipient address rejected: Access denied"},
	}
	for _, edit := range []func(*Config){
		func(cfg *Config) { cfg.SenderRestrictions = "reject_unlisted_sender" },
		func(cfg *Config) { cfg.RejectUnlistedSender = true },
	} {
		c := labChecker(t, func(cfg *Config) {
			cfg.RecipientRestrictions = "permit_auth_destination, reject"
			edit(cfg)
		})
		for _, tc := range cases {
			d := c.Check(context.Background(), StageRecipient, labSnap(tc.sender, "rcpt@remote.example"))
			if got := d.Reply.String(); got != tc.want {
				t.Errorf("MAIL FROM:<%s> = %q, want %q", tc.sender, got, tc.want)
			}
		}
	}
	// sender_canonical_maps counts for senders.
	c := labChecker(t, func(cfg *Config) {
		cfg.RejectUnlistedSender = true
		cfg.Addresses.SenderCanonicalMaps = []string{"inline:{joe=jim}"}
	})
	if d := c.Check(context.Background(), StageSender, labSnap("joe@example.com", "")); !d.Accepted() {
		t.Errorf("canonical sender: %q", d.Reply)
	}
}

// TestTableFailures: a recipient table that cannot be opened, or that
// fails, answers 451 (Postfix: "451 4.3.0 <a>: Temporary lookup failure"
// for a missing hash table, the same for a failing domain list).
func TestTableFailures(t *testing.T) {
	dir := t.TempDir()
	missing := "hash:" + filepath.Join(dir, "missing")
	broken := maps.FuncMap(func(context.Context, string) (string, bool, error) {
		return "", false, &maps.Error{Map: "mem:broken", Err: errors.New("corrupt")}
	})
	cases := []struct {
		name string
		edit func(*Config)
		want []replyCase
	}{
		{"missing local_recipient_maps", func(cfg *Config) { cfg.Addresses.LocalRecipientMaps = []string{missing} }, []replyCase{
			{"joe@example.com", "451 4.3.0 <joe@example.com>: Temporary lookup failure"},
			{"Joe@Remote.Example", "554 5.7.1 <Joe@Remote.Example>: Recipient address rejected: Access denied"},
		}},
		{"missing mydestination table", func(cfg *Config) { cfg.Addresses.Mydestination = []string{missing} }, []replyCase{
			{"joe@example.com", "451 4.3.0 <joe@example.com>: Temporary lookup failure"},
			{"Joe@Remote.Example", "451 4.3.0 <Joe@Remote.Example>: Temporary lookup failure"},
		}},
		{"missing relay_domains table", func(cfg *Config) { cfg.Addresses.RelayDomains = []string{missing} }, []replyCase{
			{"joe@example.com", "550 5.1.1 <joe@example.com>: Recipient address rejected: User unknown in local recipient table"},
			{"Joe@Remote.Example", "451 4.3.0 <Joe@Remote.Example>: Temporary lookup failure"},
		}},
		{"broken table", func(cfg *Config) {
			cfg.Tables = map[string]maps.Map{"mem:broken": broken}
			cfg.Addresses.LocalRecipientMaps = []string{"mem:broken"}
		}, []replyCase{
			{"joe@example.com", "451 4.3.5 Server configuration error"},
		}},
		// Postfix has NIS; without an NIS domain its lookups find nothing.
		{"nis", func(cfg *Config) {
			cfg.Addresses.LocalRecipientMaps = []string{"proxy:unix:passwd.byname", "nis:mail.aliases"}
		}, []replyCase{
			{"joe@example.com", "550 5.1.1 <joe@example.com>: Recipient address rejected: User unknown in local recipient table"},
			{"root@example.com", ""},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := labChecker(t, func(cfg *Config) {
				cfg.RecipientRestrictions = "permit_auth_destination, reject"
				tc.edit(cfg)
			})
			checkReplies(t, c, "s@example.com", tc.want)
		})
	}
}

// countVerifier answers with a fixed status and counts the queries.
func countVerifier(st VerifyStatus, reason string, err error, n *int) Verifier {
	return VerifierFunc(func(ctx context.Context, addr string) (VerifyStatus, string, error) {
		*n++
		return st, reason, err
	})
}

func TestRejectUnverified(t *testing.T) {
	ctx := context.Background()
	var queries int
	var slept []time.Duration
	cases := []struct {
		name     string
		edit     func(*Config)
		verifier Verifier
		rcpt     string
		want     string
		queries  int
	}{
		// The lab's verify(8) answered "in progress" for every address.
		{"pending, then permitted", nil, countVerifier(VerifyPending, "Address verification in progress", nil, &queries),
			"known@relay.example", "450 4.1.1 <known@relay.example>: Recipient address rejected: unverified address: Address verification in progress", 3},
		{"pending, then rejected", nil, countVerifier(VerifyPending, "Address verification in progress", nil, &queries),
			"joe@remote.example", "554 5.7.1 <joe@remote.example>: Recipient address rejected: Access denied", 3},
		{"tempfail action defer", func(cfg *Config) { cfg.Addresses.UnverifiedRecipientTempfailAction = "defer" },
			countVerifier(VerifyPending, "Address verification in progress", nil, &queries),
			"joe@remote.example", "450 4.1.1 <joe@remote.example>: Recipient address rejected: unverified address: Address verification in progress", 3},
		{"deferred", nil, countVerifier(VerifyDeferred, "connect to mx.remote.example: timed out", nil, &queries),
			"known@relay.example", "450 4.1.1 <known@relay.example>: Recipient address rejected: unverified address: connect to mx.remote.example: timed out", 1},
		{"undeliverable, default code 450", nil, countVerifier(VerifyUndeliverable, "host said: 550 no such user", nil, &queries),
			"known@relay.example", "450 4.1.1 <known@relay.example>: Recipient address rejected: unverified address: host said: 550 no such user", 1},
		{"undeliverable, code 550", func(cfg *Config) { cfg.Addresses.UnverifiedRecipientRejectCode = 550 },
			countVerifier(VerifyUndeliverable, "host said: 550 no such user", nil, &queries),
			"known@relay.example", "550 5.1.1 <known@relay.example>: Recipient address rejected: undeliverable address: host said: 550 no such user", 1},
		{"reject reason", func(cfg *Config) {
			cfg.Addresses.UnverifiedRecipientRejectCode = 550
			cfg.Addresses.UnverifiedRecipientRejectReason = "Recipient address lookup failed"
		}, countVerifier(VerifyUndeliverable, "host said: 550 no such user", nil, &queries),
			"known@relay.example", "550 5.1.1 <known@relay.example>: Recipient address rejected: undeliverable address: Recipient address lookup failed", 1},
		{"deliverable", nil, countVerifier(VerifyDeliverable, "ok", nil, &queries), "known@relay.example", "", 1},
		{"defer code 250 accepts", func(cfg *Config) { cfg.Addresses.UnverifiedRecipientDeferCode = 250 },
			countVerifier(VerifyDeferred, "later", nil, &queries), "known@relay.example", "", 1},
		{"service failure", nil, countVerifier(VerifyPending, "", errors.New("connection refused"), &queries),
			"known@relay.example", "450 4.1.1 <known@relay.example>: Recipient address rejected: address verification problem", 1},
		{"no verifier", nil, nil,
			"known@relay.example", "450 4.1.1 <known@relay.example>: Recipient address rejected: address verification problem", 0},
		{"long reason", nil, countVerifier(VerifyDeferred, strings.Repeat("x", 300), nil, &queries),
			"known@relay.example", "450 4.1.1 <known@relay.example>: Recipient address rejected: unverified address: " + strings.Repeat("x", 250), 1},
	}
	for _, tc := range cases {
		queries, slept = 0, nil
		c := labChecker(t, func(cfg *Config) {
			cfg.RecipientRestrictions = "reject_unverified_recipient, permit_auth_destination, reject"
			cfg.Addresses.Verifier = tc.verifier
			cfg.Sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
			if tc.edit != nil {
				tc.edit(cfg)
			}
		})
		d := c.Check(ctx, StageRecipient, labSnap("s@example.com", tc.rcpt))
		if got := d.Reply.String(); got != tc.want || queries != tc.queries {
			t.Errorf("%s: %q after %d queries, want %q after %d", tc.name, got, queries, tc.want, tc.queries)
		}
		if tc.queries == 3 && !slices.Equal(slept, []time.Duration{3 * time.Second, 3 * time.Second}) {
			t.Errorf("%s: slept %v between polls", tc.name, slept)
		}
		if tc.verifier == nil || tc.name == "service failure" {
			if len(d.Warnings) == 0 || !strings.HasPrefix(d.Warnings[0], "verify service failure") {
				t.Errorf("%s: warnings %q", tc.name, d.Warnings)
			}
		}
	}
	// Senders: DSN 4.1.7, answered at RCPT.
	c := labChecker(t, func(cfg *Config) {
		cfg.SenderRestrictions = "reject_unverified_sender"
		cfg.RecipientRestrictions = "permit_auth_destination, reject"
		cfg.Addresses.Verifier = countVerifier(VerifyPending, "Address verification in progress", nil, &queries)
		cfg.Addresses.VerifyPollCount = 1
	})
	d := c.Check(ctx, StageRecipient, labSnap("s@example.com", "known@relay.example"))
	if want := "450 4.1.7 <s@example.com>: Sender address rejected: unverified address: Address verification in progress"; d.Reply.String() != want {
		t.Errorf("sender: %q, want %q", d.Reply, want)
	}
}

// TestAddressDefaults compares DefaultConfig's address settings with
// `postconf` at compatibility_level 3.6.
func TestAddressDefaults(t *testing.T) {
	dir := oracle.ConfigDir(t, "")
	a := DefaultConfig().Addresses
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	join := func(l []string) string { return strings.Join(l, " ") }
	got := map[string]string{
		"recipient_delimiter":                  a.RecipientDelimiter,
		"owner_request_special":                yn(a.OwnerRequestSpecial),
		"double_bounce_sender":                 a.DoubleBounceSender,
		"myorigin":                             a.Myorigin,
		"mydomain":                             a.Mydomain,
		"myhostname":                           a.Myhostname,
		"append_at_myorigin":                   yn(a.AppendAtMyorigin),
		"append_dot_mydomain":                  yn(a.AppendDotMydomain),
		"swap_bangpath":                        yn(a.SwapBangpath),
		"allow_percent_hack":                   yn(a.AllowPercentHack),
		"resolve_dequoted_address":             yn(a.ResolveDequoted),
		"resolve_null_domain":                  yn(a.ResolveNullDomain),
		"resolve_numeric_domain":               yn(a.ResolveNumericDomain),
		"allow_min_user":                       yn(a.AllowMinUser),
		"empty_address_recipient":              a.EmptyAddressRecipient,
		"mydestination":                        join(a.Mydestination),
		"virtual_alias_domains":                join(a.VirtualAliasDomains),
		"virtual_mailbox_domains":              join(a.VirtualMailboxDomains),
		"relay_domains":                        join(a.RelayDomains),
		"local_transport":                      a.LocalTransport,
		"virtual_transport":                    a.VirtualTransport,
		"relay_transport":                      a.RelayTransport,
		"default_transport":                    a.DefaultTransport,
		"relayhost":                            a.Relayhost,
		"local_recipient_maps":                 join(a.LocalRecipientMaps),
		"alias_maps":                           join(a.AliasMaps),
		"virtual_alias_maps":                   join(a.VirtualAliasMaps),
		"virtual_mailbox_maps":                 join(a.VirtualMailboxMaps),
		"relay_recipient_maps":                 join(a.RelayRecipientMaps),
		"canonical_maps":                       join(a.CanonicalMaps),
		"sender_canonical_maps":                join(a.SenderCanonicalMaps),
		"recipient_canonical_maps":             join(a.RecipientCanonicalMaps),
		"smtpd_sender_login_maps":              join(a.SenderLoginMaps),
		"unknown_local_recipient_reject_code":  strconv.Itoa(a.UnknownLocalRecipientRejectCode),
		"unknown_virtual_alias_reject_code":    strconv.Itoa(a.UnknownVirtualAliasRejectCode),
		"unknown_virtual_mailbox_reject_code":  strconv.Itoa(a.UnknownVirtualMailboxRejectCode),
		"unknown_relay_recipient_reject_code":  strconv.Itoa(a.UnknownRelayRecipientRejectCode),
		"relay_domains_reject_code":            strconv.Itoa(a.RelayDomainsRejectCode),
		"show_user_unknown_table_name":         yn(a.ShowUserUnknownTableName),
		"unverified_sender_reject_code":        strconv.Itoa(a.UnverifiedSenderRejectCode),
		"unverified_sender_defer_code":         strconv.Itoa(a.UnverifiedSenderDeferCode),
		"unverified_sender_reject_reason":      a.UnverifiedSenderRejectReason,
		"unverified_sender_tempfail_action":    a.UnverifiedSenderTempfailAction,
		"unverified_recipient_reject_code":     strconv.Itoa(a.UnverifiedRecipientRejectCode),
		"unverified_recipient_defer_code":      strconv.Itoa(a.UnverifiedRecipientDeferCode),
		"unverified_recipient_reject_reason":   a.UnverifiedRecipientRejectReason,
		"unverified_recipient_tempfail_action": a.UnverifiedRecipientTempfailAction,
		"address_verify_poll_count":            strconv.Itoa(a.VerifyPollCount),
		"address_verify_poll_delay":            strconv.Itoa(int(a.VerifyPollDelay/time.Second)) + "s",
	}
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	res := oracle.Run(t, nil, "postconf", append([]string{"-c", dir, "-x"}, names...)...)
	if res.Code != 0 {
		t.Fatalf("postconf: %s", res.Stderr)
	}
	lines := strings.Split(strings.TrimRight(string(res.Stdout), "\n"), "\n")
	if len(lines) != len(names) {
		t.Fatalf("postconf printed %d lines for %d names: %s", len(lines), len(names), res.Stdout)
	}
	for _, line := range lines {
		name, value, _ := strings.Cut(line, " = ")
		value = strings.Join(config.SplitList(value), " ")
		if name == "myorigin" || name == "relayhost" || name == "recipient_delimiter" ||
			strings.HasSuffix(name, "_reason") || strings.HasSuffix(name, "_transport") {
			value = strings.TrimSpace(strings.TrimPrefix(line, name+" ="))
		}
		if got[name] != value {
			t.Errorf("%s = %q, postconf says %q", name, got[name], value)
		}
	}
	// inet_interfaces = all: every address of this machine.
	if len(a.InetInterfaces) == 0 || len(a.ProxyInterfaces) != 0 {
		t.Errorf("inet_interfaces %v proxy_interfaces %v", a.InetInterfaces, a.ProxyInterfaces)
	}
	if !a.RelayDomainsParentStyle {
		t.Error("relay_domains is in parent_domain_matches_subdomains by default")
	}
}

func TestAddressConfigFrom(t *testing.T) {
	dir := t.TempDir()
	mailname := filepath.Join(dir, "mailname")
	if err := os.WriteFile(mailname, []byte("origin.example\nignored\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("main.cf", strings.NewReader(strings.Join([]string{
		"compatibility_level = 3.6",
		"myhostname = mx.example.org",
		"myorigin = " + mailname,
		"inet_interfaces = 192.0.2.1, [2001:db8::1]",
		"proxy_interfaces = 198.51.100.7",
		"relay_domains = relay.example, hash:/etc/postfix/relay",
		"parent_domain_matches_subdomains = mynetworks",
		"receive_override_options = no_header_body_checks, no_unknown_recipient_checks",
		"smtpd_sender_login_maps = hash:/etc/postfix/login, inline:{ a=b }",
		"unverified_recipient_tempfail_action = defer",
		"address_verify_poll_count = ${stress?{1}:{5}}",
		"address_verify_poll_delay = 1m",
		"relay_domains_reject_code = 550",
		"swap_bangpath = no",
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Addresses
	want := AddressConfig{}
	want.Myorigin, want.Myhostname = "origin.example", "mx.example.org"
	if a.Myorigin != want.Myorigin || a.Myhostname != want.Myhostname || a.Mydomain != "example.org" {
		t.Errorf("names %q %q %q", a.Myorigin, a.Myhostname, a.Mydomain)
	}
	if !slices.Equal(a.Mydestination, []string{"mx.example.org", "localhost.example.org", "localhost"}) {
		t.Errorf("mydestination %q", a.Mydestination)
	}
	if !slices.Equal(a.InetInterfaces, []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}) ||
		!slices.Equal(a.ProxyInterfaces, []netip.Addr{netip.MustParseAddr("198.51.100.7")}) {
		t.Errorf("interfaces %v %v", a.InetInterfaces, a.ProxyInterfaces)
	}
	if !slices.Equal(a.RelayDomains, []string{"relay.example", "hash:/etc/postfix/relay"}) || a.RelayDomainsParentStyle {
		t.Errorf("relay_domains %q parent %v", a.RelayDomains, a.RelayDomainsParentStyle)
	}
	if !slices.Equal(a.SenderLoginMaps, []string{"hash:/etc/postfix/login", "inline:{ a=b }"}) {
		t.Errorf("smtpd_sender_login_maps %q", a.SenderLoginMaps)
	}
	if !a.NoUnknownRecipientChecks || a.UnverifiedRecipientTempfailAction != "defer" || a.VerifyPollCount != 5 ||
		a.VerifyPollDelay != time.Minute || a.RelayDomainsRejectCode != 550 || a.SwapBangpath || !a.AllowPercentHack {
		t.Errorf("settings %+v", a)
	}
	c.Set("myorigin", filepath.Join(dir, "nonexistent"))
	if _, err := ConfigFrom(c); err == nil || !strings.Contains(err.Error(), "myorigin") {
		t.Errorf("unreadable myorigin file: %v", err)
	}
	c.Set("myorigin", "$myhostname")
	c.Set("unverified_sender_tempfail_action", "bounce")
	cfg, err = ConfigFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "unverified_sender_tempfail_action") {
		t.Errorf("bad tempfail action: %v", err)
	}
}

// TestAliasMapsFormat: tables of alias_maps in local_recipient_maps are
// aliases(5) files ("name: value"), as postalias builds them.
func TestAliasMapsFormat(t *testing.T) {
	aliases := filepath.Join(t.TempDir(), "aliases")
	if err := os.WriteFile(aliases, []byte("# comment\nalias1: root\nlist2:\n  a, b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	c := labChecker(t, func(cfg *Config) {
		cfg.Addresses.AliasMaps = []string{"hash:" + aliases, "nis:mail.aliases"}
		cfg.Addresses.LocalRecipientMaps = []string{"proxy:unix:passwd.byname", "proxy:hash:" + aliases, "nis:mail.aliases"}
		cfg.MapOptions.Warn = func(w maps.Warning) { warnings = append(warnings, w.String()) }
	})
	checkReplies(t, c, "s@example.com", []replyCase{
		{"alias1@example.com", ""},
		{"list2@example.com", ""},
		{"root@example.com", ""},
		{"joe@example.com", "550 5.1.1 <joe@example.com>: Recipient address rejected: User unknown in local recipient table"},
	})
	if len(warnings) != 0 {
		t.Errorf("warnings reading the aliases file: %q", warnings)
	}
}

// BenchmarkRecipientRestrictions is a typical RCPT TO check: eight
// restrictions with in-memory tables and no DNS, against a baseline of
// eight restrictions that look at nothing but the snapshot.
func BenchmarkRecipientRestrictions(b *testing.B) {
	tables := map[string]maps.Map{
		"mem:rcpt":    maps.StaticMap{"spammer@example.com": "REJECT", "example.net": "OK"},
		"mem:senders": maps.StaticMap{"bad.example": "REJECT"},
		"mem:local":   maps.StaticMap{"realuser": "x", "other": "x"},
	}
	lists := []struct{ name, list string }{
		{"baseline", "reject_unauth_pipelining, reject_unauth_pipelining, reject_unauth_pipelining, " +
			"reject_unauth_pipelining, reject_unauth_pipelining, reject_unauth_pipelining, reject_unauth_pipelining, reject_unauth_destination"},
		{"eight", "permit_mynetworks, reject_non_fqdn_sender, reject_non_fqdn_recipient, reject_unauth_destination, " +
			"check_recipient_access mem:rcpt, check_sender_access mem:senders, reject_unlisted_recipient, permit"},
	}
	for _, l := range lists {
		b.Run(l.name, func(b *testing.B) {
			cfg := labConfig()
			cfg.RecipientRestrictions = l.list
			cfg.Tables = tables
			cfg.Addresses.LocalRecipientMaps = []string{"mem:local"}
			cfg.Addresses.VirtualAliasMaps = nil
			c, err := New(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			s := labSnap("alice@sender.example", "realuser@example.com")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if d := c.Check(ctx, StageRecipient, s); !d.Accepted() {
					b.Fatalf("rejected: %q", d.Reply)
				}
			}
		})
	}
	b.Run("resolve", func(b *testing.B) {
		c := labChecker(b, nil)
		r := c.Resolver()
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := r.Resolve(ctx, "", "realuser@example.com"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("resolve-routed", func(b *testing.B) {
		c := labChecker(b, nil)
		r := c.Resolver()
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := r.Resolve(ctx, "", "joe%remote.example@relay.example"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A Verifier answers reject_unverified_recipient; with the default
// unverified_recipient_reject_code (450) a bounced probe defers.
func ExampleVerifierFunc() {
	cfg := DefaultConfig()
	cfg.Addresses.Mydestination = []string{"example.com"}
	cfg.Addresses.LocalRecipientMaps = nil
	cfg.RecipientRestrictions = "reject_unverified_recipient"
	cfg.Addresses.Verifier = VerifierFunc(func(ctx context.Context, addr string) (VerifyStatus, string, error) {
		if strings.HasPrefix(addr, "nobody@") {
			return VerifyUndeliverable, "mailbox unavailable", nil
		}
		return VerifyDeliverable, "", nil
	})
	c, err := New(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, rcpt := range []string{"joe@example.com", "nobody@example.com"} {
		d := c.Check(context.Background(), StageRecipient, &Snapshot{
			ClientAddr: netip.MustParseAddr("192.0.2.1"), Sender: "s@example.org", Recipient: rcpt,
		})
		fmt.Printf("%s: %q\n", rcpt, d.Reply.String())
	}
	// Output:
	// joe@example.com: ""
	// nobody@example.com: "450 4.1.1 <nobody@example.com>: Recipient address rejected: unverified address: mailbox unavailable"
}
