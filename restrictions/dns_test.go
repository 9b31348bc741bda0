package restrictions

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/resolver/dnstest"
)

// dnsZone is the DNS data of the tests in this file and dnsbl_test.go.
const dnsZone = `
$ORIGIN example.
$TTL 300
a-only          A     192.0.2.1
aaaa-only       AAAA  2001:db8::1
mx-only         MX    10 mx1.example.
nullmx          MX    0 .
badmx           MX    10 -bad-.example.
nodata          TXT   "no address here"
mx1             A     192.0.2.10
mx2             A     192.0.2.11
mx2             AAAA  2001:db8::11
twomx           MX    10 mx1.example.
twomx           MX    20 mx2.example.
nomx            A     192.0.2.20
numericmx       MX    10 192.0.2.12.
lamemx          MX    10 lame.example.
sub.nsparent    A     192.0.2.30
nsparent        NS    ns1.example.
ns1             A     192.0.2.53
mixed           MX    10 mx1.example.
mixed           MX    10 -bad-.example.
servfail        A     192.0.2.99

; permit_mx_backup
backup          MX    10 primary.example.
backup          MX    20 me.example.
primary         A     192.0.2.40
me              A     192.0.2.25
onlyme          MX    10 me.example.
byname          MX    10 primary.example.
byname          MX    20 local.example.
iamprimary      MX    10 me.example.
iamprimary      MX    20 mx1.example.
backupfail      MX    10 primary.example.
backupfail      MX    20 gone.example.
`

// dnsEnv is a Checker whose DNS is an in-process dnstest server.
type dnsEnv struct {
	t   *testing.T
	srv *dnstest.Server
	c   *Checker
}

// newDNSEnv serves zone and builds a Checker from DefaultConfig without
// relay restrictions and recipient validation, adjusted by edit. Lookups
// time out after 100 ms per try.
func newDNSEnv(t *testing.T, zone string, edit func(*Config), opts ...dnstest.Option) *dnsEnv {
	t.Helper()
	srv := dnstest.New(t, zone)
	opts = append([]dnstest.Option{dnstest.Timeout(100 * time.Millisecond)}, opts...)
	cfg := DefaultConfig()
	cfg.RelayRestrictions = ""
	cfg.RecipientRestrictions = "reject"
	cfg.RejectUnlistedRecipient = false
	cfg.DNS.Resolver = srv.Resolver(opts...)
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &dnsEnv{t: t, srv: srv, c: c}
}

// dnsSnap is a session from 192.0.2.7 (mail.example.com) at RCPT.
func dnsSnap() *Snapshot {
	return &Snapshot{
		ClientAddr: netip.MustParseAddr("192.0.2.7"), ClientName: "client.example", ReverseName: "client.example",
		Helo: "client.example", ESMTP: true, Sender: "alice@a-only.example", Recipient: "bob@a-only.example",
	}
}

// expect checks the reply and that every warning holds one of the
// fragments in warn, and all fragments are seen.
func expect(t *testing.T, what string, d Decision, reply string, warn ...string) {
	t.Helper()
	if got := d.Reply.String(); got != reply {
		t.Errorf("%s: reply %q, want %q (warnings %q)", what, got, reply, d.Warnings)
	}
	for _, w := range warn {
		if !slices.ContainsFunc(d.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("%s: no warning with %q in %q", what, w, d.Warnings)
		}
	}
	if len(warn) == 0 && len(d.Warnings) > 0 {
		t.Errorf("%s: unexpected warnings %q", what, d.Warnings)
	}
}

func TestRejectUnknownHeloHostname(t *testing.T) {
	env := newDNSEnv(t, dnsZone, func(c *Config) {
		c.HeloRestrictions = "reject_unknown_helo_hostname"
		c.RecipientRestrictions = "permit_mynetworks, reject"
	})
	env.srv.ServFail("servfail.example")
	env.srv.Silent("silent.example")
	ctx := context.Background()
	cases := []struct {
		helo, reply string
		warn        []string
	}{
		{"a-only.example", "", nil},
		{"A-Only.Example.", "", nil},
		{"aaaa-only.example", "", nil},
		{"mx-only.example", "", nil},
		// A null MX is fine for the name of an MTA.
		{"nullmx.example", "", nil},
		{"nx.example", "450 4.7.1 <nx.example>: Helo command rejected: Host not found", nil},
		{"nodata.example", "450 4.7.1 <nodata.example>: Helo command rejected: Host not found", nil},
		{"badmx.example", "450 4.7.1 <badmx.example>: Helo command rejected: Malformed DNS server reply",
			[]string{"malformed domain name in resource data of MX record for badmx.example: -bad-.example"}},
		// An MX with a good and a bad host: the good one counts.
		{"mixed.example", "", []string{"malformed domain name"}},
		// Not a valid name: not asked, not found.
		{"no_such..example", "450 4.7.1 <no_such..example>: Helo command rejected: Host not found", nil},
		{"[192.0.2.1]", "", nil},
		{"[192.0.2.300]", "501 5.5.2 <[192.0.2.300]>: Helo command rejected: invalid ip address", nil},
		// A temporary failure defers at the end (defer_if_permit).
		{"servfail.example", "450 4.7.1 <servfail.example>: Helo command rejected: Host not found", nil},
		{"silent.example", "450 4.7.1 <silent.example>: Helo command rejected: Host not found", nil},
	}
	for _, tc := range cases {
		s := dnsSnap()
		s.ClientAddr = netip.MustParseAddr("127.0.0.1")
		s.Helo = tc.helo
		d := env.c.Check(ctx, StageRecipient, s)
		expect(t, tc.helo, d, tc.reply, tc.warn...)
	}

	// With defer_if_permit the HELO stage itself passes and arms the
	// deferral, which a later rejection overrides.
	s := dnsSnap()
	s.Helo = "servfail.example"
	d := env.c.Check(ctx, StageHelo, s)
	expect(t, "helo stage", d, "")
	if d.Txn.HeloDefer == nil {
		t.Errorf("no HELO deferral armed")
	}
	d = env.c.Check(ctx, StageRecipient, s)
	expect(t, "rejected later", d, "554 5.7.1 <bob@a-only.example>: Recipient address rejected: Access denied")
}

func TestRejectUnknownHeloTempfailDefer(t *testing.T) {
	env := newDNSEnv(t, dnsZone, func(c *Config) {
		c.HeloRestrictions = "reject_unknown_hostname"
		c.DNS.UnknownHeloTempfailAction = "defer"
		c.DNS.UnknownHostnameRejectCode = 550
	})
	env.srv.ServFail("servfail.example")
	ctx := context.Background()
	s := dnsSnap()
	s.Helo = "servfail.example"
	expect(t, "defer", env.c.Check(ctx, StageHelo, s), "450 4.7.1 <servfail.example>: Helo command rejected: Host not found")
	s.Helo = "nx.example"
	expect(t, "code", env.c.Check(ctx, StageHelo, s), "550 5.7.1 <nx.example>: Helo command rejected: Host not found")

	// warn_if_reject turns a temporary failure into a logged warning
	// instead of a deferral (DEFER_IF_PERMIT with warn_if_reject set).
	env = newDNSEnv(t, dnsZone, func(c *Config) {
		c.HeloRestrictions = "warn_if_reject reject_unknown_helo_hostname"
	})
	env.srv.ServFail("servfail.example")
	s.Helo = "servfail.example"
	d := env.c.Check(ctx, StageHelo, s)
	expect(t, "warn_if_reject", d, "")
	if len(d.Log) != 1 || d.Log[0].Kind != "reject_warning" ||
		d.Log[0].Text != "450 4.7.1 <servfail.example>: Helo command rejected: Host not found" {
		t.Errorf("log %+v", d.Log)
	}
	if d.Txn.HeloDefer != nil {
		t.Errorf("deferral armed under warn_if_reject")
	}
}

func TestRejectUnknownDomain(t *testing.T) {
	env := newDNSEnv(t, dnsZone, func(c *Config) {
		c.SenderRestrictions = "reject_unknown_sender_domain"
		c.RecipientRestrictions = "reject_unknown_recipient_domain, permit_mynetworks, reject"
		c.Addresses.Mydestination = []string{"local.example"}
	})
	env.srv.ServFail("servfail.example")
	env.srv.Silent("silent.example")
	ctx := context.Background()
	cases := []struct {
		sender, reply string
		warn          []string
	}{
		{"u@a-only.example", "", nil},
		{"u@mx-only.example", "", nil},
		{"u@aaaa-only.example", "", nil},
		{"", "", nil},
		{"u@[192.0.2.1]", "", nil},
		// Our own domains are not looked up.
		{"u@local.example", "", nil},
		{"u@nx.example", "450 4.1.8 <u@nx.example>: Sender address rejected: Domain not found", nil},
		{"u@nodata.example", "450 4.1.8 <u@nodata.example>: Sender address rejected: Domain not found", nil},
		{"u@nullmx.example", "550 5.7.27 <u@nullmx.example>: Sender address rejected: Domain nullmx.example does not accept mail (nullMX)", nil},
		{"u@badmx.example", "450 4.1.8 <u@badmx.example>: Sender address rejected: Malformed DNS server reply", []string{"malformed domain name"}},
		{"u@servfail.example", "450 4.1.8 <u@servfail.example>: Sender address rejected: Domain not found", nil},
		{"u@silent.example", "450 4.1.8 <u@silent.example>: Sender address rejected: Domain not found", nil},
	}
	for _, tc := range cases {
		s := dnsSnap()
		s.ClientAddr = netip.MustParseAddr("127.0.0.1")
		s.Sender = tc.sender
		d := env.c.Check(ctx, StageRecipient, s)
		expect(t, "sender "+tc.sender, d, tc.reply, tc.warn...)
	}
	rcpts := []struct{ rcpt, reply string }{
		{"u@a-only.example", ""},
		{"u@local.example", ""},
		{"u@nx.example", "450 4.1.2 <u@nx.example>: Recipient address rejected: Domain not found"},
		{"u@nullmx.example", "556 5.1.10 <u@nullmx.example>: Recipient address rejected: Domain nullmx.example does not accept mail (nullMX)"},
		{"u@servfail.example", "450 4.1.2 <u@servfail.example>: Recipient address rejected: Domain not found"},
		{"postmaster", ""},
	}
	for _, tc := range rcpts {
		s := dnsSnap()
		s.ClientAddr = netip.MustParseAddr("127.0.0.1")
		s.Recipient = tc.rcpt
		expect(t, "recipient "+tc.rcpt, env.c.Check(ctx, StageRecipient, s), tc.reply)
	}
}

func TestRejectUnknownDomainTempfailAndCodes(t *testing.T) {
	env := newDNSEnv(t, dnsZone, func(c *Config) {
		c.SenderRestrictions = "reject_unknown_address"
		c.DNS.UnknownAddressTempfailAction = "DEFER"
		c.DNS.UnknownAddressRejectCode = 550
	})
	env.srv.ServFail("servfail.example")
	ctx := context.Background()
	s := dnsSnap()
	s.Sender = "u@servfail.example"
	expect(t, "defer", env.c.Check(ctx, StageSender, s), "450 4.1.8 <u@servfail.example>: Sender address rejected: Domain not found")
	s.Sender = "u@nx.example"
	expect(t, "code", env.c.Check(ctx, StageSender, s), "550 5.1.8 <u@nx.example>: Sender address rejected: Domain not found")
	// soft_bounce keeps the null MX rejection temporary.
	env = newDNSEnv(t, dnsZone, func(c *Config) {
		c.SenderRestrictions = "reject_unknown_sender_domain"
		c.SoftBounce = true
	})
	s.Sender = "u@nullmx.example"
	expect(t, "soft_bounce", env.c.Check(ctx, StageSender, s), "450 4.7.27 <u@nullmx.example>: Sender address rejected: Domain nullmx.example does not accept mail (nullMX)")
}

func TestTempfailActionConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DNS.UnknownHeloTempfailAction = "reject"
	_, err := New(context.Background(), cfg)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Param != "unknown_helo_hostname_tempfail_action" {
		t.Fatalf("New: %v", err)
	}
	c, err := config.Parse("main.cf", strings.NewReader("unknown_address_tempfail_action = later\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ConfigFrom(c)
	if !errors.As(err, &ce) || ce.Param != "unknown_address_tempfail_action" ||
		!strings.Contains(err.Error(), "bad configuration: unknown_address_tempfail_action = later") {
		t.Fatalf("ConfigFrom: %v", err)
	}
}

func TestDNSConfigFrom(t *testing.T) {
	c, err := config.Parse("main.cf", strings.NewReader(`
reject_tempfail_action = defer
unknown_hostname_reject_code = 550
maps_rbl_reject_code = 521
rbl_reply_maps = static:{554 listed}
maps_rbl_domains = a.example, b.example
permit_mx_backup_networks = 192.0.2.0/24
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.DNS
	want := DNSConfig{
		UnknownHostnameRejectCode:    550,
		UnknownAddressRejectCode:     450,
		UnknownHeloTempfailAction:    "defer",
		UnknownAddressTempfailAction: "defer",
		MapsRBLRejectCode:            521,
		DefaultRBLReply:              DefaultRBLReply,
		RBLReplyMaps:                 []string{"static:{554 listed}"},
		MapsRBLDomains:               []string{"a.example", "b.example"},
		PermitMXBackupNetworks:       []string{"192.0.2.0/24"},
		MXBackupNetworksParentStyle:  true,
	}
	if got.UnknownHostnameRejectCode != want.UnknownHostnameRejectCode ||
		got.UnknownAddressRejectCode != want.UnknownAddressRejectCode ||
		got.UnknownHeloTempfailAction != want.UnknownHeloTempfailAction ||
		got.UnknownAddressTempfailAction != want.UnknownAddressTempfailAction ||
		got.MapsRBLRejectCode != want.MapsRBLRejectCode || got.DefaultRBLReply != want.DefaultRBLReply ||
		!slices.Equal(got.RBLReplyMaps, want.RBLReplyMaps) || !slices.Equal(got.MapsRBLDomains, want.MapsRBLDomains) ||
		!slices.Equal(got.PermitMXBackupNetworks, want.PermitMXBackupNetworks) ||
		got.MXBackupNetworksParentStyle != want.MXBackupNetworksParentStyle {
		t.Errorf("DNSConfig\n got %+v\nwant %+v", got, want)
	}
}

// TestDNSDefaultsOracle compares the DNS defaults with Postfix's.
func TestDNSDefaultsOracle(t *testing.T) {
	dir := oracle.ConfigDir(t, "")
	names := []string{"default_rbl_reply", "unknown_hostname_reject_code", "unknown_address_reject_code",
		"maps_rbl_reject_code", "unknown_helo_hostname_tempfail_action", "unknown_address_tempfail_action"}
	res := oracle.Run(t, nil, "postconf", append([]string{"-c", dir, "-dhx"}, names...)...)
	if res.Code != 0 {
		t.Fatalf("postconf: %s", res.Stderr)
	}
	want := strings.Split(strings.TrimSuffix(string(res.Stdout), "\n"), "\n")
	d := defaultDNSConfig()
	fromCfg, err := ConfigFrom(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, dc := range []DNSConfig{d, fromCfg.DNS} {
		got := []string{dc.DefaultRBLReply, strconv.Itoa(dc.UnknownHostnameRejectCode), strconv.Itoa(dc.UnknownAddressRejectCode),
			strconv.Itoa(dc.MapsRBLRejectCode), dc.UnknownHeloTempfailAction, dc.UnknownAddressTempfailAction}
		if !slices.Equal(got, want) {
			t.Errorf("defaults %q, postconf -dx %q", got, want)
		}
	}
}

// accessTable is an in-memory access table for the check_*_access
// tests.
func accessTable(kv map[string]string) map[string]maps.Map {
	return map[string]maps.Map{"test:access": maps.StaticMap(kv)}
}

func TestCheckServerAccess(t *testing.T) {
	table := map[string]string{
		"mx1.example":    "REJECT mx1 by name",
		"192.0.2.11":     "REJECT mx2 by address",
		"nomx.example":   "REJECT domain as its own MX",
		"192.0.2.20":     "REJECT nomx address",
		"192.0.2.12":     "REJECT numeric MX name",
		"ns1.example":    "REJECT ns1",
		"192.0.2.1":      "REJECT a-only address",
		"a-only.example": "REJECT a-only by name",
		"192.0.2.5":      "REJECT literal",
		"nullmx.example": "REJECT never for a null MX",
		"ok.example":     "OK",
		"2001:db8::11":   "REJECT v6",
	}
	env := newDNSEnv(t, dnsZone+"ok MX 10 ok.example.\nok A 192.0.2.77\n", func(c *Config) {
		c.SenderRestrictions = "check_sender_mx_access test:access"
		c.Tables = accessTable(table)
	})
	env.srv.ServFail("servfail.example")
	ctx := context.Background()
	cases := []struct {
		sender, reply string
		warn          []string
	}{
		{"u@mx-only.example", "554 5.7.1 <u@mx-only.example>: Sender address rejected: mx1 by name", nil},
		{"u@twomx.example", "554 5.7.1 <u@twomx.example>: Sender address rejected: mx1 by name", nil},
		{"u@nomx.example", "554 5.7.1 <u@nomx.example>: Sender address rejected: domain as its own MX", nil},
		{"u@numericmx.example", "554 5.7.1 <u@numericmx.example>: Sender address rejected: numeric MX name",
			[]string{"numeric domain name in resource data of MX record for numericmx.example: 192.0.2.12"}},
		{"u@nullmx.example", "", nil},
		{"u@[192.0.2.5]", "554 5.7.1 <u@[192.0.2.5]>: Sender address rejected: literal", nil},
		{"u@[IPv6:2001:db8::11]", "554 5.7.1 <u@[IPv6:2001:db8::11]>: Sender address rejected: v6", nil},
		{"u@[bogus]", "", nil},
		// A domain that does not exist is its own (unresolvable) MX.
		{"u@nx.example", "", []string{"Unable to look up MX host nx.example for Sender address u@nx.example: Name or service not known"}},
		{"u@servfail.example", "", []string{"Unable to look up MX host for servfail.example: Host not found, try again"}},
		{"u@lamemx.example", "", []string{"Unable to look up MX host lame.example for Sender address u@lamemx.example: Name or service not known"}},
		{"u@ok.example", "451 4.3.5 Server configuration error", []string{
			"restriction check_sender_mx_access returns OK for u@ok.example",
			"this is not allowed for security reasons",
			"use DUNNO instead of OK if you want to make an exception"}},
	}
	for _, tc := range cases {
		s := dnsSnap()
		s.Sender = tc.sender
		expect(t, tc.sender, env.c.Check(ctx, StageSender, s), tc.reply, tc.warn...)
	}
}

func TestCheckServerAccessVariants(t *testing.T) {
	table := map[string]string{
		"mx1.example": "REJECT mx1",
		"192.0.2.1":   "REJECT a-only address",
		"ns1.example": "REJECT ns1",
		"192.0.2.11":  "REJECT mx2 address",
	}
	ctx := context.Background()
	cases := []struct {
		list  string
		stage Stage
		edit  func(*Snapshot)
		reply string
	}{
		{"check_client_mx_access test:access", StageClient, func(s *Snapshot) { s.ClientName = "mx-only.example" },
			"554 5.7.1 <mx-only.example[192.0.2.7]>: Client host rejected: mx1"},
		{"check_client_mx_access test:access", StageClient, func(s *Snapshot) { s.ClientName = "unknown" }, ""},
		// The A form looks up the addresses only, not the name.
		{"check_client_a_access test:access", StageClient, func(s *Snapshot) { s.ClientName = "a-only.example" },
			"554 5.7.1 <a-only.example[192.0.2.7]>: Client host rejected: a-only address"},
		{"check_client_a_access test:access", StageClient, func(s *Snapshot) { s.ClientName = "mx1.example" }, ""},
		// A name without NS records has those of its parent.
		{"check_client_ns_access test:access", StageClient, func(s *Snapshot) { s.ClientName = "sub.nsparent.example" },
			"554 5.7.1 <sub.nsparent.example[192.0.2.7]>: Client host rejected: ns1"},
		{"check_reverse_client_hostname_mx_access test:access", StageClient, func(s *Snapshot) { s.ReverseName = "twomx.example" },
			"554 5.7.1 <twomx.example>: Unverified Client host rejected: mx1"},
		{"check_reverse_client_hostname_a_access test:access", StageClient, func(s *Snapshot) { s.ReverseName = "unknown" }, ""},
		{"check_reverse_client_hostname_ns_access test:access", StageClient, func(s *Snapshot) { s.ReverseName = "nsparent.example" },
			"554 5.7.1 <nsparent.example>: Unverified Client host rejected: ns1"},
		{"check_helo_mx_access test:access", StageHelo, func(s *Snapshot) { s.Helo = "mx-only.example" },
			"554 5.7.1 <mx-only.example>: Helo command rejected: mx1"},
		{"check_helo_a_access test:access", StageHelo, func(s *Snapshot) { s.Helo = "a-only.example" },
			"554 5.7.1 <a-only.example>: Helo command rejected: a-only address"},
		{"check_helo_ns_access test:access", StageHelo, func(s *Snapshot) { s.Helo = "sub.nsparent.example" },
			"554 5.7.1 <sub.nsparent.example>: Helo command rejected: ns1"},
		{"check_sender_a_access test:access", StageSender, func(s *Snapshot) { s.Sender = "x@a-only.example" },
			"554 5.7.1 <x@a-only.example>: Sender address rejected: a-only address"},
		{"check_sender_ns_access test:access", StageSender, func(s *Snapshot) { s.Sender = "x@sub.nsparent.example" },
			"554 5.7.1 <x@sub.nsparent.example>: Sender address rejected: ns1"},
		// No NS literal: address literals have no name servers.
		{"check_sender_ns_access test:access", StageSender, func(s *Snapshot) { s.Sender = "x@[192.0.2.1]" }, ""},
		{"check_sender_a_access test:access", StageSender, func(s *Snapshot) { s.Sender = "x@[192.0.2.1]" },
			"554 5.7.1 <x@[192.0.2.1]>: Sender address rejected: a-only address"},
		{"check_recipient_mx_access test:access", StageRecipient, func(s *Snapshot) { s.Recipient = "y@twomx.example" },
			"554 5.7.1 <y@twomx.example>: Recipient address rejected: mx1"},
		{"check_recipient_a_access test:access", StageRecipient, func(s *Snapshot) { s.Recipient = "y@mx2.example" },
			"554 5.7.1 <y@mx2.example>: Recipient address rejected: mx2 address"},
		{"check_recipient_ns_access test:access", StageRecipient, func(s *Snapshot) { s.Recipient = "y@nsparent.example" },
			"554 5.7.1 <y@nsparent.example>: Recipient address rejected: ns1"},
	}
	for _, tc := range cases {
		env := newDNSEnv(t, dnsZone, func(c *Config) {
			c.Tables = accessTable(table)
			setStageList(c, tc.stage, tc.list)
		})
		s := dnsSnap()
		s.ClientAddr = netip.MustParseAddr("127.0.0.1")
		tc.edit(s)
		if tc.stage == StageClient {
			s.ClientAddr = netip.MustParseAddr("192.0.2.7")
		}
		d := env.c.Check(ctx, tc.stage, s)
		if got := d.Reply.String(); got != tc.reply {
			t.Errorf("%s: reply %q, want %q (warnings %q)", tc.list, got, tc.reply, d.Warnings)
		}
	}
}

func TestNSWalkFails(t *testing.T) {
	env := newDNSEnv(t, dnsZone, func(c *Config) {
		c.SenderRestrictions = "check_sender_ns_access test:access"
		c.Tables = accessTable(map[string]string{"ns1.example": "REJECT"})
	})
	env.srv.ServFail("sub.nsparent.example")
	ctx := context.Background()
	s := dnsSnap()
	s.Sender = "x@sub.nsparent.example"
	expect(t, "servfail", env.c.Check(ctx, StageSender, s), "",
		"Unable to look up NS host for sub.nsparent.example: Host not found, try again")
	// Without any NS record up to the top, the warning names the address.
	s.Sender = "x@nowhere.invalid"
	expect(t, "walk to the top", env.c.Check(ctx, StageSender, s), "",
		"Unable to look up NS host for x@nowhere.invalid: Host not found")
}

func TestPermitMXBackup(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("192.0.2.25")}
	ctx := context.Background()
	run := func(t *testing.T, edit func(*Config), rcpt string) Decision {
		t.Helper()
		env := newDNSEnv(t, dnsZone, func(c *Config) {
			c.RecipientRestrictions = "permit_mx_backup, reject"
			c.OwnAddrs = own
			c.Addresses.Mydestination = []string{"local.example"}
			c.PermitLog = []string{"permit_mx_backup"}
			if edit != nil {
				edit(c)
			}
		})
		env.srv.ServFail("gone.example")
		s := dnsSnap()
		s.Recipient = rcpt
		return env.c.Check(ctx, StageRecipient, s)
	}
	reject := func(rcpt string) string {
		return "554 5.7.1 <" + rcpt + ">: Recipient address rejected: Access denied"
	}
	d := run(t, nil, "u@backup.example")
	expect(t, "backup", d, "")
	if len(d.Log) != 1 || d.Log[0] != (LogEntry{"permit", "action=permit_mx_backup for Recipient address=u@backup.example"}) {
		t.Errorf("log %+v", d.Log)
	}
	expect(t, "by name", run(t, nil, "u@byname.example"), "")
	expect(t, "local domain", run(t, nil, "u@local.example"), "")
	expect(t, "only MX", run(t, nil, "u@onlyme.example"), reject("u@onlyme.example"))
	expect(t, "primary", run(t, nil, "u@iamprimary.example"), reject("u@iamprimary.example"))
	expect(t, "not listed", run(t, nil, "u@twomx.example"), reject("u@twomx.example"))
	expect(t, "no MX", run(t, nil, "u@nx.example"), reject("u@nx.example"))
	expect(t, "literal", run(t, nil, "u@[192.0.2.99]"), reject("u@[192.0.2.99]"))
	// An address literal of this machine is a local destination.
	expect(t, "own literal", run(t, nil, "u@[192.0.2.25]"), "")
	networks := func(n ...string) func(*Config) {
		return func(c *Config) { c.DNS.PermitMXBackupNetworks = n }
	}
	expect(t, "networks match", run(t, networks("192.0.2.0/26"), "u@backup.example"), "")
	expect(t, "networks mismatch", run(t, networks("198.51.100.0/24"), "u@backup.example"), reject("u@backup.example"))
	// A backup MX host that cannot be looked up arms defer_if_reject.
	expect(t, "lookup failure", run(t, nil, "u@backupfail.example"),
		"450 4.4.4 <u@backupfail.example>: Recipient address rejected: Unable to look up mail exchanger host gone.example: Temporary failure in name resolution")
}

func TestPermitMXBackupDNSFailure(t *testing.T) {
	env := newDNSEnv(t, dnsZone, func(c *Config) {
		c.RecipientRestrictions = "permit_mx_backup, reject"
	})
	env.srv.ServFail("servfail.example")
	s := dnsSnap()
	s.Recipient = "u@servfail.example"
	expect(t, "servfail", env.c.Check(context.Background(), StageRecipient, s),
		"450 4.4.4 <u@servfail.example>: Recipient address rejected: Unable to look up mail exchanger information: Host not found, try again")
}

func TestNoResolver(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RelayRestrictions = ""
	cfg.RecipientRestrictions = "reject_rbl_client zen.example, check_recipient_mx_access test:access, permit_mynetworks, reject"
	cfg.HeloRestrictions = "reject_unknown_helo_hostname"
	cfg.Tables = accessTable(map[string]string{"x": "REJECT"})
	cfg.RejectUnlistedRecipient = false
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := dnsSnap()
	s.ClientAddr = netip.MustParseAddr("127.0.0.1")
	expect(t, "no resolver", c.Check(context.Background(), StageRecipient, s),
		"450 4.7.1 <client.example>: Helo command rejected: Host not found",
		"1.0.0.127.zen.example: RBL lookup error: no DNS resolver configured",
		"Unable to look up MX host for a-only.example: Host not found, try again")
}

// setStageList puts a restriction list under test in the list of its
// stage; at RCPT it is followed by "permit_mynetworks, reject" so that
// the Checker can be built.
func setStageList(c *Config, st Stage, list string) {
	switch st {
	case StageClient:
		c.ClientRestrictions = list
	case StageHelo:
		c.HeloRestrictions = list
	case StageSender:
		c.SenderRestrictions = list
	case StageRecipient:
		c.RecipientRestrictions = list + ", permit_mynetworks, reject"
	}
}
