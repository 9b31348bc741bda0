package cleanup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/contentcheck"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/rewrite"
)

func testRewriter(t testing.TB, mod func(*rewrite.Config)) *rewrite.Rewriter {
	t.Helper()
	rc := rewrite.Defaults("example.com", "example.com")
	if mod != nil {
		mod(&rc)
	}
	r, err := rewrite.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMissingHeaders(t *testing.T) {
	const id = "QUEUEID"
	tests := []struct {
		name     string
		cfg      Config
		in       Input
		msg      string
		want     []string // header lines that must be in the stored message
		wantNot  []string // substrings that must not
		wantLogs []string // with "ID" standing for the queue ID
	}{
		{
			name: "local submission gets Message-Id, Date and From",
			in:   Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "ann@example.org"}}, Local: true},
			msg:  "Subject: hi\n\nbody\n",
			want: []string{"Message-Id: <20261128040812.QUEUEID@mx.example.com>", "Date: Sat, 28 Nov 2026 04:08:12 +0000 (UTC)",
				"From: joe@example.com"},
			wantLogs: []string{"QUEUEID: message-id=<20261128040812.QUEUEID@mx.example.com>"},
		},
		{
			name:     "long queue IDs",
			cfg:      Config{LongQueueIDs: true},
			in:       Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "ann@example.org"}}, Local: true},
			msg:      "Subject: hi\n\nbody\n",
			want:     []string{"Message-Id: <QUEUEID@mx.example.com>"},
			wantLogs: []string{"QUEUEID: message-id=<QUEUEID@mx.example.com>"},
		},
		{
			name:     "remote mail is left alone",
			in:       Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "ann@example.org"}}, Client: ClientInfo{Name: "x", Addr: "192.0.2.1"}},
			msg:      "Subject: hi\n\nbody\n",
			wantNot:  []string{"Message-Id:", "Date:", "From:"},
			wantLogs: []string{"QUEUEID: message-id=<>"},
		},
		{
			name:     "always_add_missing_headers",
			cfg:      Config{AlwaysAddMissingHeaders: true},
			in:       Input{Sender: "", Recipients: []Recipient{{Addr: "ann@example.org"}}, Client: ClientInfo{Name: "x", Addr: "192.0.2.1"}},
			msg:      "Subject: hi\n\nbody\n",
			want:     []string{"Message-Id: <20261128040812.QUEUEID@mx.example.com>", "From: MAILER-DAEMON"},
			wantLogs: []string{"QUEUEID: message-id=<20261128040812.QUEUEID@mx.example.com>"},
		},
		{
			name:     "remote_header_rewrite_domain makes remote mail get headers",
			cfg:      Config{RemoteHeaderRewriteDomain: "remote.example"},
			in:       Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "ann@example.org"}}, Client: ClientInfo{Name: "x", Addr: "192.0.2.1"}},
			msg:      "Subject: hi\n\nbody\n",
			want:     []string{"From: joe@example.com"},
			wantLogs: []string{"QUEUEID: message-id=<20261128040812.QUEUEID@mx.example.com>"},
		},
		{
			name:     "present headers are kept",
			in:       Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "ann@example.org"}}, Local: true},
			msg:      "Message-ID: <abc@x>\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\nfrom: Someone <s@x>\nSubject: hi\n\nbody\n",
			want:     []string{"Message-ID: <abc@x>", "DATE: Mon, 1 Jan 2024 00:00:00 +0000"},
			wantNot:  []string{"Message-Id: <2026", "Date: Sat", "From: joe"},
			wantLogs: []string{"QUEUEID: message-id=<abc@x>"},
		},
		{
			name: "Resent- headers: the Resent- ones are added",
			in:   Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "ann@example.org"}}, Local: true},
			msg:  "Message-ID: <abc@x>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nFrom: s@x\nResent-To: ann@example.org\n\nbody\n",
			want: []string{"Resent-Message-Id: <20261128040812.QUEUEID@mx.example.com>", "Resent-Date: Sat, 28 Nov 2026 04:08:12 +0000 (UTC)",
				"Resent-From: joe@example.com"},
			wantLogs: []string{"QUEUEID: message-id=<abc@x>", "QUEUEID: resent-message-id=<20261128040812.QUEUEID@mx.example.com>"},
		},
		{
			name: "full name, standard",
			in:   Input{Sender: "joe@example.com", FullName: "Joe Q. Public", Recipients: []Recipient{{Addr: "ann@example.org"}}, Local: true},
			msg:  "Subject: hi\n\nbody\n",
			want: []string{`From: "Joe Q. Public" <joe@example.com>`},
		},
		{
			name: "full name, obsolete",
			cfg:  Config{HeaderFromFormat: "obsolete"},
			in:   Input{Sender: "joe@example.com", FullName: "Joe Public", Recipients: []Recipient{{Addr: "ann@example.org"}}, Local: true},
			msg:  "Subject: hi\n\nbody\n",
			want: []string{`From: joe@example.com (Joe Public)`},
		},
		{
			name: "undisclosed_recipients_header",
			cfg:  Config{UndisclosedRecipientsHeader: "To: undisclosed-recipients:;"},
			in:   Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "ann@example.org"}}, Local: true},
			msg:  "Subject: hi\n\nbody\n",
			want: []string{"To: undisclosed-recipients:;"},
		},
		{
			name:    "message_drop_headers",
			in:      Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "ann@example.org"}}, Client: ClientInfo{Name: "x", Addr: "192.0.2.1"}},
			msg:     "Return-Path: <x@y>\nBcc: secret@example.org\nContent-Length: 12\nResent-Bcc: r@x\nSubject: hi\n\nbody\n",
			want:    []string{"Subject: hi"},
			wantNot: []string{"Return-Path", "Bcc", "Content-Length", "secret"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, st, rec := newTest(t, tc.cfg)
			env, data, qid, err := submit(t, c, st, tc.in, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			hdrs, _, _ := strings.Cut(data, "\r\n\r\n")
			lines := strings.Split(hdrs, "\r\n")
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, id, qid)
				found := false
				for _, l := range lines {
					if l == w {
						found = true
					}
				}
				if !found {
					t.Errorf("no header line %q in\n%s", w, hdrs)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(hdrs, w) {
					t.Errorf("headers contain %q:\n%s", w, hdrs)
				}
			}
			for _, w := range tc.wantLogs {
				w = strings.ReplaceAll(w, id, qid)
				if !rec.has(w) {
					t.Errorf("no log line %q in %q", w, rec.all())
				}
			}
			if !strings.HasSuffix(data, "\r\n\r\nbody\r\n") {
				t.Errorf("body changed: %q", data)
			}
			if env.QueueID != qid || env.Size != int64(len(data)) {
				t.Errorf("envelope %+v for %s (%d bytes)", env, qid, len(data))
			}
		})
	}
}

func TestHopcount(t *testing.T) {
	for _, n := range []int{49, 50} {
		c, st, rec := newTest(t, Config{})
		msg := strings.Repeat("Received: from a by b\n", n) + "Subject: loop\n\nbody\n"
		_, _, id, err := submit(t, c, st, Input{Sender: "s@x", Recipients: []Recipient{{Addr: "r@y"}}, Local: true}, msg)
		var re *RejectError
		if n < 50 {
			if err != nil {
				t.Errorf("%d hops: %v", n, err)
			}
			continue
		}
		if !errors.As(err, &re) || re.Reply.String() != "554 5.4.0 Error: too many hops" {
			t.Errorf("%d hops: %v, want 554 5.4.0 Error: too many hops", n, err)
		}
		// As Postfix 3.7 logs it (seen with a private instance), and no
		// message-id line.
		if got := rec.all(); len(got) != 1 || got[0] != "warning: "+id+": message rejected: hopcount exceeded" {
			t.Errorf("log %q", got)
		}
		if ids, _ := st.List(); len(ids) != 0 {
			t.Errorf("rejected message queued: %v", ids)
		}
		if ents, _ := os.ReadDir(st.Dir); len(ents) != 0 {
			t.Errorf("files left behind: %v", ents)
		}
	}
}

func TestExtractRecipients(t *testing.T) {
	tests := []struct {
		name, msg string
		given     []Recipient
		want      string
	}{
		{"to cc bcc", "To: a@x, B <b@x>\nCc: c@x\nBcc: d@x\nSubject: s\n\nbody\n", nil, "a@x,b@x,c@x,d@x"},
		{"plus command line", "To: a@x\n\nbody\n", []Recipient{{Addr: "z@x"}}, "z@x,a@x"},
		{"resent wins", "To: a@x\nResent-To: r@x\nResent-Bcc: rb@x\n\nbody\n", nil, "r@x,rb@x"},
		{"group", "To: friends: a@x, b@x;\n\nbody\n", nil, "a@x,b@x"},
		{"duplicates", "To: a@x\nCc: a@x\n\nbody\n", nil, "a@x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, st, _ := newTest(t, Config{})
			env, data, _, err := submit(t, c, st, Input{Sender: "s@x", Recipients: tc.given, ExtractRecipients: true, Local: true}, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := addrs(env.Recipients); got != tc.want {
				t.Errorf("recipients %s, want %s", got, tc.want)
			}
			if strings.Contains(data, "Bcc:") {
				t.Errorf("Bcc kept:\n%s", data)
			}
		})
	}
	c, st, _ := newTest(t, Config{})
	_, _, _, err := submit(t, c, st, Input{Sender: "s@x", ExtractRecipients: true, Local: true}, "Subject: none\n\nbody\n")
	var re *RejectError
	if !errors.As(err, &re) || re.Reply.Code != 550 {
		t.Errorf("no recipients: %v, want a 550", err)
	}
}

func TestEnvelope(t *testing.T) {
	virtual := maps.StaticMap{
		"list@example.com":  "a@example.org, b@example.org",
		"alias@example.com": "a@example.org",
		"loop@example.com":  "loop1@example.com",
		"loop1@example.com": "loop2@example.com",
		"loop2@example.com": "loop3@example.com",
	}
	rw := testRewriter(t, func(rc *rewrite.Config) {
		rc.VirtualAliasMaps = maps.List{virtual}
		rc.VirtualAliasRecursionLimit = 2
		rc.SenderCanonicalMaps = maps.List{maps.StaticMap{"old@example.com": "new@example.com"}}
	})
	tests := []struct {
		name     string
		cfg      Config
		in       Input
		want     []Recipient
		sender   string
		hold     bool
		filter   string
		redirect string
		wantErr  string
	}{
		{
			name:   "canonical sender, unqualified recipient",
			in:     Input{Sender: "old@example.com", Recipients: []Recipient{{Addr: "ann"}}},
			sender: "new@example.com",
			want:   []Recipient{{Addr: "ann@example.com", Original: "ann"}},
		},
		{
			name: "virtual alias to a list; orig_to and ORCPT kept",
			in:   Input{Sender: "s@example.com", Recipients: []Recipient{{Addr: "list@example.com"}}},
			want: []Recipient{
				{Addr: "a@example.org", Original: "list@example.com"},
				{Addr: "b@example.org", Original: "list@example.com"},
			},
		},
		{
			name: "two originals to one mailbox both stay",
			in:   Input{Sender: "s@example.com", Recipients: []Recipient{{Addr: "alias@example.com"}, {Addr: "a@example.org"}, {Addr: "a@example.org"}}},
			want: []Recipient{
				{Addr: "a@example.org", Original: "alias@example.com"},
				{Addr: "a@example.org", Original: "a@example.org"},
			},
		},
		{
			name: "without enable_original_recipient they merge",
			cfg:  Config{NoOriginalRecipient: true},
			in:   Input{Sender: "s@example.com", Recipients: []Recipient{{Addr: "alias@example.com"}, {Addr: "a@example.org"}}},
			want: []Recipient{{Addr: "a@example.org", Original: "alias@example.com"}},
		},
		{
			name:    "expansion over the recursion limit defers",
			in:      Input{Sender: "s@example.com", Recipients: []Recipient{{Addr: "loop@example.com"}}},
			wantErr: "451 4.6.0 Alias expansion error",
		},
		{
			name: "always_bcc and effects",
			cfg:  Config{AlwaysBCC: "archive@example.com"},
			in: Input{Sender: "s@example.com", Recipients: []Recipient{{Addr: "r@example.org"}},
				Effects: restrictions.Effects{Hold: true, Filter: "smtp:[127.0.0.1]:10025", BCC: []string{"copy@example.net"}}},
			want: []Recipient{
				{Addr: "r@example.org", Original: "r@example.org"},
				{Addr: "copy@example.net", Original: "copy@example.net", ORCPT: "rfc822;copy@example.net"},
				{Addr: "archive@example.com", Original: "archive@example.com", Notify: []string{"NEVER"}},
			},
			hold: true, filter: "smtp:[127.0.0.1]:10025",
		},
		{
			name:   "no_address_mappings: no aliases, no bcc",
			cfg:    Config{AlwaysBCC: "archive@example.com", NoAddressMappings: true, ContentFilter: "scan:[127.0.0.1]:10024"},
			in:     Input{Sender: "old@example.com", Recipients: []Recipient{{Addr: "list@example.com"}}},
			want:   []Recipient{{Addr: "list@example.com", Original: "list@example.com"}},
			sender: "old@example.com", filter: "scan:[127.0.0.1]:10024",
		},
		{
			name: "sender and recipient bcc maps",
			cfg: Config{SenderBCCMaps: maps.List{maps.StaticMap{"s@example.com": "sbcc@example.com"}},
				RecipientBCCMaps: maps.List{maps.StaticMap{"@example.org": "rbcc@example.com"}}},
			in: Input{Sender: "s+tag@example.com", Recipients: []Recipient{{Addr: "r@example.org"}}},
			want: []Recipient{
				{Addr: "sbcc@example.com", Original: "sbcc@example.com", Notify: []string{"NEVER"}},
				{Addr: "r@example.org", Original: "r@example.org"},
				{Addr: "rbcc@example.com", Original: "rbcc@example.com", Notify: []string{"NEVER"}},
			},
			sender: "s+tag@example.com",
		},
		{
			name:     "redirect replaces everyone",
			in:       Input{Sender: "s@example.com", Recipients: []Recipient{{Addr: "a@x.example"}, {Addr: "b@x.example"}}, Effects: restrictions.Effects{Redirect: "abuse"}},
			want:     []Recipient{{Addr: "a@x.example", Original: "a@x.example"}, {Addr: "b@x.example", Original: "b@x.example"}},
			redirect: "abuse@example.com",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Rewriter = rw
			if cfg.SenderBCCMaps != nil {
				rc := rw.Config()
				rc.RecipientDelimiter = "+"
				cfg.Rewriter, _ = rewrite.New(rc)
			}
			c, st, _ := newTest(t, cfg)
			env, _, _, err := submit(t, c, st, tc.in, "Subject: x\n\nbody\n")
			if tc.wantErr != "" {
				var re *RejectError
				if !errors.As(err, &re) || re.Reply.String() != tc.wantErr {
					t.Fatalf("got %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sender := tc.sender
			if sender == "" {
				sender = tc.in.Sender
			}
			if env.Sender != sender {
				t.Errorf("sender %q, want %q", env.Sender, sender)
			}
			if len(env.Recipients) != len(tc.want) {
				t.Fatalf("recipients %+v, want %+v", env.Recipients, tc.want)
			}
			for i, w := range tc.want {
				g := env.Recipients[i]
				if g.Addr != w.Addr || g.Original != w.Original || g.ORCPT != w.ORCPT || strings.Join(g.Notify, ",") != strings.Join(w.Notify, ",") {
					t.Errorf("recipient %d: %+v, want %+v", i, g, w)
				}
			}
			if env.Hold != tc.hold || env.Filter != tc.filter || env.Redirect != tc.redirect {
				t.Errorf("hold %v filter %q redirect %q, want %v %q %q", env.Hold, env.Filter, env.Redirect, tc.hold, tc.filter, tc.redirect)
			}
		})
	}
}

func TestHeaderRewriting(t *testing.T) {
	rw := testRewriter(t, func(rc *rewrite.Config) {
		rc.CanonicalMaps = maps.List{maps.StaticMap{"joe@example.com": "joe.public@example.com"}}
		rc.VirtualAliasMaps = maps.List{maps.StaticMap{"ann@example.com": "ann@elsewhere.example"}}
	})
	msg := "From: Joe <joe>\nTo: ann, bob@example.org\nReply-To: joe@example.com\nSubject: x\n\nbody\n"
	tests := []struct {
		name string
		cfg  Config
		in   Input
		want string
	}{
		{"local", Config{}, Input{Local: true},
			"From: Joe <joe.public@example.com>\r\nTo: ann@example.com, bob@example.org\r\nReply-To: joe.public@example.com\r\n"},
		{"local client", Config{LocalHeaderRewriteClients: &HeaderRewriteClients{PermitInetInterfaces: true}},
			Input{Client: ClientInfo{Addr: "127.0.0.1", ServerAddr: "127.0.0.1"}},
			"From: Joe <joe.public@example.com>\r\nTo: ann@example.com, bob@example.org\r\nReply-To: joe.public@example.com\r\n"},
		{"remote client", Config{LocalHeaderRewriteClients: &HeaderRewriteClients{PermitInetInterfaces: true}},
			Input{Client: ClientInfo{Addr: "192.0.2.1", ServerAddr: "127.0.0.1"}},
			"From: Joe <joe>\r\nTo: ann, bob@example.org\r\nReply-To: joe@example.com\r\n"},
		{"remote domain", Config{RemoteHeaderRewriteDomain: "domain.invalid"},
			Input{Client: ClientInfo{Addr: "192.0.2.1"}},
			"From: Joe <joe@domain.invalid>\r\nTo: ann@domain.invalid, bob@example.org\r\nReply-To: joe.public@example.com\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Rewriter = rw
			c, st, _ := newTest(t, cfg)
			in := tc.in
			in.Sender, in.Recipients = "joe@example.com", []Recipient{{Addr: "ann@example.com"}}
			env, data, _, err := submit(t, c, st, in, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(data, tc.want) {
				t.Errorf("headers:\n%s\nwant them to start with\n%s", data, tc.want)
			}
			if got := addrs(env.Recipients); got != "ann@elsewhere.example" {
				t.Errorf("recipients %s", got)
			}
		})
	}
}

func TestChecksVerdicts(t *testing.T) {
	ctx := context.Background()
	hc, err := maps.Open(ctx, "regexp:{{/^Subject: reject/ REJECT no thanks}, {/^Subject: discard/ DISCARD}, {/^Subject: hold/ HOLD held for review}, {/^Subject: redirect/ REDIRECT spam@example.com}, {/^Subject: bcc/ BCC watch@example.com}, {/^Subject: filter/ FILTER scan:host}, {/^X-Drop:/ IGNORE}}")
	if err != nil {
		t.Fatal(err)
	}
	checks := &contentcheck.Config{HeaderChecks: hc}
	tests := []struct {
		subject string
		wantErr string
		rcpts   string
		hold    bool
		filter  string
		gone    bool
	}{
		{subject: "reject me", wantErr: "550 5.7.1 no thanks"},
		{subject: "discard me", gone: true},
		{subject: "hold me", hold: true, rcpts: "r@example.org"},
		{subject: "redirect me", rcpts: "r@example.org"},
		{subject: "bcc me", rcpts: "r@example.org,watch@example.com"},
		{subject: "filter me", filter: "scan:host", rcpts: "r@example.org"},
	}
	for _, tc := range tests {
		t.Run(tc.subject, func(t *testing.T) {
			c, st, _ := newTest(t, Config{Checks: checks})
			env, data, _, err := submit(t, c, st, Input{Sender: "s@example.com", Recipients: []Recipient{{Addr: "r@example.org"}}},
				"X-Drop: yes\nSubject: "+tc.subject+"\n\nbody\n")
			ids, _ := st.List()
			if tc.wantErr != "" || tc.gone {
				var re *RejectError
				if tc.wantErr != "" && (!errors.As(err, &re) || re.Reply.String() != tc.wantErr) {
					t.Errorf("got %v, want %s", err, tc.wantErr)
				}
				if tc.gone && err != nil {
					t.Errorf("discard: %v", err)
				}
				if len(ids) != 0 {
					t.Errorf("queued: %v", ids)
				}
				if ents, _ := os.ReadDir(st.Dir); len(ents) != 0 {
					t.Errorf("files left behind: %v", ents)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := addrs(env.Recipients); got != tc.rcpts {
				t.Errorf("recipients %s, want %s", got, tc.rcpts)
			}
			if env.Hold != tc.hold || env.Filter != tc.filter {
				t.Errorf("hold %v filter %q", env.Hold, env.Filter)
			}
			if tc.hold && env.HoldReason == "" {
				t.Errorf("no hold reason")
			}
			if strings.Contains(data, "X-Drop") {
				t.Errorf("IGNOREd header kept")
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	c, st, _ := newTest(t, Config{MessageSizeLimit: 100})
	_, _, _, err := submit(t, c, st, Input{Sender: "s@x", Recipients: []Recipient{{Addr: "r@y"}}}, "Subject: big\n\n"+strings.Repeat("x", 200)+"\n")
	var re *RejectError
	if !errors.As(err, &re) || re.Reply.String() != "552 5.3.4 Error: message file too big" {
		t.Errorf("got %v", err)
	}
}

// TestConcurrent: one Cleanup serves many messages at once; every one is
// stored whole under its own queue ID.
func TestConcurrent(t *testing.T) {
	c, st, _ := newTest(t, Config{Rewriter: testRewriter(t, nil)})
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			ctx := context.Background()
			m, err := c.Open(ctx, &Input{Sender: "s", Recipients: []Recipient{{Addr: "r"}}, Local: true})
			if err != nil {
				errs <- err
				return
			}
			fmt.Fprintf(m, "Subject: %d\r\n\r\n%s\r\n", i, strings.Repeat("x", i*100))
			errs <- m.Commit(ctx)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ids, err := st.List()
	if err != nil || len(ids) != n {
		t.Fatalf("%d messages stored (%v), want %d", len(ids), err, n)
	}
	for _, id := range ids {
		env, data, err := st.Read(id)
		if err != nil {
			t.Fatal(err)
		}
		var i int
		if _, err := fmt.Sscanf(string(data), "Subject: %d", &i); err != nil || !strings.Contains(string(data), "\r\n\r\n"+strings.Repeat("x", i*100)+"\r\n") || env.Sender != "s@example.com" {
			t.Errorf("message %s damaged:\n%.200s", id, data)
		}
	}
}

// TestLookupErrors: a table that fails defers the message (451), nothing
// is queued, and the warning names the table.
func TestLookupErrors(t *testing.T) {
	broken := maps.FuncMap(func(ctx context.Context, key string) (string, bool, error) {
		return "", false, errors.New("server down")
	})
	tests := []struct {
		name string
		cfg  func() Config
		warn string
	}{
		{"virtual_alias_maps", func() Config {
			return Config{Rewriter: testRewriter(t, func(rc *rewrite.Config) { rc.VirtualAliasMaps = maps.List{broken} })}
		}, "virtual_alias_maps map lookup problem"},
		{"sender_canonical_maps", func() Config {
			return Config{Rewriter: testRewriter(t, func(rc *rewrite.Config) { rc.SenderCanonicalMaps = maps.List{broken} })}
		}, "rewriting sender"},
		{"recipient_bcc_maps", func() Config { return Config{RecipientBCCMaps: maps.List{broken}} }, "recipient_bcc_maps map lookup problem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, st, rec := newTest(t, tc.cfg())
			_, _, _, err := submit(t, c, st, Input{Sender: "s@example.com", Recipients: []Recipient{{Addr: "r@example.com"}}}, "Subject: x\n\nbody\n")
			var re *RejectError
			if !errors.As(err, &re) || re.Reply.String() != "451 4.3.0 Error: queue file write error" {
				t.Fatalf("got %v", err)
			}
			if ents, _ := os.ReadDir(st.Dir); len(ents) != 0 {
				t.Errorf("files left behind: %v", ents)
			}
			found := false
			for _, l := range rec.all() {
				if strings.HasPrefix(l, "warning: ") && strings.Contains(l, tc.warn) {
					found = true
				}
			}
			if !found {
				t.Errorf("no warning about %s in %q", tc.warn, rec.all())
			}
		})
	}
}
