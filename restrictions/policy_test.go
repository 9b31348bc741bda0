package restrictions

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// policyChecker builds a Checker whose relay restrictions are
// "check_policy_service SPEC, permit_mynetworks, reject": a client in
// mynetworks (127.0.0.1) is accepted when the policy says DUNNO, any other
// is rejected. Retries wait 1ms.
func policyChecker(t testing.TB, spec string, edit func(*Config)) *Checker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.RelayRestrictions = "check_policy_service " + spec + ", permit_mynetworks, reject"
	cfg.RejectUnlistedRecipient = false
	cfg.Policy.RetryDelay = time.Millisecond
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rcptSnap is a session at RCPT TO:<b@example.org> from client addr.
func rcptSnap(addr string) *Snapshot {
	return &Snapshot{
		ClientAddr: netip.MustParseAddr(addr), ClientPort: 4711, ClientName: "mail.example.com",
		ReverseName: "mail.example.com", ServerAddr: netip.MustParseAddr("192.0.2.1"), ServerPort: 25,
		Helo: "mail.example.com", ESMTP: true, Sender: "a@example.com", Recipient: "b@example.org",
	}
}

// endpointOf is the name Postfix gives the service in warnings.
func endpointOf(spec string) string {
	_, ep, _ := strings.Cut(spec, ":")
	return ep
}

// postfixAttrs is the attribute list Postfix 3.7.11 sends (order and
// names), with the values of a session from 192.0.2.7:4711 to
// 192.0.2.1:25 at CONNECT; set overrides values by name.
func postfixAttrs(set ...string) []policyAttr {
	attrs := []policyAttr{
		{"request", "smtpd_access_policy"}, {"protocol_state", "CONNECT"}, {"protocol_name", "SMTP"},
		{"client_address", "192.0.2.7"}, {"client_name", "mail.example.com"}, {"client_port", "4711"},
		{"reverse_client_name", "mail.example.com"}, {"server_address", "192.0.2.1"}, {"server_port", "25"},
		{"helo_name", ""}, {"sender", ""}, {"recipient", ""}, {"recipient_count", "0"}, {"queue_id", ""},
		{"instance", ""}, {"size", "0"}, {"etrn_domain", ""}, {"stress", ""}, {"sasl_method", ""},
		{"sasl_username", ""}, {"sasl_sender", ""}, {"ccert_subject", ""}, {"ccert_issuer", ""},
		{"ccert_fingerprint", ""}, {"ccert_pubkey_fingerprint", ""}, {"encryption_protocol", ""},
		{"encryption_cipher", ""}, {"encryption_keysize", "0"}, {"policy_context", ""},
	}
	for _, kv := range set {
		name, value, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(attrs, func(a policyAttr) bool { return a.Name == name })
		if i < 0 {
			attrs = append(attrs, policyAttr{name, value})
			continue
		}
		attrs[i].Value = value
	}
	return attrs
}

func diffAttrs(got, want []policyAttr) string {
	var b strings.Builder
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w policyAttr
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			fmt.Fprintf(&b, "\n\t#%d got %s=%q, want %s=%q", i, g.Name, g.Value, w.Name, w.Value)
		}
	}
	return b.String()
}

// TestPolicyRequestAttributes checks the request for each stage over a
// real socket. The attribute order and the empty and "unknown" values are
// those Postfix 3.7.11's smtpd sent to a recording server (the same
// comparison runs live in TestPolicyOracle where Postfix is installed);
// TLS, SASL and stress, which that harness cannot produce, follow
// smtpd_check.c.
func TestPolicyRequestAttributes(t *testing.T) {
	srv := startPolicyServer(t, "tcp", reply("DUNNO"))
	base := func() *Snapshot {
		return &Snapshot{
			ClientAddr: netip.MustParseAddr("192.0.2.7"), ClientPort: 4711, ClientName: "mail.example.com",
			ReverseName: "mail.example.com", ServerAddr: netip.MustParseAddr("192.0.2.1"), ServerPort: 25,
		}
	}
	session := func(edit func(*Snapshot)) *Snapshot {
		s := base()
		s.Helo, s.ESMTP = "client.example.com", true
		s.Sender, s.Size, s.Instance = "a@example.com", 1234, "4a.6b.1"
		if edit != nil {
			edit(s)
		}
		return s
	}
	tls := &TLSInfo{Protocol: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", CipherBits: 256,
		PeerCertVerified: true, CertFingerprint: "AB:CD", PubkeyFingerprint: "EF:01",
		SubjectCN: "client one+x", IssuerCN: "CA=1 é"}
	cases := []struct {
		name  string
		stage Stage
		snap  *Snapshot
		spec  string // replaces the plain endpoint
		edit  func(*PolicyConfig)
		want  []policyAttr
	}{
		{name: "connect", stage: StageClient, snap: base(), want: postfixAttrs()},
		{name: "ehlo", stage: StageHelo, snap: func() *Snapshot { s := base(); s.Helo, s.ESMTP = "client.example.com", true; return s }(),
			// smtpd switches to ESMTP only after EHLO passed.
			want: postfixAttrs("protocol_state=EHLO", "helo_name=client.example.com")},
		{name: "helo", stage: StageHelo, snap: func() *Snapshot { s := base(); s.Helo = "client.example.com"; return s }(),
			want: postfixAttrs("protocol_state=HELO", "helo_name=client.example.com")},
		{name: "mail", stage: StageSender, snap: session(nil),
			want: postfixAttrs("protocol_state=MAIL", "protocol_name=ESMTP", "helo_name=client.example.com",
				"sender=a@example.com", "instance=4a.6b.1", "size=1234")},
		{name: "rcpt", stage: StageRecipient, snap: session(func(s *Snapshot) { s.Recipient, s.RecipientCount = "b@example.org", 1 }),
			// recipient_count is 0 before DATA.
			want: postfixAttrs("protocol_state=RCPT", "protocol_name=ESMTP", "helo_name=client.example.com",
				"sender=a@example.com", "recipient=b@example.org", "instance=4a.6b.1", "size=1234")},
		{name: "vrfy", stage: StageRecipient, snap: func() *Snapshot {
			s := base()
			s.Helo, s.ESMTP, s.Verb, s.Recipient = "client.example.com", true, "VRFY", "b@example.org"
			return s
		}(), want: postfixAttrs("protocol_state=VRFY", "protocol_name=ESMTP", "helo_name=client.example.com", "recipient=b@example.org")},
		{name: "data-one-recipient", stage: StageData, snap: session(func(s *Snapshot) {
			s.Recipient, s.RecipientCount, s.QueueID = "b@example.org", 1, "6921C984342"
		}), want: postfixAttrs("protocol_state=DATA", "protocol_name=ESMTP", "helo_name=client.example.com",
			"sender=a@example.com", "recipient=b@example.org", "recipient_count=1", "queue_id=6921C984342",
			"instance=4a.6b.1", "size=1234")},
		{name: "data-two-recipients", stage: StageData, snap: session(func(s *Snapshot) {
			s.Recipient, s.RecipientCount = "c@example.org", 2
		}), want: postfixAttrs("protocol_state=DATA", "protocol_name=ESMTP", "helo_name=client.example.com",
			"sender=a@example.com", "recipient_count=2", "instance=4a.6b.1", "size=1234")},
		{name: "bdat", stage: StageData, snap: session(func(s *Snapshot) {
			s.Recipient, s.RecipientCount, s.Verb = "c@example.org", 2, "BDAT"
		}), want: postfixAttrs("protocol_state=DATA", "protocol_name=ESMTP", "helo_name=client.example.com",
			"sender=a@example.com", "recipient_count=2", "instance=4a.6b.1", "size=1234")},
		{name: "end-of-message", stage: StageEndOfData, snap: session(func(s *Snapshot) {
			s.Recipient, s.RecipientCount, s.Size, s.QueueID = "b@example.org", 1, 234, "6921C984342"
		}), want: postfixAttrs("protocol_state=END-OF-MESSAGE", "protocol_name=ESMTP", "helo_name=client.example.com",
			"sender=a@example.com", "recipient=b@example.org", "recipient_count=1", "queue_id=6921C984342",
			"instance=4a.6b.1", "size=234")},
		{name: "etrn", stage: StageETRN, snap: session(func(s *Snapshot) { s.ETRNDomain, s.Size, s.Instance = "example.org", 0, "" }),
			// No sender outside a transaction.
			want: postfixAttrs("protocol_state=ETRN", "protocol_name=ESMTP", "helo_name=client.example.com",
				"etrn_domain=example.org")},
		{name: "etrn-domain-only-at-etrn", stage: StageSender, snap: session(func(s *Snapshot) { s.ETRNDomain = "example.org" }),
			want: postfixAttrs("protocol_state=MAIL", "protocol_name=ESMTP", "helo_name=client.example.com",
				"sender=a@example.com", "instance=4a.6b.1", "size=1234")},
		{name: "unknown-client-and-server", stage: StageClient, snap: &Snapshot{},
			want: postfixAttrs("client_address=unknown", "client_name=unknown", "client_port=unknown",
				"reverse_client_name=unknown", "server_address=unknown", "server_port=unknown")},
		{name: "ipv6-and-mapped", stage: StageClient, snap: func() *Snapshot {
			s := base()
			s.ClientAddr = netip.MustParseAddr("::ffff:192.0.2.9")
			s.ServerAddr = netip.MustParseAddr("2001:db8::25")
			return s
		}(), want: postfixAttrs("client_address=192.0.2.9", "server_address=2001:db8::25")},
		{name: "tls-sasl-stress", stage: StageSender, snap: session(func(s *Snapshot) {
			s.TLS, s.Stress = tls, true
			s.SASLMethod, s.SASLUsername, s.SASLSender = "PLAIN", "alice", "a@example.com"
		}), want: postfixAttrs("protocol_state=MAIL", "protocol_name=ESMTP", "helo_name=client.example.com",
			"sender=a@example.com", "instance=4a.6b.1", "size=1234", "stress=yes", "sasl_method=PLAIN",
			"sasl_username=alice", "sasl_sender=a@example.com",
			// xtext: '+', space and non-ASCII as +XX; '=' as is.
			"ccert_subject=client+20one+2Bx", "ccert_issuer=CA=1+20+C3+A9",
			"ccert_fingerprint=AB:CD", "ccert_pubkey_fingerprint=EF:01", "encryption_protocol=TLSv1.3",
			"encryption_cipher=TLS_AES_256_GCM_SHA384", "encryption_keysize=256")},
		{name: "tls-unverified-cert", stage: StageClient, snap: func() *Snapshot {
			s := base()
			t := *tls
			t.PeerCertVerified = false
			s.TLS = &t
			return s
		}(), want: postfixAttrs("ccert_fingerprint=AB:CD", "ccert_pubkey_fingerprint=EF:01",
			"encryption_protocol=TLSv1.3", "encryption_cipher=TLS_AES_256_GCM_SHA384", "encryption_keysize=256")},
		{name: "newline-cannot-inject", stage: StageHelo, snap: func() *Snapshot {
			s := base()
			s.Helo = "evil\nrecipient=x\n\nrequest=smtpd_access_policy\x00"
			return s
		}(), want: postfixAttrs("protocol_state=HELO", "helo_name=evil?recipient=x??request=smtpd_access_policy?")},
		{name: "policy-context-and-3.8-attributes", stage: StageClient, snap: base(),
			spec: "{ " + srv.spec + ", { policy_context = ctx one } }",
			edit: func(p *PolicyConfig) { p.CompatibilityLevel, p.MailVersion = "3.6", "3.7.11" },
			want: postfixAttrs("policy_context=ctx one", "compatibility_level=3.6", "mail_version=3.7.11")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := srv.spec
			if tc.spec != "" {
				spec = tc.spec
			}
			svc := "check_policy_service " + spec
			c := policyChecker(t, spec, func(cfg *Config) {
				cfg.DelayReject = false
				cfg.ClientRestrictions, cfg.HeloRestrictions, cfg.SenderRestrictions = svc, svc, svc
				cfg.DataRestrictions, cfg.EndOfDataRestrictions, cfg.ETRNRestrictions = svc, svc, svc
				if tc.edit != nil {
					tc.edit(&cfg.Policy)
				}
			})
			before := len(srv.requests())
			d := c.Check(context.Background(), tc.stage, tc.snap)
			if len(d.Warnings) > 0 {
				t.Errorf("warnings: %q", d.Warnings)
			}
			reqs := srv.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			if diff := diffAttrs(reqs[0].Attrs, tc.want); diff != "" {
				t.Errorf("request differs from Postfix's:%s", diff)
			}
		})
	}
}

// TestPolicyActions checks the policy reply read as an access(5) action,
// every kind of action. The client 127.0.0.1 is in mynetworks, so a reply
// that goes on (DUNNO, PREPEND, ...) ends in permit_mynetworks.
func TestPolicyActions(t *testing.T) {
	srv := startPolicyServer(t, "tcp", reply("DUNNO"))
	c := policyChecker(t, srv.spec, func(cfg *Config) {
		cfg.Classes = map[string]string{"tagged": "reject_unauth_pipelining, reject"}
	})
	const r = "<b@example.org>: Recipient address rejected: "
	cases := []struct {
		action   string
		want     string   // the reply; "" accepted
		warnings []string // exactly
		check    func(t *testing.T, d Decision)
	}{
		{action: "OK", want: ""},
		{action: "ok anything after", want: ""},
		{action: "DUNNO", want: ""},
		{action: "1234567890", want: ""},
		{action: "REJECT go away", want: "554 5.7.1 " + r + "go away"},
		{action: "REJECT", want: "554 5.7.1 " + r + "Access denied"},
		{action: "REJECT x=y==z", want: "554 5.7.1 " + r + "x=y==z"},
		{action: "DEFER", want: "450 4.7.1 " + r + "Access denied"},
		{action: "450 4.2.0 mailbox busy", want: "450 4.2.0 " + r + "mailbox busy"},
		{action: "550 5.1.1 no such user", want: "550 5.1.1 " + r + "no such user"},
		{action: "550 no DSN", want: "550 5.7.1 " + r + "no DSN"},
		{action: "521 closing", want: "521 5.7.1 " + r + "closing", check: func(t *testing.T, d Decision) {
			if !d.Disconnect {
				t.Error("521 does not disconnect")
			}
		}},
		{action: "DEFER_IF_PERMIT greylisted", want: "450 4.7.1 " + r + "greylisted"},
		{action: "DEFER_IF_REJECT maybe", want: ""},
		{action: "tagged", want: "554 5.7.1 " + r + "Access denied"},
		{action: "defer_if_permit, permit_mynetworks", want: "450 4.7.0 " + r + "defer_if_permit requested"},
		{action: "PREPEND X-Policy: tagged", want: "", check: func(t *testing.T, d Decision) {
			if !slices.Equal(d.Effects.Prepend, []string{"X-Policy: tagged"}) {
				t.Errorf("Prepend = %q", d.Effects.Prepend)
			}
		}},
		{action: "HOLD held for review", want: "", check: func(t *testing.T, d Decision) {
			if !d.Effects.Hold {
				t.Error("no HOLD")
			}
		}},
		{action: "DISCARD", want: "", check: func(t *testing.T, d Decision) {
			if !d.Effects.Discard || !d.Txn.Discard {
				t.Error("no DISCARD")
			}
		}},
		{action: "FILTER smtp:[127.0.0.1]:10025", want: "", check: func(t *testing.T, d Decision) {
			if d.Effects.Filter != "smtp:[127.0.0.1]:10025" {
				t.Errorf("Filter = %q", d.Effects.Filter)
			}
		}},
		{action: "REDIRECT x@example.net", want: "", check: func(t *testing.T, d Decision) {
			if d.Effects.Redirect != "x@example.net" {
				t.Errorf("Redirect = %q", d.Effects.Redirect)
			}
		}},
		{action: "BCC archive@example.net", want: "", check: func(t *testing.T, d Decision) {
			if !slices.Equal(d.Effects.BCC, []string{"archive@example.net"}) {
				t.Errorf("BCC = %q", d.Effects.BCC)
			}
		}},
		{action: "WARN looks odd", want: "", check: func(t *testing.T, d Decision) {
			if !slices.Contains(d.Log, LogEntry{Kind: "warn", Text: "looks odd"}) {
				t.Errorf("Log = %q", d.Log)
			}
		}},
		{action: "HANGUP", want: "", check: func(t *testing.T, d Decision) {
			if !d.Hangup || d.Accepted() {
				t.Error("no hangup")
			}
		}},
		// As Postfix 3.7.11 answers these (checked against its smtpd).
		{action: "", want: "", warnings: []string{"access table " + srv.spec + " entry  has empty value"}},
		{action: "check_foo", want: "451 4.3.5 Server configuration error",
			warnings: []string{`unknown smtpd restriction: "check_foo"`}},
		{action: " 550 leading space", want: "451 4.3.5 Server configuration error",
			warnings: []string{`unknown smtpd restriction: "550"`}},
		{action: "inet:foo", want: "451 4.3.5 Server configuration error", warnings: []string{
			"access table " + srv.spec + " has entry with lookup table: inet:foo",
			"do not specify lookup tables inside SMTPD access maps",
			"define a restriction class and specify its name instead.",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.action, func(t *testing.T) {
			srv.setAnswer(reply(tc.action))
			d := c.Check(context.Background(), StageRecipient, rcptSnap("127.0.0.1"))
			if got := d.Reply.String(); got != tc.want {
				t.Errorf("reply %q, want %q", got, tc.want)
			}
			if !slices.Equal(d.Warnings, tc.warnings) {
				t.Errorf("warnings %q, want %q", d.Warnings, tc.warnings)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

// TestPolicyReplyParsing covers replies that are well-formed but unusual:
// extra attributes, a second action, '=' in the value.
func TestPolicyReplyParsing(t *testing.T) {
	srv := startPolicyServer(t, "tcp", nil)
	c := policyChecker(t, srv.spec, nil)
	const r = "554 5.7.1 <b@example.org>: Recipient address rejected: "
	for _, tc := range []struct{ raw, want string }{
		{"foo=bar\naction=REJECT first\naction=OK\nno equals sign\n\n", r + "first"},
		{"action=REJECT a=b\n\n", r + "a=b"},
		{"=odd\naction=REJECT after odd\n\n", r + "after odd"},
		{"action=REJECT then action\naction\n\n", r + "then action"},
	} {
		srv.setAnswer(func(policyReq) string { return tc.raw })
		d := c.Check(context.Background(), StageRecipient, rcptSnap("192.0.2.7"))
		if got := d.Reply.String(); got != tc.want || len(d.Warnings) > 0 {
			t.Errorf("reply %q: got %q (warnings %q), want %q", tc.raw, got, d.Warnings, tc.want)
		}
	}
}

// TestPolicyMalformedReplies: a reply without action, a truncated one or
// one that never ends counts as a failed attempt, is tried again and then
// gives the default action, as in Postfix (whose warnings these are).
func TestPolicyMalformedReplies(t *testing.T) {
	srv := startPolicyServer(t, "tcp", nil)
	c := policyChecker(t, srv.spec, func(cfg *Config) {
		cfg.Policy.DefaultAction = "REJECT defaulted"
		cfg.Policy.Timeout = 100 * time.Millisecond
	})
	ep := endpointOf(srv.spec)
	twice := func(w, reason string) []string {
		return []string{w, w, "problem talking to server " + ep + ": " + reason}
	}
	// A system error is reported at each attempt.
	twiceLoud := func(w, reason string) []string {
		p := "problem talking to server " + ep + ": " + reason
		return []string{w, p, w, p}
	}
	long := "action=" + strings.Repeat("x", maxPolicyLine+10) + "\n\n"
	cases := []struct {
		name, raw string
		tries     int
		warnings  []string
	}{
		{"empty", "\n", 2, twice("missing attribute action in input from "+ep, "malformed reply")},
		{"no-equals", "action\n\n", 2, twice("missing value for string attribute action from "+ep, "malformed reply")},
		{"action-after-end", "x=y\n\naction=OK\n\n", 2, twice("missing attribute action in input from "+ep, "malformed reply")},
		{"upper-case-name", "ACTION=OK\n\n", 2, twice("missing attribute action in input from "+ep, "malformed reply")},
		{"leading-space", " action=OK\n\n", 2, twice("missing attribute action in input from "+ep, "malformed reply")},
		{"closed-without-reply", policyClose, 2, twice("premature end-of-input on "+ep+" while reading policy reply", "Connection closed by server")},
		{"truncated", "action=OK\n" + policyClose, 2, twice("premature end-of-input on "+ep+" while reading policy reply", "Connection closed by server")},
		// A CR is part of the line, so "\r\n" is no empty line: Postfix
		// waits for the end of the reply until the timeout.
		{"crlf", "action=OK\r\n\r\n", 2, twiceLoud("timeout on "+ep+" while reading policy reply", "Connection timed out")},
		{"no-answer", policyHang, 2, twiceLoud("timeout on "+ep+" while reading policy reply", "Connection timed out")},
		{"over-long-line", long, 2, twice(errReplyTooLong.Error()+" from "+ep, "malformed reply")},
		// Not an I/O problem: no second attempt.
		{"bad-utf8", "action=REJECT \xff\n\n", 1, []string{`malformed UTF-8 in policy server ` + srv.spec + ` response: "REJECT ` + "\xff" + `"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv.setAnswer(func(policyReq) string { return tc.raw })
			before := len(srv.requests())
			d := c.Check(context.Background(), StageRecipient, rcptSnap("192.0.2.7"))
			if got, want := d.Reply.String(), "554 5.7.1 <b@example.org>: Recipient address rejected: defaulted"; got != want {
				t.Errorf("reply %q, want %q", got, want)
			}
			if !slices.Equal(d.Warnings, tc.warnings) {
				t.Errorf("warnings\n\t%q\nwant\n\t%q", d.Warnings, tc.warnings)
			}
			if n := len(srv.requests()) - before; n != tc.tries {
				t.Errorf("server got %d requests, want %d", n, tc.tries)
			}
		})
	}
}

// TestPolicyServerDown: every attempt fails to connect; after try_limit
// attempts the default action applies (Postfix's default, and its
// warnings).
func TestPolicyServerDown(t *testing.T) {
	spec := deadEndpoint(t)
	c := policyChecker(t, spec, func(cfg *Config) { cfg.Policy.TryLimit = 3 })
	pc := c.policy.clients[spec]
	var dials atomic.Int32
	dial := pc.dial
	pc.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, address)
	}
	d := c.Check(context.Background(), StageRecipient, rcptSnap("192.0.2.7"))
	if got, want := d.Reply.String(), "451 4.3.5 <b@example.org>: Recipient address rejected: Server configuration problem"; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	ep := endpointOf(spec)
	w, p := "connect to "+ep+": Connection refused", "problem talking to server "+ep+": Connection refused"
	if want := []string{w, p, w, p, w, p}; !slices.Equal(d.Warnings, want) {
		t.Errorf("warnings %q, want %q", d.Warnings, want)
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("%d connection attempts, want try_limit 3", n)
	}
}

// TestPolicyDefaultActionNesting: a default action naming a restriction
// class whose own policy service fails does not apply that service's
// default action but Postfix's built-in one (checked against Postfix
// 3.7.11 with the same configuration).
func TestPolicyDefaultActionNesting(t *testing.T) {
	outer, inner := deadEndpoint(t), deadEndpoint(t)
	c := policyChecker(t, "{ "+outer+", default_action=pol2, try_limit=1 }", func(cfg *Config) {
		cfg.Classes = map[string]string{"pol2": "check_policy_service { " + inner + ", {default_action = REJECT inner} }"}
	})
	d := c.Check(context.Background(), StageRecipient, rcptSnap("192.0.2.7"))
	if got, want := d.Reply.String(), "451 4.3.5 <b@example.org>: Recipient address rejected: Server configuration problem"; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	// One attempt for the outer service, try_limit (2) for the inner one,
	// two warnings each.
	if n := len(d.Warnings); n != 6 {
		t.Errorf("%d warnings, want 6: %q", n, d.Warnings)
	}
	// The inner default applies when the class is used directly.
	c2 := policyChecker(t, "{ "+outer+", default_action=REJECT outer }", func(cfg *Config) {
		cfg.RelayRestrictions = "pol2, reject"
		cfg.Classes = map[string]string{"pol2": "check_policy_service { " + inner + ", {default_action = REJECT inner} }"}
	})
	d = c2.Check(context.Background(), StageRecipient, rcptSnap("192.0.2.7"))
	if got, want := d.Reply.String(), "554 5.7.1 <b@example.org>: Recipient address rejected: inner"; got != want {
		t.Errorf("class alone: reply %q, want %q", got, want)
	}
}

// TestPolicyConnectionReuse: one connection serves many requests, over TCP
// and a UNIX socket.
func TestPolicyConnectionReuse(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := startPolicyServer(t, network, reply("DUNNO"))
			c := policyChecker(t, srv.spec, nil)
			for range 20 {
				if d := c.Check(context.Background(), StageRecipient, rcptSnap("127.0.0.1")); !d.Accepted() || len(d.Warnings) > 0 {
					t.Fatalf("reply %q, warnings %q", d.Reply, d.Warnings)
				}
			}
			reqs := srv.requests()
			if len(reqs) != 20 {
				t.Fatalf("%d requests, want 20", len(reqs))
			}
			for _, r := range reqs {
				if r.Conn != 1 {
					t.Fatalf("request on connection %d; want all on the first", r.Conn)
				}
			}
			if a, _ := srv.counts(); a != 1 {
				t.Errorf("%d connections, want 1", a)
			}
		})
	}
}

// TestPolicyRequestLimit: request_limit closes a connection after that
// many requests.
func TestPolicyRequestLimit(t *testing.T) {
	srv := startPolicyServer(t, "tcp", reply("DUNNO"))
	c := policyChecker(t, "{ "+srv.spec+", request_limit=3 }", nil)
	for range 7 {
		c.Check(context.Background(), StageRecipient, rcptSnap("127.0.0.1"))
	}
	var conns []int
	for _, r := range srv.requests() {
		conns = append(conns, r.Conn)
	}
	if want := []int{1, 1, 1, 2, 2, 2, 3}; !slices.Equal(conns, want) {
		t.Errorf("requests on connections %v, want %v", conns, want)
	}
	srv.waitFor("the client to close two connections", func() bool { return srv.closed == 2 })
}

// fakeClock is a clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func (f *fakeClock) now() time.Time          { return time.Unix(0, f.ns.Load()) }
func (f *fakeClock) advance(d time.Duration) { f.ns.Add(int64(d)) }
func newFakeClock() *fakeClock               { f := &fakeClock{}; f.ns.Store(time.Unix(1e9, 0).UnixNano()); return f }
func connOf(srv *policyServer) int           { r := srv.requests(); return r[len(r)-1].Conn }
func checkOnce(t *testing.T, c *Checker) Decision {
	t.Helper()
	d := c.Check(context.Background(), StageRecipient, rcptSnap("127.0.0.1"))
	if !d.Accepted() || len(d.Warnings) > 0 {
		t.Fatalf("reply %q, warnings %q", d.Reply, d.Warnings)
	}
	return d
}

// TestPolicyMaxIdleAndTTL: a connection idle for max_idle, or max_ttl old,
// is not used again; a new one is opened. The pool reads a clock the test
// moves.
func TestPolicyMaxIdleAndTTL(t *testing.T) {
	srv := startPolicyServer(t, "tcp", reply("DUNNO"))
	c := policyChecker(t, "{ "+srv.spec+", max_idle=10s, max_ttl=25s }", nil)
	clock := newFakeClock()
	c.policy.clients["{ "+srv.spec+", max_idle=10s, max_ttl=25s }"].now = clock.now

	checkOnce(t, c) // t=0: connection 1
	clock.advance(9 * time.Second)
	checkOnce(t, c) // idle 9s < 10s: reused
	if got := connOf(srv); got != 1 {
		t.Fatalf("after 9s idle: connection %d, want 1", got)
	}
	clock.advance(10 * time.Second)
	checkOnce(t, c) // idle 10s: closed, connection 2 opened at t=19
	if got := connOf(srv); got != 2 {
		t.Fatalf("after 10s idle: connection %d, want 2", got)
	}
	for i := 0; i < 3; i++ { // t=27, 35, 43: busy, never idle for 10s
		clock.advance(8 * time.Second)
		checkOnce(t, c)
	}
	// Connection 2 was opened at t=19; at t=43 it is 24s old, within
	// max_ttl; at t=51 it is 32s old and replaced.
	if got := connOf(srv); got != 2 {
		t.Fatalf("at 24s age: connection %d, want 2", got)
	}
	clock.advance(8 * time.Second)
	checkOnce(t, c)
	if got := connOf(srv); got != 3 {
		t.Fatalf("past max_ttl: connection %d, want 3", got)
	}
	srv.waitFor("the expired connections to be closed", func() bool { return srv.closed == 2 })
}

// TestPolicyIdleConnectionsClosed: an idle connection is closed after
// max_idle even when no further query comes (auto_clnt's idle timer).
func TestPolicyIdleConnectionsClosed(t *testing.T) {
	srv := startPolicyServer(t, "tcp", reply("DUNNO"))
	c := policyChecker(t, srv.spec, func(cfg *Config) { cfg.Policy.MaxIdle = 20 * time.Millisecond })
	checkOnce(t, c)
	srv.waitFor("the idle connection to be closed", func() bool { return srv.closed == 1 })
	checkOnce(t, c)
	if a, _ := srv.counts(); a != 2 {
		t.Errorf("%d connections, want 2", a)
	}
}

// TestPolicyStaleConnection: a pooled connection the server closed while
// idle is replaced without spending an attempt or logging a warning.
func TestPolicyStaleConnection(t *testing.T) {
	srv := startPolicyServer(t, "tcp", reply("DUNNO"))
	srv.closeAfterReply = true
	c := policyChecker(t, srv.spec, func(cfg *Config) { cfg.Policy.TryLimit = 1 })
	for i := 1; i <= 3; i++ {
		checkOnce(t, c)
		srv.waitFor("the server to close", func() bool { return srv.closed == i })
	}
	if a, _ := srv.counts(); a != 3 {
		t.Errorf("%d connections, want 3", a)
	}
}

// TestPolicyTimeoutAndCancel: a server that never answers times out, and
// a cancelled context ends the query (and the retry wait) at once.
func TestPolicyTimeoutAndCancel(t *testing.T) {
	srv := startPolicyServer(t, "tcp", func(policyReq) string { return policyHang })
	c := policyChecker(t, srv.spec, func(cfg *Config) {
		cfg.Policy.Timeout = time.Hour
		cfg.Policy.RetryDelay = time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background())
	srv.setAnswer(func(policyReq) string { cancel(); return policyHang })
	done := make(chan Decision)
	go func() { done <- c.Check(ctx, StageRecipient, rcptSnap("192.0.2.7")) }()
	select {
	case d := <-done:
		ep := endpointOf(srv.spec)
		want := []string{"query canceled on " + ep + " while reading policy reply",
			"problem talking to server " + ep + ": context canceled"}
		if !slices.Equal(d.Warnings, want) {
			t.Errorf("warnings %q, want %q", d.Warnings, want)
		}
		if got := d.Reply.String(); !strings.HasPrefix(got, "451 4.3.5 ") {
			t.Errorf("reply %q, want the default action", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Check did not return after its context was cancelled")
	}
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

// TestPolicyConcurrent: many goroutines share the pool; each gets the
// answer to its own request, and no more than MaxConnections are open.
func TestPolicyConcurrent(t *testing.T) {
	srv := startPolicyServer(t, "tcp", func(r policyReq) string {
		return "action=REJECT for " + r.get("recipient") + "\n\n"
	})
	c := policyChecker(t, srv.spec, func(cfg *Config) { cfg.Policy.MaxConnections = 4 })
	const workers, each = 32, 25
	var wg sync.WaitGroup
	errs := make(chan string, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s := rcptSnap("192.0.2.7")
				s.Recipient = fmt.Sprintf("u%d.%d@example.org", w, i)
				d := c.Check(context.Background(), StageRecipient, s)
				want := "554 5.7.1 <" + s.Recipient + ">: Recipient address rejected: for " + s.Recipient
				if got := d.Reply.String(); got != want || len(d.Warnings) > 0 {
					errs <- fmt.Sprintf("got %q (warnings %q), want %q", got, d.Warnings, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := len(srv.requests()); n != workers*each {
		t.Errorf("%d requests, want %d", n, workers*each)
	}
	if a, _ := srv.counts(); a > 4 {
		t.Errorf("%d connections opened, want at most MaxConnections 4", a)
	}
}

// TestPolicyClosedChecker: after Close, queries fail over to the default
// action and the server's connections are closed.
func TestPolicyClosedChecker(t *testing.T) {
	srv := startPolicyServer(t, "unix", reply("OK"))
	c := policyChecker(t, srv.spec, func(cfg *Config) { cfg.Policy.TryLimit = 1 })
	checkOnce(t, c)
	c.Close()
	srv.waitFor("the connection to be closed", func() bool { return srv.closed == 1 })
	d := c.Check(context.Background(), StageRecipient, rcptSnap("127.0.0.1"))
	if got := d.Reply.String(); !strings.HasPrefix(got, "451 4.3.5 ") {
		t.Errorf("reply %q, want the default action", got)
	}
	if want := "connect to " + endpointOf(srv.spec) + ": checker closed"; len(d.Warnings) == 0 || d.Warnings[0] != want {
		t.Errorf("warnings %q, want %q first", d.Warnings, want)
	}
}

// TestPolicyMissingArgument: check_policy_service at the end of a list is
// found when evaluated, as in Postfix.
func TestPolicyMissingArgument(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RecipientRestrictions = "reject_unauth_destination, check_policy_service"
	cfg.RelayRestrictions = "check_policy_service"
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := c.Check(context.Background(), StageRecipient, rcptSnap("192.0.2.7"))
	if got, want := d.Reply.String(), "451 4.3.5 Server configuration error"; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	if want := []string{"restriction check_policy_service must be followed by transport:server"}; !slices.Equal(d.Warnings, want) {
		t.Errorf("warnings %q, want %q", d.Warnings, want)
	}
}

// TestPolicyServiceSettings parses the "{ endpoint, name=value }" form.
// The errors are those Postfix 3.7.11's smtpd reports as fatal for the
// same arguments (checked by hand), which New reports as ConfigError.
func TestPolicyServiceSettings(t *testing.T) {
	base := defaultPolicyConfig()
	ok := []struct {
		spec string
		want policyService
	}{
		{"inet:127.0.0.1:9998", policyService{"tcp", "127.0.0.1:9998", "127.0.0.1:9998", base}},
		{"inet:[::1]:9998", policyService{"tcp", "[::1]:9998", "[::1]:9998", base}},
		{"inet::9998", policyService{"tcp", "localhost:9998", ":9998", base}},
		{"unix:private/policy", policyService{"unix", "private/policy", "private/policy", base}},
		{"local:/run/p.sock", policyService{"unix", "/run/p.sock", "/run/p.sock", base}},
		{"{inet:h:1}", policyService{"tcp", "h:1", "h:1", base}},
		{"{ inet:h:1, timeout=10sec }", policyService{"tcp", "h:1", "h:1", func() PolicyConfig {
			c := base
			c.Timeout = 10 * time.Second // conv_time ignores what follows the unit
			return c
		}()}},
		{"{ inet:h:1, {default_action = REJECT busy now}, request_limit=5, retry_delay=2m,\tmax_ttl=1h max_idle=30, try_limit=3, policy_context=abc, timeout=1w }",
			policyService{"tcp", "h:1", "h:1", func() PolicyConfig {
				c := base
				c.DefaultAction, c.RequestLimit, c.RetryDelay = "REJECT busy now", 5, 2*time.Minute
				c.MaxTTL, c.MaxIdle, c.TryLimit, c.PolicyContext = time.Hour, 30*time.Second, 3, "abc"
				c.Timeout = 7 * 24 * time.Hour
				return c
			}()}},
		{"{ inet:h:1, timeout=5, timeout=6 }", policyService{"tcp", "h:1", "h:1", func() PolicyConfig {
			c := base
			c.Timeout = 6 * time.Second
			return c
		}()}},
	}
	for _, tc := range ok {
		got, err := parsePolicyService(tc.spec, base)
		if err != nil || got != tc.want {
			t.Errorf("%s:\n\tgot  %+v, %v\n\twant %+v", tc.spec, got, err, tc.want)
		}
	}
	bad := []struct{ spec, want string }{
		{"{ inet:h:1, policy_context= }", "bad string length 0 < 1: policy_context = "},
		{"{ inet:h:1, default_action= }", "bad string length 0 < 1: default_action = "},
		{"{ inet:h:1, bogus=1 }", `unknown option: "bogus = 1"`},
		{"{ inet:h:1, timeout=0 }", "invalid timeout: 0 (min 1)"},
		{"{ inet:h:1, timeout=10x }", "timeout: bad time value or unit: 10x"},
		{"{ inet:h:1, max_idle=1W }", "max_idle: bad time value or unit: 1W"},
		{"{ inet:h:1, retry_delay=-1 }", "retry_delay: bad time value or unit: -1"},
		{"{ inet:h:1, try_limit=0 }", "invalid try_limit parameter value 0 < 1"},
		{"{ inet:h:1, try_limit=x }", "bad numerical configuration: try_limit = x"},
		{"{ inet:h:1, request_limit=-1 }", "invalid request_limit parameter value -1 < 0"},
		{"{ inet:h:1, =3 }", `malformed option: missing attribute name: "...=3..."`},
		{"{ inet:h:1 junk }", `malformed option: missing '=' after attribute name: "...junk..."`},
		{"{ }", `empty policy service: "{ }"`},
		{"{ inet:h:1", `policy service syntax error: missing '}' in "{ inet:h:1"`},
		{"{ inet:h:1 }x", `policy service syntax error: syntax error after '}' in "{ inet:h:1 }x"`},
		{"foo", `need service transport:endpoint instead of "foo"`},
		{"inet:", `need service transport:endpoint instead of "inet:"`},
		{"tcp:h:1", "invalid transport name: tcp in service: tcp:h:1"},
		{"inet:h", "h: missing service information"},
	}
	for _, tc := range bad {
		_, err := parsePolicyService(tc.spec, base)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: error %v, want %q", tc.spec, err, tc.want)
		}
	}

	// New reports the list and the element.
	cfg := DefaultConfig()
	cfg.Classes = map[string]string{"pol": "check_policy_service { inet:h:1, bogus=1 }"}
	_, err := New(context.Background(), cfg)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Param != "pol" ||
		!strings.HasSuffix(err.Error(), `check_policy_service { inet:h:1, bogus=1 }: unknown option: "bogus = 1"`) {
		t.Errorf("New: %v", err)
	}
	cfg = DefaultConfig()
	cfg.SenderRestrictions = "check_policy_service foo"
	if _, err := New(context.Background(), cfg); !errors.As(err, &ce) || ce.Param != "smtpd_sender_restrictions" {
		t.Errorf("New with a bad endpoint: %v", err)
	}
	cfg = DefaultConfig()
	cfg.SenderRestrictions = "check_policy_service inet:h:1"
	cfg.Policy.Timeout = -time.Second
	if _, err := New(context.Background(), cfg); !errors.As(err, &ce) || ce.Param != "smtpd_policy_service_timeout" {
		t.Errorf("New with a negative timeout: %v", err)
	}
}

// TestPolicyConfigFrom reads the smtpd_policy_service_* parameters.
func TestPolicyConfigFrom(t *testing.T) {
	parse := func(text string) (Config, error) {
		c, err := config.Parse("main.cf", strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return ConfigFrom(c)
	}
	cfg, err := parse("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy != defaultPolicyConfig() {
		t.Errorf("defaults %+v, want %+v", cfg.Policy, defaultPolicyConfig())
	}
	cfg, err = parse(`smtpd_policy_service_timeout = 10
smtpd_policy_service_max_idle = 1m
smtpd_policy_service_max_ttl = 2h
smtpd_policy_service_request_limit = 7
smtpd_policy_service_try_limit = 4
smtpd_policy_service_retry_delay = 3s
smtpd_policy_service_default_action = DUNNO
smtpd_policy_service_policy_context = site1
`)
	if err != nil {
		t.Fatal(err)
	}
	want := PolicyConfig{Timeout: 10 * time.Second, MaxIdle: time.Minute, MaxTTL: 2 * time.Hour,
		RequestLimit: 7, TryLimit: 4, RetryDelay: 3 * time.Second, DefaultAction: "DUNNO",
		PolicyContext: "site1", MaxConnections: defaultPolicyMaxConns}
	if cfg.Policy != want {
		t.Errorf("got %+v, want %+v", cfg.Policy, want)
	}
	for _, bad := range []string{
		"smtpd_policy_service_timeout = 0", "smtpd_policy_service_try_limit = 0",
		"smtpd_policy_service_default_action =", "smtpd_policy_service_request_limit = -1",
	} {
		if _, err := parse(bad + "\n"); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestPolicyOracle runs Postfix's smtpd with check_policy_service in every
// restriction list against a recording server, and our Checker against
// another: the requests must be the same, attribute for attribute, at
// every stage; then the replies to scripted policy answers must be the
// same.
func TestPolicyOracle(t *testing.T) {
	pfxSrv := startPolicyServer(t, "tcp", reply("DUNNO"))
	ourSrv := startPolicyServer(t, "tcp", reply("DUNNO"))
	dead := deadEndpoint(t)
	lists := func(spec string) string {
		svc := "check_policy_service { " + spec + ", policy_context=oracle }"
		return strings.ReplaceAll(`smtpd_delay_reject = no
smtpd_client_restrictions = SVC
smtpd_helo_restrictions = SVC
smtpd_sender_restrictions = SVC
smtpd_relay_restrictions = SVC, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_data_restrictions = SVC
smtpd_end_of_data_restrictions = SVC
smtpd_etrn_restrictions = SVC
smtpd_restriction_classes = polfail, polnest
polfail = check_policy_service { DEAD, try_limit=1, { default_action = REJECT defaulted } }
polnest = check_policy_service { DEAD, try_limit=1, default_action=polfail }
`, "SVC", svc)
	}
	main := strings.ReplaceAll(lists(pfxSrv.spec), "DEAD", dead) + "relay_domains = example.org\n"
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main})
	// The harness's own start-up connection was checked too.
	seen := len(pfxSrv.requests())

	// Our Checker: the same lists, from the same main.cf text.
	mc, err := config.Parse("main.cf", strings.NewReader(strings.ReplaceAll(lists(ourSrv.spec), "DEAD", dead)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFrom(mc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RejectUnlistedRecipient = false
	ours, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()

	type step struct {
		cmd   string                          // "" for the connection itself
		stage Stage                           // the check it causes
		edit  func(s *Snapshot, pf policyReq) // the session after the command
	}
	var sess Snapshot
	steps := []step{
		{"", StageClient, func(s *Snapshot, pf policyReq) {
			*s = Snapshot{ClientAddr: netip.MustParseAddr("127.0.0.1"), ServerAddr: netip.MustParseAddr("127.0.0.1"), ServerPort: p.Port}
			fmt.Sscan(pf.get("client_port"), &s.ClientPort) // the harness's ephemeral port
		}},
		{"XCLIENT NAME=mail.example.com ADDR=192.0.2.7 PORT=4711", StageClient, func(s *Snapshot, _ policyReq) {
			s.ClientAddr, s.ClientName, s.ReverseName, s.ClientPort = netip.MustParseAddr("192.0.2.7"), "mail.example.com", "mail.example.com", 4711
			s.Verb = "XCLIENT"
		}},
		{"EHLO client.example.com", StageHelo, func(s *Snapshot, _ policyReq) { s.Verb, s.Helo, s.ESMTP = "", "client.example.com", true }},
		{"MAIL FROM:<a@example.com> SIZE=1234", StageSender, func(s *Snapshot, _ policyReq) { s.Sender, s.Size = "a@example.com", 1234 }},
		{"RCPT TO:<b@example.org>", StageRecipient, func(s *Snapshot, _ policyReq) { s.Recipient = "b@example.org" }},
		{"RCPT TO:<c@example.org>", StageRecipient, func(s *Snapshot, _ policyReq) { s.Recipient, s.RecipientCount = "c@example.org", 1 }},
		{"DATA", StageData, func(s *Snapshot, _ policyReq) { s.RecipientCount = 2 }},
		{".", StageEndOfData, func(s *Snapshot, pf policyReq) { fmt.Sscan(pf.get("size"), &s.Size) }},
		{"VRFY <b@example.org>", StageRecipient, func(s *Snapshot, _ policyReq) {
			s.Sender, s.Recipient, s.RecipientCount, s.Size, s.Verb = "", "b@example.org", 0, 0, "VRFY"
		}},
		{"ETRN example.org", StageETRN, func(s *Snapshot, _ policyReq) { s.Recipient, s.Verb, s.ETRNDomain = "", "", "example.org" }},
	}
	conn := p.Session(t)
	for _, st := range steps {
		var rep oracle.Reply
		switch st.cmd {
		case "":
		case ".":
			rep = conn.Message(oracle.MessageBody)
		default:
			rep = conn.Cmd(st.cmd)
		}
		if rep.Code >= 400 {
			t.Fatalf("Postfix answered %q with %s", st.cmd, rep)
		}
		reqs := pfxSrv.requests()
		if len(reqs) != seen+1 {
			t.Fatalf("%q: Postfix sent %d policy requests, want 1", st.cmd, len(reqs)-seen)
		}
		pf := reqs[seen]
		seen++
		st.edit(&sess, pf)
		s := sess
		// Values Postfix makes up; the Snapshot carries them.
		s.QueueID, s.Instance = pf.get("queue_id"), pf.get("instance")
		before := len(ourSrv.requests())
		d := ours.Check(context.Background(), st.stage, &s)
		got := ourSrv.requests()[before:]
		if len(got) != 1 {
			t.Fatalf("%q: our Checker sent %d requests (warnings %q), want 1", st.cmd, len(got), d.Warnings)
		}
		if diff := diffAttrs(got[0].Attrs, pf.Attrs); diff != "" {
			t.Errorf("%q (%s): request differs from Postfix's:%s", st.cmd, pf.get("protocol_state"), diff)
		}
	}

	// Replies: the policy answers ACTION at RCPT and DUNNO elsewhere.
	normalize := func(lines []string, spec string) []string {
		var out []string
		for _, l := range lines {
			out = append(out, strings.ReplaceAll(l, spec, "SPEC"))
		}
		return out
	}
	for _, action := range []string{
		"REJECT go away", "550 5.1.1 no such user", "450 4.2.0 mailbox busy", "DEFER", "521 closing",
		"", "check_foo", "inet:foo", "reject_unauth_pipelining, reject", "defer_if_permit, permit",
		"polfail", "polnest", "OK",
	} {
		answer := func(r policyReq) string {
			if r.get("protocol_state") == "RCPT" {
				return "action=" + action + "\n\n"
			}
			return "action=DUNNO\n\n"
		}
		pfxSrv.setAnswer(answer)
		ourSrv.setAnswer(answer)
		c := p.Session(t)
		for _, cmd := range []string{"XCLIENT NAME=mail.example.com ADDR=192.0.2.7 PORT=4711", "EHLO client.example.com", "MAIL FROM:<a@example.com>"} {
			if r := c.Cmd(cmd); r.Code >= 400 {
				t.Fatalf("%s: %s", cmd, r)
			}
		}
		want := c.Cmd("RCPT TO:<b@example.org>")
		c.Close()
		s := rcptSnap("192.0.2.7")
		s.Helo, s.ServerAddr, s.ServerPort = "client.example.com", netip.MustParseAddr("127.0.0.1"), p.Port
		d := ours.Check(context.Background(), StageRecipient, s)
		got := d.Reply.String()
		if d.Accepted() {
			got = "250 2.1.5 Ok"
		}
		if got != want.String() {
			t.Errorf("action %q: reply %q, Postfix %q", action, got, want.String())
		}
		var pw []string
		for _, l := range want.Log {
			if w, ok := strings.CutPrefix(l, "warning: "); ok {
				pw = append(pw, w)
			}
		}
		if g, w := normalize(d.Warnings, "{ "+ourSrv.spec+", policy_context=oracle }"), normalize(pw, "{ "+pfxSrv.spec+", policy_context=oracle }"); !slices.Equal(g, w) {
			t.Errorf("action %q: warnings\n\t%q\nPostfix\n\t%q", action, g, w)
		}
	}
}

// The reply parser against a plain reading of attr_scan_plain: lines split
// at LF, the first "action" line (with '=') before the empty line wins.
func FuzzPolicyReply(f *testing.F) {
	for _, s := range []string{
		"action=DUNNO\n\n", "\n", "action\n\n", "x=y\naction=REJECT a=b\naction=OK\n\n",
		"action=OK\r\n\r\n", "action=OK\n", "", "action=" + strings.Repeat("y", 5000) + "\n\n",
	} {
		f.Add([]byte(s))
	}
	// Small limits, so that short inputs reach them.
	const maxLine, maxReply = 40, 200
	f.Fuzz(func(t *testing.T, data []byte) {
		action, n, err := readPolicyReplyLimit(bufio.NewReaderSize(bytes.NewReader(data), 16), maxLine, maxReply)
		if n > len(data) {
			t.Fatalf("read %d of %d bytes", n, len(data))
		}
		// The model.
		var wantAction string
		var wantErr error = errors.New("incomplete")
		found := false
		rest := string(data)
		for total := 0; ; {
			line, more, ok := strings.Cut(rest, "\n")
			if !ok {
				break
			}
			total += len(line) + 1
			if len(line) > maxLine || total > maxReply {
				wantErr = errReplyTooLong
				break
			}
			rest = more
			if line == "" {
				if found {
					wantErr = nil
				} else {
					wantErr = errNoAction
				}
				break
			}
			if !found {
				if name, value, eq := strings.Cut(line, "="); name == "action" {
					if !eq {
						wantErr = errNoActionValue
						break
					}
					wantAction, found = value, true
				}
			}
		}
		switch {
		case wantErr == nil:
			if err != nil || action != wantAction {
				t.Fatalf("%q: got %q, %v; want %q", data, action, err, wantAction)
			}
		case errors.Is(wantErr, errNoAction), errors.Is(wantErr, errNoActionValue), errors.Is(wantErr, errReplyTooLong):
			if !errors.Is(err, wantErr) {
				t.Fatalf("%q: got %q, %v; want error %v", data, action, err, wantErr)
			}
		default:
			if err == nil {
				t.Fatalf("%q: incomplete reply accepted as %q", data, action)
			}
		}
		if err == nil && strings.Contains(action, "\n") {
			t.Fatalf("action %q holds a newline", action)
		}
	})
}

// The settings parser must not panic, must keep Postfix's lower bounds,
// and a parsed service must round-trip through its canonical form.
func FuzzPolicyService(f *testing.F) {
	for _, s := range []string{
		"inet:127.0.0.1:9998", "unix:/run/p", "{ inet:h:1, timeout=10s }", "{ inet:h:1, {default_action = REJECT x}, try_limit=3 }",
		"{ }", "{ inet:h:1", "{inet:[::1]:5, max_idle=1w, max_ttl=2d, retry_delay=3m, request_limit=0, policy_context=c}",
		"tcp:x:1", "{ inet:h:1, timeout=99999999999 }", "{{}}", "{ inet:h:1, { timeout = 5 } } ",
	} {
		f.Add(s)
	}
	base := defaultPolicyConfig()
	f.Fuzz(func(t *testing.T, spec string) {
		svc, err := parsePolicyService(spec, base)
		if err != nil {
			return
		}
		c := svc.cfg
		if c.Timeout < time.Second || c.MaxIdle < time.Second || c.MaxTTL < time.Second ||
			c.RetryDelay < time.Second || c.TryLimit < 1 || c.RequestLimit < 0 || c.DefaultAction == "" {
			t.Fatalf("%q: settings out of range: %+v", spec, c)
		}
		if svc.network != "tcp" && svc.network != "unix" || svc.endpoint == "" || svc.address == "" {
			t.Fatalf("%q: endpoint %+v", spec, svc)
		}
		if strings.ContainsAny(c.DefaultAction+c.PolicyContext+svc.endpoint, "{}") ||
			strings.ContainsAny(svc.endpoint, policySep) {
			return // no canonical form
		}
		canon := fmt.Sprintf("{ %s:%s, timeout=%ds, max_idle=%ds, max_ttl=%ds, retry_delay=%ds, try_limit=%d, request_limit=%d, { default_action = %s } }",
			map[string]string{"tcp": "inet", "unix": "unix"}[svc.network], svc.endpoint,
			c.Timeout/time.Second, c.MaxIdle/time.Second, c.MaxTTL/time.Second, c.RetryDelay/time.Second,
			c.TryLimit, c.RequestLimit, c.DefaultAction)
		if c.PolicyContext != "" {
			canon = strings.TrimSuffix(canon, " }") + ", { policy_context = " + c.PolicyContext + " } }"
		}
		again, err := parsePolicyService(canon, base)
		if err != nil {
			t.Fatalf("%q: canonical form %q: %v", spec, canon, err)
		}
		if again.cfg.DefaultAction != strings.TrimSpace(c.DefaultAction) || again.cfg.Timeout != c.Timeout ||
			again.cfg.TryLimit != c.TryLimit || again.address != svc.address {
			t.Fatalf("%q: canonical form %q parses as %+v, want %+v", spec, canon, again, svc)
		}
	})
}

func benchmarkPolicy(b *testing.B, network string, requestLimit int) {
	srv := startPolicyServer(b, network, reply("DUNNO"))
	srv.forget = true
	spec := srv.spec
	if requestLimit > 0 {
		spec = fmt.Sprintf("{ %s, request_limit=%d }", srv.spec, requestLimit)
	}
	c := policyChecker(b, spec, nil)
	s := rcptSnap("127.0.0.1")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if d := c.Check(ctx, StageRecipient, s); !d.Accepted() {
			b.Fatal(d.Reply)
		}
	}
}

// BenchmarkPolicyRoundTrip measures one check_policy_service query over
// loopback: on a pooled connection, and on a fresh connection each time
// (request_limit=1).
func BenchmarkPolicyRoundTrip(b *testing.B) {
	for _, network := range []string{"tcp", "unix"} {
		b.Run(network+"/pooled", func(b *testing.B) { benchmarkPolicy(b, network, 0) })
		b.Run(network+"/fresh", func(b *testing.B) { benchmarkPolicy(b, network, 1) })
	}
}

// BenchmarkPolicyParallel measures queries from many goroutines sharing
// the pool.
func BenchmarkPolicyParallel(b *testing.B) {
	srv := startPolicyServer(b, "tcp", reply("DUNNO"))
	srv.forget = true
	c := policyChecker(b, srv.spec, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s := rcptSnap("127.0.0.1")
		for pb.Next() {
			if d := c.Check(context.Background(), StageRecipient, s); !d.Accepted() {
				b.Error(d.Reply)
				return
			}
		}
	})
}

// Example of a Checker that delegates recipient checks to a policy server
// (here a tiny one that rejects one address), with per-service settings.
func Example_policyService() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				rcpt := ""
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if v, ok := strings.CutPrefix(line, "recipient="); ok {
						rcpt = strings.TrimSpace(v)
					}
					if line == "\n" {
						action := "DUNNO"
						if rcpt == "spamtrap@example.org" {
							action = "REJECT no thanks"
						}
						fmt.Fprintf(conn, "action=%s\n\n", action)
					}
				}
			}()
		}
	}()

	cfg := DefaultConfig()
	cfg.RelayRestrictions = "permit_mynetworks, reject"
	cfg.RecipientRestrictions = "check_policy_service { inet:" + ln.Addr().String() +
		", timeout=10s, default_action=DUNNO }"
	c, err := New(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, rcpt := range []string{"spamtrap@example.org", "friend@example.org"} {
		d := c.Check(context.Background(), StageRecipient, &Snapshot{
			ClientAddr: netip.MustParseAddr("127.0.0.1"), Helo: "localhost", Sender: "a@example.com", Recipient: rcpt,
		})
		fmt.Printf("%s: %q\n", rcpt, d.Reply.String())
	}
	// Output:
	// spamtrap@example.org: "554 5.7.1 <spamtrap@example.org>: Recipient address rejected: no thanks"
	// friend@example.org: ""
}
