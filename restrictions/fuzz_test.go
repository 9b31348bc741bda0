package restrictions

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// checkReply asserts what every decision must look like: no reply, or a
// 4xx/5xx reply line of at most 510 bytes without control characters.
func checkReply(t *testing.T, d Decision) {
	t.Helper()
	r := d.Reply.String()
	if r == "" {
		return
	}
	if len(r) > 510 || (r[0] != '4' && r[0] != '5') || d.Reply.DSN == "" || d.Reply.DSN[0] != r[0] {
		t.Fatalf("bad reply %q", r)
	}
	for i := 0; i < len(r); i++ {
		if r[i] < 0x20 || r[i] == 0x7f {
			t.Fatalf("control character in reply %q", r)
		}
	}
}

// FuzzRestrictionList builds a Checker from an arbitrary restriction list
// and evaluates every stage: it must neither panic nor hang, and every
// reply must be well-formed.
func FuzzRestrictionList(f *testing.F) {
	for _, s := range []string{
		"permit_mynetworks, reject",
		"warn_if_reject reject_non_fqdn_sender, defer_if_permit, permit",
		"check_client_access inline:{{192.0.2.1=REJECT x}}, reject",
		"{ a, b }, c:d, ,,, reject",
		"sleep, check_policy_service, reject_rbl_client",
		"check_sender_access static:OK reject",
		"myclass reject",
		"defer_if_reject defer_if_permit warn_if_reject",
	} {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 2000 {
			return
		}
		cfg := DefaultConfig()
		cfg.ClientRestrictions = text
		cfg.RecipientRestrictions = text + ", reject"
		cfg.DataRestrictions = text
		cfg.Classes = map[string]string{"myclass": text + " permit"}
		cfg.Sleep = func(context.Context, time.Duration) error { return nil }
		c, err := New(ctx, cfg)
		if err != nil {
			return
		}
		defer c.Close()
		s := &Snapshot{ClientAddr: netip.MustParseAddr("192.0.2.1"), Helo: "h.example",
			Sender: "a@b.example", Recipient: "c@d.example", RecipientCount: 1}
		for _, st := range []Stage{StageClient, StageRecipient, StageData} {
			checkReply(t, c.Check(ctx, st, s))
		}
	})
}

// FuzzAccessAction interprets an arbitrary access-table value, as a table,
// a policy server or a Go Func could return it.
func FuzzAccessAction(f *testing.F) {
	for _, s := range []string{
		"OK", "REJECT", "REJECT 5.1.1 text", "550", "550 text", "421 4.7.0 bye", "DEFER_IF_PERMIT x",
		"DEFER_IF_REJECT", "HOLD why", "FILTER smtp:x", "REDIRECT a@b", "BCC a@b", "PREPEND X: y",
		"WARN", "INFO", "DISCARD", "HANGUP", "reject_non_fqdn_sender reject", "a:b", "650 x",
		"REJECT 4.1.8\x00x", "DUNNO", "dunno text", "PREPEND", "999 text",
	} {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, action string) {
		if len(action) > 4000 {
			return
		}
		cfg := DefaultConfig()
		cfg.Funcs = map[string]Func{"f": func(context.Context, Stage, *Snapshot) (string, error) { return action, nil }}
		cfg.ClientRestrictions = "f"
		cfg.SenderRestrictions = "f"
		cfg.RecipientRestrictions = "f, reject"
		cfg.EndOfDataRestrictions = "f"
		c, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s := &Snapshot{ClientAddr: netip.MustParseAddr("192.0.2.1"), Helo: "h.example",
			Sender: "", Recipient: "c@d.example", RecipientCount: 1}
		for _, st := range []Stage{StageClient, StageRecipient, StageEndOfData} {
			d := c.Check(ctx, st, s)
			checkReply(t, d)
			for _, p := range d.Effects.Prepend {
				if !strings.Contains(p, ":") {
					t.Fatalf("PREPEND without header name: %q", p)
				}
			}
		}
	})
}
