package restrictions

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/maps"
)

// coreChecker builds a Checker from DefaultConfig adjusted by edit.
func coreChecker(t testing.TB, edit func(*Config)) *Checker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.RelayRestrictions = ""
	cfg.RecipientRestrictions = "reject"
	cfg.RejectUnlistedRecipient = false
	edit(&cfg)
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func snap(rcpt string) *Snapshot {
	return &Snapshot{
		ClientAddr: netip.MustParseAddr("192.0.2.7"), ClientName: "mail.example.com",
		Helo: "mail.example.com", ESMTP: true, Sender: "alice@example.com", Recipient: rcpt,
	}
}

func TestAccessActions(t *testing.T) {
	table := maps.StaticMap{
		"reject.example":   "REJECT",
		"rejtext.example":  "REJECT 5.1.1 no such user here",
		"defer.example":    "DEFER",
		"num.example":      "550 go away",
		"num421.example":   "421 closing",
		"digits.example":   "550",
		"ok.example":       "OK",
		"relay.example":    "RELAY whatever",
		"dunno.example":    "DUNNO",
		"list.example":     "reject_non_fqdn_sender, reject",
		"table.example":    "hash:/etc/x",
		"badcode.example":  "650 hmm",
		"baddsn.example":   "REJECT 9.9.9 odd",
		"ctrl.example":     "REJECT bad\x01char",
		"hangup.example":   "HANGUP",
		"lower.example":    "reject lower case works",
		"defer451.example": "451 4.1.1 later",
	}
	c := coreChecker(t, func(cfg *Config) {
		cfg.RelayRestrictions = "check_recipient_access mine:access, reject"
		cfg.RecipientRestrictions = ""
		cfg.Tables = map[string]maps.Map{"mine:access": table}
	})
	ctx := context.Background()
	cases := []struct {
		rcpt, want string
	}{
		{"u@reject.example", "554 5.7.1 <u@reject.example>: Recipient address rejected: Access denied"},
		{"u@rejtext.example", "554 5.1.1 <u@rejtext.example>: Recipient address rejected: no such user here"},
		{"u@defer.example", "450 4.7.1 <u@defer.example>: Recipient address rejected: Access denied"},
		{"u@num.example", "550 5.7.1 <u@num.example>: Recipient address rejected: go away"},
		{"u@num421.example", "421 4.7.1 <u@num421.example>: Recipient address rejected: closing"},
		{"u@digits.example", ""},
		{"u@ok.example", ""},
		{"u@relay.example", ""},
		{"u@dunno.example", "554 5.7.1 <u@dunno.example>: Recipient address rejected: Access denied"},
		{"u@list.example", "554 5.7.1 <u@list.example>: Recipient address rejected: Access denied"},
		{"u@table.example", "451 4.3.5 Server configuration error"},
		// Not 4xx/5xx: read as a restriction list naming "650".
		{"u@badcode.example", "451 4.3.5 Server configuration error"},
		{"u@baddsn.example", "554 5.7.1 <u@baddsn.example>: Recipient address rejected: 9.9.9 odd"},
		{"u@ctrl.example", "554 5.7.1 <u@ctrl.example>: Recipient address rejected: bad char"},
		{"u@lower.example", "554 5.7.1 <u@lower.example>: Recipient address rejected: lower case works"},
		{"u@defer451.example", "451 4.1.1 <u@defer451.example>: Recipient address rejected: later"},
	}
	for _, tc := range cases {
		d := c.Check(ctx, StageRecipient, snap(tc.rcpt))
		if got := d.Reply.String(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.rcpt, got, tc.want)
		}
	}
	d := c.Check(ctx, StageRecipient, snap("u@num421.example"))
	if !d.Disconnect {
		t.Errorf("421 reply does not disconnect")
	}
	d = c.Check(ctx, StageRecipient, snap("u@hangup.example"))
	if !d.Hangup || d.Accepted() || d.Reply.Code != 0 {
		t.Errorf("HANGUP: got %+v", d)
	}
}

func TestDSNFix(t *testing.T) {
	// The table answers the same REJECT with a recipient DSN for the
	// client, sender and recipient stages; each stage maps it.
	table := maps.StaticMap{"192.0.2.7": "REJECT 5.1.1 unknown", "alice@example.com": "REJECT 5.1.1 unknown",
		"bob@example.com": "REJECT 4.1.7 bad", "carol@example.com": "550 4.1.8 x"}
	c := coreChecker(t, func(cfg *Config) {
		cfg.Tables = map[string]maps.Map{"t:a": table}
		cfg.ClientRestrictions = "check_client_access t:a"
	})
	d := c.Check(context.Background(), StageRecipient, snap("x@y.example"))
	if got, want := d.Reply.String(), "554 5.0.0 <mail.example.com[192.0.2.7]>: Client host rejected: unknown"; got != want {
		t.Errorf("client: got %q, want %q", got, want)
	}
	c = coreChecker(t, func(cfg *Config) {
		cfg.Tables = map[string]maps.Map{"t:a": table}
		cfg.SenderRestrictions = "check_sender_access t:a"
		cfg.RecipientRestrictions = "check_recipient_access t:a, reject"
	})
	d = c.Check(context.Background(), StageRecipient, snap("x@y.example"))
	if got, want := d.Reply.String(), "554 5.1.7 <alice@example.com>: Sender address rejected: unknown"; got != want {
		t.Errorf("sender: got %q, want %q", got, want)
	}
	s := snap("bob@example.com")
	s.Sender = "other@example.com"
	for rcpt, want := range map[string]string{
		"bob@example.com":   "554 5.1.3 <bob@example.com>: Recipient address rejected: bad",
		"carol@example.com": "550 5.1.2 <carol@example.com>: Recipient address rejected: x",
	} {
		s.Recipient = rcpt
		if got := c.Check(context.Background(), StageRecipient, s).Reply.String(); got != want {
			t.Errorf("recipient %s: got %q, want %q", rcpt, got, want)
		}
	}
}

func TestDeferIfPermitCarries(t *testing.T) {
	table := maps.StaticMap{"192.0.2.7": "DEFER_IF_PERMIT client looks odd"}
	c := coreChecker(t, func(cfg *Config) {
		cfg.Tables = map[string]maps.Map{"t:c": table}
		cfg.ClientRestrictions = "check_client_access t:c"
		cfg.RecipientRestrictions = "check_recipient_access inline:{{ok.example=OK}, {no.example=REJECT}}, reject"
	})
	ctx := context.Background()
	// A later permit becomes the deferral ...
	s := snap("u@ok.example")
	s.ClientAddr = netip.MustParseAddr("127.0.0.1")
	s.ClientName = "localhost"
	table["127.0.0.1"] = "DEFER_IF_PERMIT client looks odd"
	d := c.Check(ctx, StageRecipient, s)
	if got, want := d.Reply.String(), "450 4.7.1 <localhost[127.0.0.1]>: Client host rejected: client looks odd"; got != want {
		t.Errorf("permit: got %q, want %q", got, want)
	}
	// ... a later reject stays a reject.
	s.Recipient = "u@no.example"
	d = c.Check(ctx, StageRecipient, s)
	if got, want := d.Reply.String(), "554 5.7.1 <u@no.example>: Recipient address rejected: Access denied"; got != want {
		t.Errorf("reject: got %q, want %q", got, want)
	}
	// With smtpd_delay_reject = no the client stage arms it at connect
	// and the caller carries it to RCPT in the Txn.
	c2 := coreChecker(t, func(cfg *Config) {
		cfg.DelayReject = false
		cfg.Tables = map[string]maps.Map{"t:c": table}
		cfg.ClientRestrictions = "check_client_access t:c"
		cfg.RecipientRestrictions = "permit_mynetworks, reject"
	})
	s = snap("u@ok.example")
	s.ClientAddr = netip.MustParseAddr("127.0.0.1")
	s.ClientName = "localhost"
	d = c2.Check(ctx, StageClient, s)
	if !d.Accepted() || d.Txn.ClientDefer == nil {
		t.Fatalf("client stage: accepted=%v defer=%v", d.Accepted(), d.Txn.ClientDefer)
	}
	s.Txn = d.Txn
	for _, st := range []Stage{StageHelo, StageSender} {
		d = c2.Check(ctx, st, s)
		if !d.Accepted() {
			t.Fatalf("%v: %s", st, d.Reply)
		}
		s.Txn = d.Txn
	}
	d = c2.Check(ctx, StageRecipient, s)
	if got, want := d.Reply.String(), "450 4.7.1 <localhost[127.0.0.1]>: Client host rejected: client looks odd"; got != want {
		t.Errorf("carried: got %q, want %q", got, want)
	}
	// DATA does not inherit the deferral.
	s.RecipientCount = 1
	if d = c2.Check(ctx, StageData, s); !d.Accepted() {
		t.Errorf("DATA: %s", d.Reply)
	}
}

func TestDeferIfRejectAndWarn(t *testing.T) {
	c := coreChecker(t, func(cfg *Config) {
		cfg.RecipientRestrictions = "check_recipient_access inline:{{c.example=REJECT second list}}"
		cfg.RelayRestrictions = "check_recipient_access inline:{{c.example=OK}}, reject"
	})
	ctx := context.Background()
	s := snap("u@c.example")
	// An OK in the relay list does not skip the recipient list.
	if got, want := c.Check(ctx, StageRecipient, s).Reply.String(), "554 5.7.1 <u@c.example>: Recipient address rejected: second list"; got != want {
		t.Errorf("c.example: got %q, want %q", got, want)
	}
	c = coreChecker(t, func(cfg *Config) {
		cfg.RelayRestrictions = "check_recipient_access inline:{{a.example=OK}, {b.example=OK}}, reject"
		cfg.RecipientRestrictions = "defer_if_reject, check_recipient_access inline:{{a.example=REJECT nope}}, warn_if_reject, check_recipient_access inline:{{b.example=REJECT warned}}"
	})
	s.Recipient = "u@a.example"
	d := c.Check(ctx, StageRecipient, s)
	if got, want := d.Reply.String(), "450 4.7.0 <u@a.example>: Recipient address rejected: defer_if_reject requested"; got != want {
		t.Errorf("defer_if_reject: got %q, want %q", got, want)
	}
	s.Recipient = "u@b.example"
	d = c.Check(ctx, StageRecipient, s)
	if !d.Accepted() {
		t.Errorf("warn_if_reject: rejected with %s", d.Reply)
	}
	if len(d.Log) != 1 || d.Log[0].Kind != "reject_warning" ||
		d.Log[0].Text != "554 5.7.1 <u@b.example>: Recipient address rejected: warned" {
		t.Errorf("warn_if_reject log: %+v", d.Log)
	}
}

func TestPostmasterAndDiscard(t *testing.T) {
	c := coreChecker(t, func(cfg *Config) {
		cfg.ClientRestrictions = "reject"
		cfg.RejectUnlistedRecipient = true
	})
	ctx := context.Background()
	if d := c.Check(ctx, StageRecipient, snap("Postmaster")); !d.Accepted() {
		t.Errorf("bare postmaster: %s", d.Reply)
	}
	if d := c.Check(ctx, StageRecipient, snap("postmaster@example.com")); d.Accepted() {
		t.Errorf("postmaster@domain accepted; only the bare form is exempt")
	}
	c = coreChecker(t, func(cfg *Config) {
		cfg.SenderRestrictions = "check_sender_access inline:{{alice@example.com=DISCARD spam}}, reject"
	})
	d := c.Check(ctx, StageRecipient, snap("u@x.example"))
	if !d.Accepted() || !d.Effects.Discard || !d.Txn.Discard {
		t.Fatalf("DISCARD: %+v", d)
	}
	if len(d.Log) != 1 || d.Log[0].Kind != "discard" || d.Log[0].Text != "<alice@example.com>: Sender address spam" {
		t.Errorf("DISCARD log: %+v", d.Log)
	}
}

func TestEffects(t *testing.T) {
	c := coreChecker(t, func(cfg *Config) {
		cfg.RecipientRestrictions = "check_recipient_access inline:{{a.example=HOLD}}, " +
			"check_recipient_access inline:{{a.example=FILTER smtp:[127.0.0.1]:10025}}, " +
			"check_recipient_access inline:{{a.example=REDIRECT other@example.net}}, " +
			"check_recipient_access inline:{{a.example=BCC archive@example.net}}, " +
			"check_recipient_access inline:{{a.example=BCC nodomain}}, " +
			"check_recipient_access inline:{{a.example=PREPEND X-Tag: yes}}, " +
			"check_recipient_access inline:{{a.example=PREPEND not a header}}, " +
			"check_recipient_access inline:{{a.example=WARN look}}, " +
			"check_recipient_access inline:{{a.example=INFO fyi}}, " +
			"check_recipient_access inline:{{a.example=HOLD again}}"
		cfg.RelayRestrictions = "check_recipient_access inline:{{a.example=OK}}, reject"
	})
	d := c.Check(context.Background(), StageRecipient, snap("u@a.example"))
	if !d.Accepted() {
		t.Fatalf("rejected: %s", d.Reply)
	}
	e := d.Effects
	if !e.Hold || e.Filter != "smtp:[127.0.0.1]:10025" || e.Redirect != "other@example.net" ||
		strings.Join(e.BCC, ",") != "archive@example.net" || strings.Join(e.Prepend, "|") != "X-Tag: yes" {
		t.Errorf("effects: %+v", e)
	}
	var kinds []string
	for _, l := range d.Log {
		kinds = append(kinds, l.Kind)
	}
	if got, want := strings.Join(kinds, " "), "hold filter redirect bcc warn info"; got != want {
		t.Errorf("log kinds %q, want %q (one HOLD only)", got, want)
	}
	if len(d.Warnings) != 2 {
		t.Errorf("warnings: %q", d.Warnings)
	}
}

func TestDelayRejectNoSkipsEffectsBeforeMail(t *testing.T) {
	c := coreChecker(t, func(cfg *Config) {
		cfg.DelayReject = false
		cfg.ClientRestrictions = "check_client_access inline:{{192.0.2.7=HOLD}}"
	})
	d := c.Check(context.Background(), StageClient, snap(""))
	if d.Effects.Hold || len(d.Warnings) != 1 {
		t.Errorf("HOLD at connect: effects %+v warnings %q", d.Effects, d.Warnings)
	}
}

func TestErrors(t *testing.T) {
	temp := maps.FuncMap(func(context.Context, string) (string, bool, error) {
		return "", false, &maps.Error{Map: "t:temp", Err: errors.New("down"), Temporary: true}
	})
	c := coreChecker(t, func(cfg *Config) {
		cfg.Tables = map[string]maps.Map{"t:temp": temp}
		cfg.ClientRestrictions = "check_client_access t:temp"
		cfg.HeloRestrictions = "no_such_restriction"
		cfg.SenderRestrictions = "check_sender_access"
	})
	ctx := context.Background()
	d := c.Check(ctx, StageRecipient, snap("u@x.example"))
	if got, want := d.Reply.String(), "451 4.3.5 <mail.example.com[192.0.2.7]>: Client host rejected: Server configuration error"; got != want {
		t.Errorf("table error: got %q, want %q", got, want)
	}
	s := snap("u@x.example")
	c2 := coreChecker(t, func(cfg *Config) { cfg.HeloRestrictions = "no_such_restriction" })
	d = c2.Check(ctx, StageRecipient, s)
	if got := d.Reply.String(); got != "451 4.3.5 Server configuration error" || len(d.Warnings) == 0 ||
		d.Warnings[0] != `unknown smtpd restriction: "no_such_restriction"` {
		t.Errorf("unknown restriction: %q %q", got, d.Warnings)
	}
	c3 := coreChecker(t, func(cfg *Config) { cfg.DataRestrictions = "inline:{{a=b}}" })
	s.RecipientCount = 1
	if got := c3.Check(ctx, StageData, s).Reply.String(); got != "451 4.3.5 Server configuration error" {
		t.Errorf("bare table in DATA: %q", got)
	}
	// A Func error that is temporary is a 4.3.0.
	c4 := coreChecker(t, func(cfg *Config) {
		cfg.Funcs = map[string]Func{"my_check": func(context.Context, Stage, *Snapshot) (string, error) {
			return "", &maps.Error{Map: "go", Err: errors.New("db down"), Temporary: true}
		}}
		cfg.RecipientRestrictions = "my_check, reject"
	})
	if got := c4.Check(ctx, StageRecipient, snap("u@x.example")).Reply.String(); got != "451 4.3.0 <u@x.example>: Temporary lookup failure" {
		t.Errorf("temporary Func error: %q", got)
	}
}

func TestRelayRequired(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RelayRestrictions = "permit, reject_unauth_destination"
	cfg.RecipientRestrictions = "permit_mynetworks"
	_, err := New(context.Background(), cfg)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "specify at least one working instance of: reject_unauth_destination") {
		t.Fatalf("got %v", err)
	}
	cfg.Classes = map[string]string{"myclass": "permit_mynetworks, reject_unauth_destination"}
	cfg.RecipientRestrictions = "warn_if_reject reject_non_fqdn_sender, myclass"
	if _, err := New(context.Background(), cfg); err != nil {
		t.Fatalf("class with reject_unauth_destination refused: %v", err)
	}
}

func TestSoftBounceAndTruncation(t *testing.T) {
	long := strings.Repeat("x", 600)
	c := coreChecker(t, func(cfg *Config) {
		cfg.SoftBounce = true
		cfg.RecipientRestrictions = "check_recipient_access inline:{{a.example=REJECT " + long + "}}, reject"
	})
	d := c.Check(context.Background(), StageRecipient, snap("u@a.example"))
	got := d.Reply.String()
	if !strings.HasPrefix(got, "454 4.7.1 <u@a.example>: Recipient address rejected: xxx") {
		t.Errorf("soft_bounce reply %.40q", got)
	}
	if len(got) != 510 {
		t.Errorf("reply length %d, want 510", len(got))
	}
}

func TestSleepHonoursContext(t *testing.T) {
	var slept time.Duration
	c := coreChecker(t, func(cfg *Config) {
		cfg.RecipientRestrictions = "sleep 3, reject"
		cfg.Sleep = func(ctx context.Context, d time.Duration) error { slept = d; return nil }
	})
	c.Check(context.Background(), StageRecipient, snap("u@a.example"))
	if slept != 3*time.Second {
		t.Errorf("slept %v", slept)
	}
}

func TestHeloRequired(t *testing.T) {
	c := coreChecker(t, func(cfg *Config) { cfg.HeloRequired = true })
	s := snap("")
	s.Helo = ""
	if got := c.Check(context.Background(), StageSender, s).Reply.String(); got != "503 5.5.1 Error: send HELO/EHLO first" {
		t.Errorf("got %q", got)
	}
}

func TestSplitList(t *testing.T) {
	got := splitList("a, b\tc,,{ x, y } check_policy_service { inet:1:2, timeout=1 }, inline:{{k=v}, {k2=v2}}")
	want := []string{"a", "b", "c", "{ x, y }", "check_policy_service", "{ inet:1:2, timeout=1 }", "inline:{{k=v}, {k2=v2}}"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q", got)
	}
}

func TestSelfReferencingClass(t *testing.T) {
	c := coreChecker(t, func(cfg *Config) {
		cfg.Classes = map[string]string{"loop": "loop, permit"}
		cfg.RecipientRestrictions = "loop, reject"
	})
	d := c.Check(context.Background(), StageRecipient, snap("u@x.example"))
	if got := d.Reply.String(); got != "451 4.3.5 Server configuration error" {
		t.Errorf("got %q", got)
	}
}

func TestParseEnvelope(t *testing.T) {
	lax := coreChecker(t, func(cfg *Config) {})
	strict := coreChecker(t, func(cfg *Config) { cfg.StrictRFC821Envelopes = true })
	cases := []struct {
		stage      Stage
		arg        string
		laxWant    string // address, or "!" + reply
		strictWant string
	}{
		{StageSender, "<a@example.com>", "a@example.com", "a@example.com"},
		{StageSender, "<>", "", ""},
		{StageRecipient, "<>", "!501 5.1.3 Bad recipient address syntax", "!501 5.1.3 Bad recipient address syntax"},
		{StageSender, "a@example.com", "a@example.com", "!501 5.1.7 Bad sender address syntax"},
		{StageSender, "<a@example.com> (comment)", "a@example.com", "!501 5.1.7 Bad sender address syntax"},
		{StageRecipient, "<@relay.example:b@example.com>", "b@example.com", "b@example.com"},
		{StageRecipient, "<a@example.com>, <b@example.com>", "!501 5.1.3 Bad recipient address syntax", "!501 5.1.3 Bad recipient address syntax"},
		{StageRecipient, `<"john doe"@example.com>`, "john doe@example.com", "john doe@example.com"},
	}
	for _, tc := range cases {
		for i, c := range []*Checker{lax, strict} {
			want := tc.laxWant
			if i == 1 {
				want = tc.strictWant
			}
			addr, reply, ok := c.ParseEnvelope(context.Background(), tc.stage, tc.arg, false)
			got := addr
			if !ok {
				got = "!" + reply.String()
			}
			if got != want {
				t.Errorf("%v %q strict=%v: got %q, want %q", tc.stage, tc.arg, i == 1, got, want)
			}
		}
	}
}
