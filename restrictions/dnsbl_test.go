package restrictions

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/resolver/dnstest"
)

// rblZone holds the DNS lists of the tests.
var rblZone = `
$ORIGIN zen.example.
2.0.0.127      A    127.0.0.2
2.0.0.127      TXT  "listed in zen"
3.0.0.127      A    127.0.0.3
3.0.0.127      A    127.0.0.10
3.0.0.127      TXT  "three"
4.0.0.127      A    127.0.0.4
5.0.0.127      A    127.0.0.2
5.0.0.127      TXT  "first"
5.0.0.127      TXT  "second"
6.0.0.127      A    127.0.0.2
6.0.0.127      TXT  "` + strings.Repeat("a", 250) + `"
6.0.0.127      TXT  "` + strings.Repeat("b", 250) + `"
6.0.0.127      TXT  "` + strings.Repeat("c", 20) + `"
7.0.0.127      A    127.0.0.2
7.0.0.127      TXT  "ctl\001x caf\195\169"
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2 A 127.0.0.2
$ORIGIN rhs.example.
bad.example    A    127.0.0.2
bad.example    TXT  "bad domain"
xn--bcher-kva.example A 127.0.0.2
$ORIGIN wl.example.
2.0.0.127      A    127.0.9.1
$ORIGIN rhswl.example.
good.example   A    127.0.0.2
$ORIGIN a.example.
2.0.0.127      A    127.0.0.2
$ORIGIN b.example.
2.0.0.127      A    127.0.0.2
3.0.0.127      A    127.0.0.2
$ORIGIN c.example.
4.0.0.127      A    127.0.0.2
$ORIGIN d.example.
3.0.0.127      A    127.0.0.2
`

// rblSnap is a client at addr, named client.example.
func rblSnap(addr string) *Snapshot {
	s := dnsSnap()
	s.ClientAddr = netip.MustParseAddr(addr)
	return s
}

func TestRejectRBLClient(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		list, addr, reply string
		warn              []string
	}{
		{"reject_rbl_client zen.example", "127.0.0.2",
			"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed in zen", nil},
		{"reject_rbl zen.example", "127.0.0.2",
			"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed in zen", nil},
		// No TXT record: no reason.
		{"reject_rbl_client zen.example", "127.0.0.4",
			"554 5.7.1 Service unavailable; Client host [127.0.0.4] blocked using zen.example", nil},
		{"reject_rbl_client zen.example", "127.0.0.9", "", nil},
		{"reject_rbl_client zen.example", "127.0.0.5",
			"554 5.7.1 Service unavailable; Client host [127.0.0.5] blocked using zen.example; first / second", nil},
		// TXT records joined up to 500 characters.
		// (and the reply is cut at 510 characters).
		{"reject_rbl_client zen.example", "127.0.0.6",
			("554 5.7.1 Service unavailable; Client host [127.0.0.6] blocked using zen.example; " +
				strings.Repeat("a", 250) + " / " + strings.Repeat("b", 247))[:510], nil},
		// Control characters become spaces, as do the bytes of non-ASCII
		// text (dns_get_rr keeps printable ASCII only).
		{"reject_rbl_client zen.example", "127.0.0.7",
			"554 5.7.1 Service unavailable; Client host [127.0.0.7] blocked using zen.example; ctl x caf  ", nil},
		// Reply filters; the filter is not shown.
		{"reject_rbl_client zen.example=127.0.0.[3..9]", "127.0.0.2", "", nil},
		{"reject_rbl_client zen.example=127.0.0.[3..9]", "127.0.0.3",
			"554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using zen.example; three", nil},
		{"reject_rbl_client zen.example=127.0.0.10", "127.0.0.3",
			"554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using zen.example; three", nil},
		{"reject_rbl_client zen.example=127.0.[0;1].[2;4]", "127.0.0.4",
			"554 5.7.1 Service unavailable; Client host [127.0.0.4] blocked using zen.example", nil},
		{"reject_rbl_client zen.example=[127.0.0.2]", "127.0.0.2",
			"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed in zen", nil},
		{"reject_rbl_client zen.example=127.0.0", "127.0.0.9", "451 4.3.5 Server configuration error",
			[]string{`RBL reply error: need "." at "127.0.0><"`}},
		// IPv6: 32 reversed nibbles.
		{"reject_rbl_client zen.example", "2001:db8::1",
			"554 5.7.1 Service unavailable; Client host [2001:db8::1] blocked using zen.example", nil},
		{"reject_rbl_client zen.example", "::ffff:127.0.0.2",
			"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed in zen", nil},
		// Trailing dot and case do not matter to the query.
		{"reject_rbl_client ZEN.example.", "127.0.0.4",
			"554 5.7.1 Service unavailable; Client host [127.0.0.4] blocked using ZEN.example.", nil},
		// Missing argument: a warning, and no restriction.
		{"reject_rbl_client", "127.0.0.2", "", []string{"restriction reject_rbl_client requires domain name argument"}},
	}
	for _, tc := range cases {
		env := newDNSEnv(t, rblZone, func(c *Config) { c.ClientRestrictions = tc.list })
		expect(t, tc.list+" "+tc.addr, env.c.Check(ctx, StageClient, rblSnap(tc.addr)), tc.reply, tc.warn...)
	}
}

// TestRBLFromConfig builds the Checker from a main.cf.
func TestRBLFromConfig(t *testing.T) {
	dir := t.TempDir()
	table := filepath.Join(dir, "rbl_replies")
	if err := os.WriteFile(table, []byte("zen.example=127.0.0.[2..3] $rbl_code 5.7.1 Rejected: $rbl_what is in $rbl_domain\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cf, err := config.Parse("main.cf", strings.NewReader(
		"compatibility_level = 3.6\n"+
			"smtpd_client_restrictions = reject_rbl_client zen.example=127.0.0.[2..3], reject_rhsbl_client rhs.example\n"+
			"rbl_reply_maps = texthash:"+table+"\n"+
			"maps_rbl_reject_code = 550\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.New(t, rblZone)
	c, err := FromConfig(context.Background(), cf, Options{Resolver: srv.Resolver()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	expect(t, "template", c.Check(ctx, StageClient, rblSnap("127.0.0.2")), "550 5.7.1 Rejected: 127.0.0.2 is in zen.example")
	s := rblSnap("127.0.0.9")
	s.ClientName = "bad.example"
	expect(t, "default", c.Check(ctx, StageClient, s),
		"550 5.7.1 Service unavailable; Client host [bad.example] blocked using rhs.example; bad domain")
}

func TestRBLLookupFailure(t *testing.T) {
	ctx := context.Background()
	env := newDNSEnv(t, rblZone, func(c *Config) {
		c.ClientRestrictions = "reject_rbl_client zen.example, reject_rbl_client c.example"
	}, dnstest.NoCache())
	env.srv.ServFail("*.zen.example")
	env.srv.Silent("*.c.example")
	d := env.c.Check(ctx, StageClient, rblSnap("127.0.0.2"))
	// Not listed, with a warning for each list.
	expect(t, "failures", d, "", "2.0.0.127.zen.example: RBL lookup error:", "2.0.0.127.c.example: RBL lookup error:")
	// The failures are remembered for a while and reported once.
	n := env.srv.Count("2.0.0.127.zen.example", "A")
	expect(t, "again", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")), "")
	if got := env.srv.Count("2.0.0.127.zen.example", "A"); got != n {
		t.Errorf("failure not cached: %d queries, then %d", n, got)
	}
	// After rblSoftTTL it is asked again and answers.
	env.srv.Restore()
	now := time.Now()
	env.c.dns.cache.now = func() time.Time { return now.Add(rblSoftTTL + time.Second) }
	expect(t, "recovered", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")),
		"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed in zen")
}

func TestRBLCache(t *testing.T) {
	ctx := context.Background()
	env := newDNSEnv(t, rblZone, func(c *Config) {
		c.ClientRestrictions = "reject_rbl_client zen.example"
		c.DNS.RBLCacheTTL = time.Hour
		c.DNS.RBLCacheSize = 2
	}, dnstest.NoCache())
	var now time.Time
	var mu sync.Mutex
	now = time.Now()
	env.c.dns.cache.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	reply := "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed in zen"
	for i := 0; i < 3; i++ {
		expect(t, "listed", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")), reply)
		expect(t, "not listed", env.c.Check(ctx, StageClient, rblSnap("127.0.0.9")), "")
	}
	if a, txt, neg := env.srv.Count("2.0.0.127.zen.example", "A"), env.srv.Count("2.0.0.127.zen.example", "TXT"),
		env.srv.Count("9.0.0.127.zen.example", "A"); a != 1 || txt != 1 || neg != 1 {
		t.Errorf("queries: A %d, TXT %d, negative %d; want 1 each", a, txt, neg)
	}
	// The TTL bound.
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	expect(t, "expired", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")), reply)
	if a := env.srv.Count("2.0.0.127.zen.example", "A"); a != 2 {
		t.Errorf("after the TTL: %d A queries, want 2", a)
	}
	// The size bound: two more names push the first out.
	env.c.Check(ctx, StageClient, rblSnap("127.0.0.3"))
	env.c.Check(ctx, StageClient, rblSnap("127.0.0.4"))
	expect(t, "evicted", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")), reply)
	if a := env.srv.Count("2.0.0.127.zen.example", "A"); a != 3 {
		t.Errorf("after eviction: %d A queries, want 3", a)
	}
}

func TestRBLReplyTemplates(t *testing.T) {
	ctx := context.Background()
	templates := maps.StaticMap{
		"zen.example": "$rbl_code 5.7.9 $rbl_class [$rbl_what] by $rbl_domain${rbl_reason?: $rbl_reason}" +
			" client=$client name=$client_name addr=$client_address port=$client_port rev=$reverse_client_name" +
			" helo=$helo_name from=$sender/$sender_name/$sender_domain to=$recipient/$recipient_name/$recipient_domain" +
			" txt=$rbl_txt server=$server_name",
		"zen.example=127.0.0.[2..3]": "451 try later ${rbl_reason:no reason}",
		"a.example":                  "$rbl_code $no_such_name",
		"b.example":                  "${rbl_code",
		"c.example":                  "hello $rbl_what",
		"d.example":                  "$rbl_code ${rbl_txt:no txt} 1.1.1 x",
	}
	fail := maps.FuncMap(func(context.Context, string) (string, bool, error) {
		return "", false, errors.New("table broken")
	})
	cases := []struct {
		list, addr, reply string
		warn              []string
	}{
		{"reject_rbl_client zen.example", "127.0.0.2",
			"554 5.7.9 Client host [127.0.0.2] by zen.example: listed in zen client=client.example[127.0.0.2]" +
				" name=client.example addr=127.0.0.2 port=25 rev=rev.example helo=helo.example from=<>/<>/" +
				" to=bob@a-only.example/bob/a-only.example txt=listed in zen server=mx.example", nil},
		// The key is the argument as written, filter and all.
		{"reject_rbl_client zen.example=127.0.0.[2..3]", "127.0.0.4", "", nil},
		{"reject_rbl_client zen.example=127.0.0.[2..3]", "127.0.0.2", "451 4.7.1 try later ", nil},
		// Postfix 3.7 does not try the domain without the filter.
		{"reject_rbl_client zen.example=127.0.0.4", "127.0.0.4",
			"554 5.7.1 Service unavailable; Client host [127.0.0.4] blocked using zen.example", nil},
		{"reject_rbl_client a.example", "127.0.0.2",
			"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using a.example", []string{
				`unknown macro name "no_such_name" in expansion request`,
				"rbl_reject_reply: bad rbl reply template for domain a.example: $rbl_code $no_such_name"}},
		{"reject_rbl_client b.example", "127.0.0.2",
			"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using b.example", []string{
				"rbl_reject_reply: bad rbl reply template for domain b.example: ${rbl_code"}},
		{"reject_rbl_client c.example", "127.0.0.4", "450 4.7.1 Service unavailable",
			[]string{"rbl response code configuration error: hello 127.0.0.4"}},
		{"reject_rbl_client d.example", "127.0.0.3", "554 5.7.1 no txt 1.1.1 x", nil},
	}
	for _, tc := range cases {
		env := newDNSEnv(t, rblZone, func(c *Config) {
			c.ClientRestrictions = tc.list
			c.RecipientRestrictions = "permit_mynetworks, reject"
			c.DNS.RBLReplyMaps = []string{"test:rbl"}
			c.Tables = map[string]maps.Map{"test:rbl": templates}
			c.Addresses.Myhostname = "mx.example"
		})
		s := rblSnap(tc.addr)
		s.ClientPort = 25
		s.ReverseName = "rev.example"
		s.Helo = "helo.example"
		s.Sender = ""
		expect(t, tc.list+" "+tc.addr, env.c.Check(ctx, StageRecipient, s), tc.reply, tc.warn...)
	}

	// A broken template table is a configuration error.
	env := newDNSEnv(t, rblZone, func(c *Config) {
		c.ClientRestrictions = "reject_rbl_client zen.example"
		c.DNS.RBLReplyMaps = []string{"test:rbl"}
		c.Tables = map[string]maps.Map{"test:rbl": fail}
	})
	expect(t, "broken table", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")),
		"451 4.3.5 Server configuration error", "table broken")

	// A different default template and reply code.
	env = newDNSEnv(t, rblZone, func(c *Config) {
		c.ClientRestrictions = "reject_rbl_client zen.example"
		c.DNS.DefaultRBLReply = "$rbl_code 4.7.1 go away, $client_address"
		c.DNS.MapsRBLRejectCode = 550
	})
	expect(t, "default template", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")), "550 5.7.1 go away, 127.0.0.2")
	env = newDNSEnv(t, rblZone, func(c *Config) {
		c.ClientRestrictions = "reject_rbl_client zen.example"
		c.DNS.DefaultRBLReply = "$rbl_code $nothing"
	})
	expect(t, "bad default template", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")),
		"451 4.3.5 Server configuration error", "rbl_reject_reply: bad default rbl reply template: $rbl_code $nothing")
}

func TestRHSBL(t *testing.T) {
	ctx := context.Background()
	const listed = "554 5.7.1 Service unavailable; "
	cases := []struct {
		list  string
		stage Stage
		edit  func(*Snapshot)
		reply string
	}{
		{"reject_rhsbl_sender rhs.example", StageSender, func(s *Snapshot) { s.Sender = "u@bad.example" },
			listed + "Sender address [u@bad.example] blocked using rhs.example; bad domain"},
		{"reject_rhsbl_sender rhs.example", StageSender, func(s *Snapshot) { s.Sender = "u@good.example" }, ""},
		{"reject_rhsbl_sender rhs.example", StageSender, func(s *Snapshot) { s.Sender = "" }, ""},
		{"reject_rhsbl_sender rhs.example", StageSender, func(s *Snapshot) { s.Sender = "u@[127.0.0.2]" }, ""},
		// A numeric last label is never asked about.
		{"reject_rhsbl_sender rhs.example", StageSender, func(s *Snapshot) { s.Sender = "u@bad.example.123" }, ""},
		{"reject_rhsbl_sender rhs.example", StageSender, func(s *Snapshot) { s.Sender = "u@bücher.example" },
			// Bytes outside smtpd_expansion_filter become '_' in the reply.
			listed + "Sender address [u@b__cher.example] blocked using rhs.example"},
		{"reject_rhsbl_sender rhs.example=127.0.0.3", StageSender, func(s *Snapshot) { s.Sender = "u@bad.example" }, ""},
		{"reject_rhsbl_client rhs.example", StageClient, func(s *Snapshot) { s.ClientName = "bad.example" },
			listed + "Client host [bad.example] blocked using rhs.example; bad domain"},
		{"reject_rhsbl_client rhs.example", StageClient, func(s *Snapshot) { s.ClientName = "unknown" }, ""},
		{"reject_rhsbl_reverse_client rhs.example", StageClient, func(s *Snapshot) { s.ReverseName = "bad.example" },
			listed + "Unverified Client host [bad.example] blocked using rhs.example; bad domain"},
		{"reject_rhsbl_reverse_client rhs.example", StageClient, func(s *Snapshot) { s.ReverseName = "" }, ""},
		{"reject_rhsbl_helo rhs.example", StageHelo, func(s *Snapshot) { s.Helo = "bad.example" },
			listed + "Helo command [bad.example] blocked using rhs.example; bad domain"},
		{"reject_rhsbl_helo rhs.example", StageHelo, func(s *Snapshot) { s.Helo = "[127.0.0.2]" }, ""},
		{"reject_rhsbl_recipient rhs.example", StageRecipient, func(s *Snapshot) { s.Recipient = "u@bad.example" },
			listed + "Recipient address [u@bad.example] blocked using rhs.example; bad domain"},
	}
	for _, tc := range cases {
		env := newDNSEnv(t, rblZone, func(c *Config) {
			setStageList(c, tc.stage, tc.list)
		})
		s := rblSnap("127.0.0.1")
		tc.edit(s)
		expect(t, tc.list, env.c.Check(ctx, tc.stage, s), tc.reply)
	}
}

func TestDNSWL(t *testing.T) {
	ctx := context.Background()
	env := newDNSEnv(t, rblZone, func(c *Config) {
		c.ClientRestrictions = "permit_dnswl_client wl.example=127.0.[0..255].[0..255], permit_rhswl_client rhswl.example, reject"
		c.RelayRestrictions = "reject_unauth_destination"
		c.RecipientRestrictions = ""
		c.Addresses.Mydestination = []string{"a-only.example"}
		c.PermitLog = []string{"static:all"}
	})
	d := env.c.Check(ctx, StageClient, rblSnap("127.0.0.2"))
	expect(t, "listed", d, "")
	if len(d.Log) != 1 || d.Log[0] != (LogEntry{"permit", "action=permit_dnswl_client for Client host=client.example[127.0.0.2]"}) {
		t.Errorf("log %+v", d.Log)
	}
	s := rblSnap("127.0.0.9")
	expect(t, "not listed", env.c.Check(ctx, StageClient, s),
		"554 5.7.1 <client.example[127.0.0.9]>: Client host rejected: Access denied")
	s.ClientName = "good.example"
	d = env.c.Check(ctx, StageClient, s)
	expect(t, "rhswl", d, "")
	if len(d.Log) != 1 || d.Log[0] != (LogEntry{"permit", "action=permit_rhswl_client for Client host=good.example[127.0.0.9]"}) {
		t.Errorf("log %+v", d.Log)
	}

	// At RCPT an allow list does not let an unauthorized recipient
	// through: it is ignored, and the client list rejects.
	s = rblSnap("127.0.0.2")
	expect(t, "authorized", env.c.Check(ctx, StageRecipient, s), "")
	s.Recipient = "u@elsewhere.example"
	expect(t, "unauthorized", env.c.Check(ctx, StageRecipient, s),
		"554 5.7.1 <client.example[127.0.0.2]>: Client host rejected: Access denied")

	// A lookup failure turns the rejection into a deferral.
	env.srv.ServFail("*.wl.example", "*.rhswl.example")
	s = rblSnap("127.0.0.8")
	s.ClientName = "other.example"
	expect(t, "failure", env.c.Check(ctx, StageClient, s),
		"450 4.7.1 <127.0.0.8>: Client host rejected: Service unavailable",
		"8.0.0.127.wl.example: RBL lookup error:", "other.example.rhswl.example: RBL lookup error:")
}

func TestRejectMapsRBL(t *testing.T) {
	ctx := context.Background()
	env := newDNSEnv(t, rblZone, func(c *Config) {
		c.ClientRestrictions = "reject_maps_rbl"
		c.DNS.MapsRBLDomains = []string{"a.example", "zen.example"}
	})
	warn := `support for restriction "reject_maps_rbl" will be removed from Postfix; use "reject_rbl_client domain-name" instead`
	expect(t, "first", env.c.Check(ctx, StageClient, rblSnap("127.0.0.4")),
		"554 5.7.1 Service unavailable; Client host [127.0.0.4] blocked using zen.example", warn)
	expect(t, "once", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")),
		"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using a.example")
	expect(t, "none", env.c.Check(ctx, StageClient, rblSnap("127.0.0.9")), "")
}

// rblLists are DNSBL restrictions in the order the equivalence test
// combines them.
var rblLists = []string{
	"reject_rbl_client a.example",
	"reject_rbl_client b.example",
	"permit_dnswl_client wl.example",
	"reject_rbl_client c.example=127.0.0.3",
	"reject_rbl_client d.example",
	"reject_rbl_client zen.example=127.0.0.[2;10]",
	"reject_rhsbl_client rhs.example",
	"rbls",
}

// TestPrefetchEquivalence checks that concurrent lookups give the same
// decisions, logs and warnings as one lookup after the other, for lists
// that mix listed, unlisted, failing and permitting lists, in a
// restriction class too.
func TestPrefetchEquivalence(t *testing.T) {
	ctx := context.Background()
	srv := dnstest.New(t, rblZone)
	srv.ServFail("*.d.example")
	build := func(list string, sequential bool) *dnsEnv {
		cfg := DefaultConfig()
		cfg.ClientRestrictions = list
		cfg.Classes = map[string]string{"rbls": "reject_rbl_client b.example, reject_rhsbl_client rhs.example"}
		cfg.PermitLog = []string{"static:all"}
		cfg.DNS.Resolver = srv.Resolver(dnstest.NoCache())
		c, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.dns.sequential = sequential
		return &dnsEnv{t: t, srv: srv, c: c}
	}
	for i := 0; i < len(rblLists); i++ {
		for j := 0; j < len(rblLists); j++ {
			list := rblLists[i] + ", " + rblLists[j] + ", " + rblLists[(i+j)%len(rblLists)] + ", " + rblLists[(i+2*j+1)%len(rblLists)]
			conc, seq := build(list, false), build(list, true)
			for _, addr := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"} {
				for _, name := range []string{"client.example", "bad.example"} {
					s1, s2 := rblSnap(addr), rblSnap(addr)
					s1.ClientName, s2.ClientName = name, name
					d1, d2 := conc.c.Check(ctx, StageClient, s1), seq.c.Check(ctx, StageClient, s2)
					if !reflect.DeepEqual(d1, d2) {
						t.Errorf("%s, client %s[%s]:\nconcurrent %+v\nsequential %+v", list, name, addr, d1, d2)
					}
				}
			}
		}
	}
}

// TestPrefetchStartsAll checks that the first DNS list of a restriction
// list starts the lookups of the others (and of the restriction class it
// names), where a sequential evaluation stops at the first that rejects.
func TestPrefetchStartsAll(t *testing.T) {
	ctx := context.Background()
	for _, sequential := range []bool{false, true} {
		env := newDNSEnv(t, rblZone, func(c *Config) {
			c.ClientRestrictions = "reject_rbl_client a.example, reject_rbl_client c.example, more"
			c.Classes = map[string]string{"more": "reject_rbl_client d.example, reject_rhsbl_client rhs.example"}
		}, dnstest.NoCache())
		env.c.dns.sequential = sequential
		env.srv.Delay(20 * time.Millisecond)
		expect(t, "listed in the first", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")),
			"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using a.example")
		// The lookups started run on after the check; wait for them.
		deadline := time.Now().Add(5 * time.Second)
		want := 1
		if !sequential {
			want = 4
		}
		var got int
		for {
			got = 0
			for _, q := range []string{"2.0.0.127.a.example", "2.0.0.127.c.example", "2.0.0.127.d.example",
				"client.example.rhs.example"} {
				got += env.srv.Count(q, "A")
			}
			if got >= want || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got != want {
			t.Errorf("sequential=%v: %d A queries, want %d: %v", sequential, got, want, env.srv.Queries())
		}
	}
}

// TestRBLConcurrentChecks runs checks of the same and different clients
// at once, for the race detector and the in-flight sharing.
func TestRBLConcurrentChecks(t *testing.T) {
	ctx := context.Background()
	env := newDNSEnv(t, rblZone, func(c *Config) {
		c.ClientRestrictions = strings.Join(rblLists[:7], ", ")
	}, dnstest.NoCache())
	env.srv.Delay(5 * time.Millisecond)
	var wg sync.WaitGroup
	replies := make([]string, 40)
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = env.c.Check(ctx, StageClient, rblSnap(fmt.Sprintf("127.0.0.%d", 2+i%3))).Reply.String()
		}()
	}
	wg.Wait()
	for i, r := range replies {
		if w := wantFor(i); r != w {
			t.Errorf("check %d: %q, want %q", i, r, w)
		}
	}
	if n := env.srv.Count("2.0.0.127.a.example", "A"); n != 1 {
		t.Errorf("%d queries for one name asked 14 times at once, want 1", n)
	}
}

func wantFor(i int) string {
	switch 2 + i%3 {
	case 2:
		return "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using a.example"
	case 3:
		return "554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using b.example"
	}
	// 127.0.0.4 is listed only where a filter excludes it.
	return ""
}

func TestRBLCancelledCheck(t *testing.T) {
	env := newDNSEnv(t, rblZone, func(c *Config) { c.ClientRestrictions = "reject_rbl_client zen.example" }, dnstest.NoCache())
	env.srv.Delay(50 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	expect(t, "cancelled", env.c.Check(ctx, StageClient, rblSnap("127.0.0.2")), "", "RBL lookup error: context canceled")
	// The lookup the cancelled check started is not spoiled for others.
	expect(t, "next", env.c.Check(context.Background(), StageClient, rblSnap("127.0.0.2")),
		"554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed in zen")
}

// ipMatchOracleSrc is a small program that runs Postfix's own ip_match
// parser and matcher (libpostfix-util) on "pattern<TAB>address" lines,
// printing "Error: text" or "Code: dump<TAB>yes|no" for each.
const ipMatchOracleSrc = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
typedef struct VSTRING VSTRING;
extern VSTRING *vstring_alloc(long);
extern char *ip_match_parse(VSTRING *, char *);
extern char *ip_match_save(const VSTRING *);
extern int ip_match_execute(const char *, const char *);
extern char *ip_match_dump(VSTRING *, const char *);
extern void myfree(void *);
int main(void) {
	VSTRING *bc = vstring_alloc(100), *pr = vstring_alloc(100);
	char *line = 0;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = 0;
		char *tab = strchr(line, '\t');
		struct in_addr a = {0};
		if (tab) {
			*tab = 0;
			inet_pton(AF_INET, tab + 1, &a);
		}
		char *err = ip_match_parse(bc, line);
		if (err) {
			printf("Error: %s\n", err);
		} else {
			char *codes = ip_match_save(bc);
			printf("Code: %s\t%s\n", ip_match_dump(pr, codes),
			       ip_match_execute(codes, (char *) &a.s_addr) ? "yes" : "no");
			myfree(codes);
		}
		fflush(stdout);
	}
	return 0;
}
`

// lineOracle is a compiled C program linked with Postfix's
// libpostfix-util that answers one line of output for each line of
// input.
type lineOracle struct {
	mu  sync.Mutex
	in  io.WriteCloser
	out *bufio.Reader
}

// startCOracle compiles src in dir and starts it. It needs a C compiler
// and Postfix's libpostfix-util; the error says which is missing.
func startCOracle(dir, name, src string) (*lineOracle, func(), error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return nil, nil, fmt.Errorf("gcc is not installed (needed to call Postfix's library): %w", err)
	}
	const libdir = "/usr/lib/postfix"
	if _, err := os.Stat(filepath.Join(libdir, "libpostfix-util.so")); err != nil {
		return nil, nil, fmt.Errorf("Postfix's libpostfix-util is not installed: %w", err)
	}
	cfile := filepath.Join(dir, name+".c")
	bin := filepath.Join(dir, name)
	if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
		return nil, nil, err
	}
	out, err := exec.Command(gcc, "-o", bin, cfile, "-L"+libdir, "-lpostfix-util", "-Wl,-rpath,"+libdir).CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("compile the %s oracle: %v: %s", name, err, out)
	}
	cmd := exec.Command(bin)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() { in.Close(); cmd.Wait() }
	return &lineOracle{in: in, out: bufio.NewReader(stdout)}, stop, nil
}

// requireCOracle starts a C oracle or skips the test (fails it under
// CI=true, where the oracle must run).
func requireCOracle(t *testing.T, name, src string) *lineOracle {
	t.Helper()
	o, stop, err := startCOracle(t.TempDir(), name, src)
	if err != nil {
		oracle.Unavailable(t, "%v", err)
	}
	t.Cleanup(stop)
	return o
}

func (o *lineOracle) query(line string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := io.WriteString(o.in, line+"\n"); err != nil {
		return "", err
	}
	out, err := o.out.ReadString('\n')
	return strings.TrimSuffix(out, "\n"), err
}

func ipMatchQuery(o *lineOracle, pattern string, addr netip.Addr) (string, error) {
	return o.query(pattern + "\t" + addr.String())
}

// ourIPMatch answers as the oracle prints.
func ourIPMatch(pattern string, addr netip.Addr) string {
	f, err := parseRBLFilter(pattern)
	if err != nil {
		return "Error: " + err.Error()
	}
	m := "no"
	if f.match(addr) {
		m = "yes"
	}
	return "Code: " + f.String() + "\t" + m
}

// oracleInput reports whether a pattern can be given to the oracle: one
// line without NUL. Patterns with an 'N' are left out: Postfix's
// tokenizer returns a character as its own token code, and 'N' is the code
// of a number, so it reads "N" as a number whose value is whatever the
// last number was (uninitialized at first); that is not worth copying.
func oracleInput(p string) bool {
	return len(p) < 300 && !strings.ContainsAny(p, "\x00\n\r\tN")
}

var filterSeeds = []string{
	"127.0.0.2", "[127.0.0.2]", "127.0.0.[2..11]", "127.0.[0;1].[2;4;10..11]", "[2;4].0.0.127",
	"[[127.0.0.2]]", "127.0.0.[2", "127.0.0.2]", "[", "]", "", "1.2.300.4", "1.2.3.", "1.2.3",
	"a", "1.2.3,4", "1.2.[].4", "1.2.[.4", "1.2.].4", "1.2.[1..127;128..255].5", "1.2.[1-255].5",
	"1.2.[1..127.128..255].5", "1.2.3.[4..1]", "1.2.3.[4.1]", "1.2.3.[4.x]", "1.2.3.[x]", "1.2.3.4x",
	"001.02.3.4", "1.2.3.[4..4]", "1.2.3.4.5", "[1.2.3.4]x", "[]", "[[]]", "1.2.3.[256]", "1.2.3.[1..256]",
	"9999999999999999999999.1.1.1", "1..2.3", "1.2.3.[;]", "1.2.3.[1;]", "1.2.3.4 ", " 1.2.3.4", "é.1.1.1",
}

// TestRBLFilterOracle compares the filter parser and matcher with
// Postfix's ip_match, error texts included.
func TestRBLFilterOracle(t *testing.T) {
	o := requireCOracle(t, "ipmatch", ipMatchOracleSrc)
	addrs := []string{"127.0.0.2", "127.0.0.4", "127.0.0.11", "127.0.1.10", "1.2.3.5", "1.2.200.5", "0.0.0.0"}
	for _, p := range filterSeeds {
		for _, a := range addrs {
			addr := netip.MustParseAddr(a)
			want, err := ipMatchQuery(o, p, addr)
			if err != nil {
				t.Fatal(err)
			}
			if got := ourIPMatch(p, addr); got != want {
				t.Errorf("%q %s:\n got %q\nwant %q", p, a, got, want)
			}
		}
	}
}

// FuzzRBLFilter checks that the reply filter parser never panics, that a
// parsed filter prints in a form that parses to the same filter, and,
// where Postfix's ip_match can be called, that both agree.
func FuzzRBLFilter(f *testing.F) {
	for i, p := range filterSeeds {
		f.Add(p, uint32(0x7f000000+i))
	}
	o, stop, err := startCOracle(f.TempDir(), "ipmatch", ipMatchOracleSrc)
	if err == nil {
		defer stop()
	}
	f.Fuzz(func(t *testing.T, pattern string, a uint32) {
		addr := netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
		flt, err := parseRBLFilter(pattern)
		if err == nil {
			text := flt.String()
			again, err := parseRBLFilter(text)
			if err != nil || again.String() != text || again.match(addr) != flt.match(addr) {
				t.Fatalf("%q prints as %q, which parses as %v (%v)", pattern, text, again, err)
			}
		}
		if o != nil && oracleInput(pattern) {
			want, err := ipMatchQuery(o, pattern, addr)
			if err != nil {
				t.Fatal(err)
			}
			if got := ourIPMatch(pattern, addr); got != want {
				t.Fatalf("%q %s:\n got %q\nwant %q", pattern, addr, got, want)
			}
		}
	})
}

// macExpandOracleSrc expands each input line with Postfix's mac_expand
// as smtpd expands an RBL reply template (smtpd_expansion_filter's
// default, one level of $name), printing the status bits and the result.
const macExpandOracleSrc = `
#include <stdio.h>
#include <string.h>
typedef struct VSTRING VSTRING;
extern VSTRING *vstring_alloc(long);
extern char *vstring_export(VSTRING *);
typedef const char *(*LOOKUP)(const char *, int, void *);
extern int mac_expand(VSTRING *, const char *, int, const char *, LOOKUP, void *);
static const char *names[][2] = {
	{"rbl_code", "554"}, {"rbl_domain", "zen.example"}, {"rbl_reason", "listed\x01 caf\xc3\xa9"},
	{"rbl_what", "192.0.2.1"}, {"rbl_class", "Client host"}, {"empty", ""}, {"dollar", "$rbl_code"}, {0, 0}};
static const char *lookup(const char *name, int mode, void *ctx) {
	for (int i = 0; names[i][0]; i++)
		if (strcmp(name, names[i][0]) == 0)
			return names[i][1];
	return 0;
}
int main(void) {
	char filter[200];
	int n = 0;
	filter[n++] = '\t';
	for (int c = 0x20; c < 0x7f; c++)
		filter[n++] = c;
	filter[n] = 0;
	char *line = 0;
	size_t cap = 0;
	ssize_t len;
	while ((len = getline(&line, &cap, stdin)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = 0;
		VSTRING *v = vstring_alloc(100);
		int st = mac_expand(v, line, 0, filter, lookup, 0);
		printf("%d\t%s\n", st, vstring_export(v));
		fflush(stdout);
	}
	return 0;
}
`

// TestRBLTemplateOracle compares the expansion of reply templates with
// Postfix's mac_expand: the text, and whether the template is usable
// (no syntax error, no undefined plain $name).
func TestRBLTemplateOracle(t *testing.T) {
	o := requireCOracle(t, "macexpand", macExpandOracleSrc)
	vals := map[string]string{"rbl_code": "554", "rbl_domain": "zen.example", "rbl_reason": "listed\x01 caf\xc3\xa9",
		"rbl_what": "192.0.2.1", "rbl_class": "Client host", "empty": "", "dollar": "$rbl_code"}
	templates := []string{
		DefaultRBLReply,
		"$rbl_code $nope",
		"${nope?x}${nope:y}",
		"${rbl_code",
		"$$x ${empty:none} ${empty?{a}:{b}}",
		"${rbl_code?{$rbl_domain}}",
		"$(rbl_code) $(rbl_domain",
		"$dollar",
		"${rbl_reason:{none}}",
		"${rbl_code?$rbl_what}:${empty?$nope}",
		"x$",
		"${}",
		"$rbl_code ${rbl_domain} ${rbl_what}",
		"${{$rbl_code} == {554} ? {five} : {other}}",
		"${rbl_code?{ spaced }}",
	}
	for _, tmpl := range templates {
		want, err := o.query(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus, wantText, _ := strings.Cut(want, "\t")
		text, ok := expandTemplate(tmpl, func(n string) (string, bool) { v, ok := vals[n]; return v, ok },
			func(string) {}, func(error) {})
		usable := wantStatus == "0"
		if ok != usable || ok && text != wantText {
			t.Errorf("%q: got %q (usable %v), Postfix %q (status %s)", tmpl, text, ok, wantText, wantStatus)
		}
	}
}

// FuzzRBLTemplate checks reply template expansion (templates come from
// main.cf and rbl_reply_maps) against Postfix's mac_expand where it can
// be called, and for panics everywhere.
func FuzzRBLTemplate(f *testing.F) {
	for _, s := range []string{DefaultRBLReply, "${rbl_code?{$rbl_domain}}", "${{$rbl_code} == {554} ? {five} : {other}}",
		"$rbl_code $nope", "${rbl_code", "$(rbl_code) ${empty:none}"} {
		f.Add(s)
	}
	o, stop, err := startCOracle(f.TempDir(), "macexpand", macExpandOracleSrc)
	if err == nil {
		defer stop()
	}
	vals := map[string]string{"rbl_code": "554", "rbl_domain": "zen.example", "rbl_reason": "listed\x01 caf\xc3\xa9",
		"rbl_what": "192.0.2.1", "rbl_class": "Client host", "empty": "", "dollar": "$rbl_code"}
	f.Fuzz(func(t *testing.T, tmpl string) {
		text, ok := expandTemplate(tmpl, func(n string) (string, bool) { v, ok := vals[n]; return v, ok },
			func(string) {}, func(error) {})
		if o == nil || len(tmpl) > 300 || strings.ContainsAny(tmpl, "\x00\n\r") {
			return
		}
		want, err := o.query(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus, wantText, _ := strings.Cut(want, "\t")
		if usable := wantStatus == "0"; ok != usable || ok && text != wantText {
			t.Errorf("%q: got %q (usable %v), Postfix %q (status %s)", tmpl, text, ok, wantText, wantStatus)
		}
	})
}

// A Checker that rejects clients listed in a DNSBL, with the DNS served
// by dnstest.
func ExampleDNSConfig() {
	srv, err := dnstest.Start(`
2.0.0.127.zen.example. A   127.0.0.2
2.0.0.127.zen.example. TXT "listed for spam"
`)
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.ClientRestrictions = "permit_dnswl_client list.dnswl.example, reject_rbl_client zen.example=127.0.0.[2..11]"
	cfg.DNS.Resolver = srv.Resolver()
	c, err := New(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	for _, a := range []string{"127.0.0.2", "127.0.0.3"} {
		d := c.Check(context.Background(), StageClient, &Snapshot{ClientAddr: netip.MustParseAddr(a)})
		fmt.Printf("%s: %q\n", a, d.Reply)
	}
	// Output:
	// 127.0.0.2: "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; listed for spam"
	// 127.0.0.3: ""
}
