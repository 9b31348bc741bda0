package milter_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/postkit-mail/postkit/milter"
	"github.com/postkit-mail/postkit/restrictions"
)

var testMsg = lines(
	"Received: from client.example (client.example [192.0.2.1])",
	"\tby mx.postkit.test with ESMTP id 4QID",
	"Subject: hello",
	"X-Dup: one",
	"X-Dup: two",
	"From: Alice <a@example.com>",
	"To: b@example.org",
	"",
	"body line",
)

var testEnv = milter.Envelope{
	ClientName: "client.example",
	ClientAddr: "192.0.2.1",
	ClientPort: 4242,
	Helo:       "client.example",
	Sender:     "a@example.com",
	Recipients: []string{"b@example.org", "c d@example.org"},
	QueueID:    "4QID",
	Macros:     map[string]string{"{auth_authen}": "alice", "{daemon_addr}": "127.0.0.1"},
	SenderArgs: []string{"SIZE=1234", "BODY=8BITMIME"},
	RecipientArgs: [][]string{
		{"NOTIFY=SUCCESS,FAILURE"},
	},
}

func testConfig(addrs ...string) *milter.Config {
	c := &milter.Config{
		CommandTimeout: 5 * time.Second,
		ContentTimeout: 5 * time.Second,
		Values:         map[string]string{"j": "mx.postkit.test", "v": "postkit 1", "{daemon_name}": "postkit"},
		Logger:         slog.New(slog.DiscardHandler),
	}
	for _, a := range addrs {
		s, err := milter.ParseSpec(a)
		if err != nil {
			panic(err)
		}
		c.Milters = append(c.Milters, s)
	}
	return c
}

func run(t *testing.T, c *milter.Config, env milter.Envelope, msg string) (*milter.Result, string) {
	t.Helper()
	res, err := c.Run(context.Background(), env, strings.NewReader(msg))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var out bytes.Buffer
	if err := res.Apply(strings.NewReader(msg), &out); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res, out.String()
}

// TestAllActions has one milter send every modification action and checks
// the rewritten message, the envelope and what the milter was told.
func TestAllActions(t *testing.T) {
	sn := &seen{}
	addr := startMilter(t, func() *script {
		return &script{seen: sn, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			steps := []error{
				m.AddHeader("X-Added", "yes"),
				m.InsertHeader(0, "X-First", "top"),
				m.ChangeHeader(1, "Subject", "changed"),
				m.ChangeHeader(2, "X-Dup", ""),
				m.ChangeHeader(1, "X-Missing", "new"),
				m.InsertHeader(99, "X-Last", "bottom"),
				m.AddHeader("X-Folded", "one\n\ttwo"),
				m.AddRecipient("new@example.net", "NOTIFY=NEVER"),
				m.DeleteRecipient("<b@example.org>"),
				m.ChangeFrom("bounce@example.com", "SIZE=100"),
				m.ReplaceBody(strings.NewReader("new body\nsecond line")),
				m.Quarantine("check me"),
				m.Progress(),
			}
			for _, err := range steps {
				if err != nil {
					return nil, err
				}
			}
			return gomilter.RespAccept, nil
		}}
	})
	res, out := run(t, testConfig(addr), testEnv, testMsg)

	want := lines(
		"X-First: top",
		"Received: from client.example (client.example [192.0.2.1])",
		"\tby mx.postkit.test with ESMTP id 4QID",
		"Subject: changed",
		"X-Dup: one",
		"From: Alice <a@example.com>",
		"To: b@example.org",
		"X-Added: yes",
		"X-Missing: new",
		"X-Last: bottom",
		"X-Folded: one",
		"\ttwo",
		"",
		"new body",
		"second line",
	)
	if out != want {
		t.Errorf("Apply:\n got %q\nwant %q", out, want)
	}
	if res.Reject != nil || res.Discard {
		t.Errorf("verdict: reject %v discard %v", res.Reject, res.Discard)
	}
	if !res.Hold || res.HoldReason != "check me" {
		t.Errorf("hold = %v %q, want quarantine 'check me'", res.Hold, res.HoldReason)
	}
	sender, rcpts := res.Envelope(testEnv.Sender, testEnv.Recipients)
	if sender != "bounce@example.com" || !reflect.DeepEqual(rcpts, []string{"c d@example.org", "new@example.net"}) {
		t.Errorf("Envelope = %q %q", sender, rcpts)
	}
	var kinds []string
	for _, m := range res.Mods {
		kinds = append(kinds, m.Kind.String())
		if m.Milter != addr {
			t.Errorf("mod %v from %q, want %q", m.Kind, m.Milter, addr)
		}
		switch m.Kind {
		case milter.AddRecipient:
			if !reflect.DeepEqual(m.Args, []string{"NOTIFY=NEVER"}) {
				t.Errorf("add recipient args %q", m.Args)
			}
		case milter.ChangeSender:
			if !reflect.DeepEqual(m.Args, []string{"SIZE=100"}) {
				t.Errorf("change sender args %q", m.Args)
			}
		}
	}
	wantKinds := []string{"add header", "insert header", "change header", "delete header", "change header",
		"insert header", "add header", "add recipient", "delete recipient", "change sender", "replace body"}
	if !reflect.DeepEqual(kinds, wantKinds) {
		t.Errorf("mods %q\nwant %q", kinds, wantKinds)
	}
	if !res.Changed() {
		t.Error("Changed() = false")
	}

	// What the milter was sent.
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.host != "client.example" || sn.family != "tcp4" || sn.port != 4242 || sn.addr != "192.0.2.1" {
		t.Errorf("connect: %q %q %d %q", sn.host, sn.family, sn.port, sn.addr)
	}
	if sn.helo != "client.example" || sn.from != "a@example.com" || sn.fromArgs != "SIZE=1234 BODY=8BITMIME" {
		t.Errorf("helo %q from %q args %q", sn.helo, sn.from, sn.fromArgs)
	}
	if !reflect.DeepEqual(sn.rcpts, []string{"b@example.org", `"c d"@example.org`}) ||
		!reflect.DeepEqual(sn.rcptArgs, []string{"NOTIFY=SUCCESS,FAILURE", ""}) {
		t.Errorf("rcpts %q args %q", sn.rcpts, sn.rcptArgs)
	}
	wantHeaders := []string{
		"Received: from client.example (client.example [192.0.2.1])\n\tby mx.postkit.test with ESMTP id 4QID",
		"Subject: hello", "X-Dup: one", "X-Dup: two", "From: Alice <a@example.com>", "To: b@example.org",
	}
	if !reflect.DeepEqual(sn.headers, wantHeaders) {
		t.Errorf("headers %q\nwant %q", sn.headers, wantHeaders)
	}
	if string(sn.body) != "body line\r\n" {
		t.Errorf("body %q", sn.body)
	}
	wantMacros := map[string]string{
		"connect j": "mx.postkit.test", "connect {daemon_name}": "postkit", "connect v": "postkit 1",
		"connect _": "client.example [192.0.2.1]", "connect {daemon_addr}": "127.0.0.1",
		"mail {mail_addr}": "a@example.com", "mail {mail_host}": "example.com",
		"mail {auth_authen}": "alice", "rcpt {rcpt_addr}": `"c d"@example.org`, "rcpt {rcpt_host}": "example.org",
		"data i": "4QID", "eoh i": "4QID", "eom i": "4QID",
	}
	for k, v := range wantMacros {
		if got := sn.macros[k]; got != v {
			t.Errorf("macro %s = %q, want %q", k, got, v)
		}
	}
	// Macros not in Postfix's default lists are not sent.
	// "i" comes from DATA on, as in Postfix (the queue ID is not known
	// before).
	for _, k := range []string{"connect {client_addr}", "connect i", "connect {mail_addr}", "mail i", "rcpt i"} {
		if v, ok := sn.macros[k]; ok {
			t.Errorf("macro %s sent (%q), not in the default lists", k, v)
		}
	}
	wantStages := []string{"connect", "helo", "mail", "rcpt", "rcpt", "data", "eoh", "eom"}
	if !reflect.DeepEqual(sn.stages, wantStages) {
		t.Errorf("stages %q, want %q", sn.stages, wantStages)
	}
}

// TestReplies checks every reply at every stage.
func TestReplies(t *testing.T) {
	multi := mustResp(gomilter.RejectWithCodeAndReason(554, "5.7.0 first line\nsecond line"))
	custom4 := mustResp(gomilter.RejectWithCodeAndReason(452, "4.3.1 try later"))
	noDSN := mustResp(gomilter.RejectWithCodeAndReason(550, "go away"))
	tests := []struct {
		stage   string
		resp    *gomilter.Response
		reject  *restrictions.Reply
		discard bool
	}{
		{"CONNECT", gomilter.RespReject, &restrictions.Reply{Code: 550, DSN: "5.7.1", Text: "Command rejected"}, false},
		{"CONNECT", gomilter.RespTempFail, &restrictions.Reply{Code: 451, DSN: "4.7.1", Text: "Service unavailable - try again later"}, false},
		{"EHLO", multi, &restrictions.Reply{Code: 554, DSN: "5.7.0", Text: "first line\nsecond line"}, false},
		{"MAIL", custom4, &restrictions.Reply{Code: 452, DSN: "4.3.1", Text: "try later"}, false},
		{"MAIL", gomilter.RespDiscard, nil, true},
		{"DATA", noDSN, &restrictions.Reply{Code: 550, Text: "go away"}, false},
		{"DATA", gomilter.RespDiscard, nil, true},
		{"HEADER", gomilter.RespReject, &restrictions.Reply{Code: 550, DSN: "5.7.1", Text: "Command rejected"}, false},
		{"END-OF-HEADERS", gomilter.RespTempFail, &restrictions.Reply{Code: 451, DSN: "4.7.1", Text: "Service unavailable - try again later"}, false},
		{"BODY", multi, &restrictions.Reply{Code: 554, DSN: "5.7.0", Text: "first line\nsecond line"}, false},
		{"BODY", gomilter.RespDiscard, nil, true},
		{"END-OF-MESSAGE", gomilter.RespReject, &restrictions.Reply{Code: 550, DSN: "5.7.1", Text: "Command rejected"}, false},
		{"END-OF-MESSAGE", gomilter.RespDiscard, nil, true},
		{"END-OF-MESSAGE", custom4, &restrictions.Reply{Code: 452, DSN: "4.3.1", Text: "try later"}, false},
		{"END-OF-MESSAGE", gomilter.RespContinue, nil, false},
		{"HEADER", gomilter.RespAccept, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.stage+"/"+tc.resp.String(), func(t *testing.T) {
			sn := &seen{}
			addr := startMilter(t, func() *script {
				s := &script{seen: sn}
				switch tc.stage {
				case "CONNECT":
					s.connect = tc.resp
				case "EHLO":
					s.helo = tc.resp
				case "MAIL":
					s.mail = tc.resp
				case "DATA":
					s.data = tc.resp
				case "HEADER":
					s.header = func(string, string) *gomilter.Response { return tc.resp }
				case "END-OF-HEADERS":
					s.eoh = tc.resp
				case "BODY":
					s.body = tc.resp
				case "END-OF-MESSAGE":
					s.eom = func(m gomilter.Modifier) (*gomilter.Response, error) {
						// Changes sent with a reject are dropped.
						m.AddHeader("X-Ignored", "1")
						return tc.resp, nil
					}
				}
				return s
			})
			// A second milter after the deciding one sees nothing of the
			// message once it is rejected or discarded.
			sn2 := &seen{}
			addr2 := startMilter(t, func() *script { return &script{seen: sn2} })
			res, out := run(t, testConfig(addr, addr2), testEnv, testMsg)
			if !reflect.DeepEqual(res.Reject, tc.reject) || res.Discard != tc.discard {
				t.Fatalf("reject %v discard %v, want %v %v", res.Reject, res.Discard, tc.reject, tc.discard)
			}
			if (tc.reject != nil || tc.discard) && res.Stage != tc.stage {
				t.Errorf("stage %q, want %q", res.Stage, tc.stage)
			}
			if tc.reject != nil || tc.discard {
				if res.Milter != addr {
					t.Errorf("milter %q, want %q", res.Milter, addr)
				}
				sn2.mu.Lock()
				if len(sn2.body) > 0 {
					t.Errorf("second milter got the body after the verdict")
				}
				sn2.mu.Unlock()
			}
			if tc.resp == gomilter.RespContinue && !strings.Contains(out, "X-Ignored: 1\r\n") {
				t.Errorf("changes with continue at end of message were dropped: %q", out)
			}
			if tc.resp != gomilter.RespContinue && strings.Contains(out, "X-Ignored") {
				t.Errorf("changes with %v kept: %q", tc.resp, out)
			}
		})
	}
}

// TestRecipientReplies: a rejected recipient is dropped and not shown to
// later milters; all recipients rejected rejects the message.
func TestRecipientReplies(t *testing.T) {
	addr := startMilter(t, func() *script {
		return &script{seen: &seen{}, rcpt: func(r string) *gomilter.Response {
			if strings.HasPrefix(r, "b@") {
				return mustResp(gomilter.RejectWithCodeAndReason(550, "5.1.1 no such user"))
			}
			if strings.HasPrefix(r, "t@") {
				return gomilter.RespTempFail
			}
			return nil
		}}
	})
	sn2 := &seen{}
	addr2 := startMilter(t, func() *script { return &script{seen: sn2} })
	c := testConfig(addr, addr2)

	res, _ := run(t, c, testEnv, testMsg)
	if res.Reject != nil {
		t.Fatalf("message rejected: %v", res.Reject)
	}
	want := []milter.RecipientReject{{Addr: "b@example.org", Reply: restrictions.Reply{Code: 550, DSN: "5.1.1", Text: "no such user"}, Milter: addr}}
	if !reflect.DeepEqual(res.RejectedRecipients, want) {
		t.Errorf("rejected %+v", res.RejectedRecipients)
	}
	if _, rcpts := res.Envelope(testEnv.Sender, testEnv.Recipients); !reflect.DeepEqual(rcpts, []string{"c d@example.org"}) {
		t.Errorf("recipients %q", rcpts)
	}
	sn2.mu.Lock()
	if !reflect.DeepEqual(sn2.rcpts, []string{`"c d"@example.org`}) {
		t.Errorf("second milter saw %q", sn2.rcpts)
	}
	sn2.mu.Unlock()

	env := testEnv
	env.Recipients = []string{"b@example.org", "t@example.org"}
	res, _ = run(t, c, env, testMsg)
	if res.Reject == nil || res.Reject.Code != 451 || res.Stage != "RCPT" {
		t.Errorf("all recipients rejected: reject %v stage %q", res.Reject, res.Stage)
	}
}

// TestChain: each milter sees the message as the one before left it, and
// its header indexes count in that message.
func TestChain(t *testing.T) {
	first := startMilter(t, func() *script {
		return &script{seen: &seen{}, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			m.ChangeHeader(1, "Subject", "[first] hello")
			m.InsertHeader(0, "X-Dup", "zero")
			m.ReplaceBody(strings.NewReader("first body\r\n"))
			return gomilter.RespContinue, nil
		}}
	})
	sn := &seen{}
	second := startMilter(t, func() *script {
		return &script{seen: sn, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			m.ChangeHeader(2, "X-Dup", "was one")
			m.AddHeader("X-Second", "1")
			return gomilter.RespAccept, nil
		}}
	})
	// The third milter is down; default_action=accept lets mail through.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "{ inet:" + ln.Addr().String() + ", default_action = accept, connect_timeout = 2s }"
	ln.Close()
	specs, err := milter.ParseList(first + ", " + down + " " + second)
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	c.Milters = specs
	res, out := run(t, c, testEnv, testMsg)
	if res.Reject != nil || res.Hold {
		t.Fatalf("reject %v hold %v", res.Reject, res.Hold)
	}
	sn.mu.Lock()
	wantSeen := []string{"X-Dup: zero", "Received: from client.example (client.example [192.0.2.1])\n\tby mx.postkit.test with ESMTP id 4QID",
		"Subject: [first] hello", "X-Dup: one", "X-Dup: two", "From: Alice <a@example.com>", "To: b@example.org"}
	if !reflect.DeepEqual(sn.headers, wantSeen) || string(sn.body) != "first body\r\n" {
		t.Errorf("second milter saw %q %q", sn.headers, sn.body)
	}
	sn.mu.Unlock()
	want := lines("X-Dup: zero",
		"Received: from client.example (client.example [192.0.2.1])",
		"\tby mx.postkit.test with ESMTP id 4QID",
		"Subject: [first] hello", "X-Dup: was one", "X-Dup: two", "From: Alice <a@example.com>", "To: b@example.org",
		"X-Second: 1", "", "first body")
	if out != want {
		t.Errorf("Apply:\n got %q\nwant %q", out, want)
	}
}

// TestDefaultAction: a milter that is down, or too slow, gets its
// default_action.
func TestDefaultAction(t *testing.T) {
	t.Parallel()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "inet:" + ln.Addr().String()
	ln.Close()
	slow := startMilter(t, func() *script {
		return &script{seen: &seen{}, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			time.Sleep(1500 * time.Millisecond)
			return gomilter.RespAccept, nil
		}}
	})
	progress := startMilter(t, func() *script {
		return &script{seen: &seen{}, delay: 1500 * time.Millisecond}
	})
	tests := []struct {
		milter, action string
		reject         int
		hold           bool
	}{
		{down, "", 451, false},
		{down, "tempfail", 451, false},
		{down, "reject", 550, false},
		{down, "accept", 0, false},
		{down, "quarantine", 0, true},
		{slow, "reject", 550, false}, // content timeout: 550 5.5.0
		{slow, "tempfail", 451, false},
		{slow, "quarantine", 0, true},
		{progress, "reject", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.milter+"/"+tc.action, func(t *testing.T) {
			c := testConfig(tc.milter)
			c.DefaultAction = tc.action
			c.ConnectTimeout = time.Second
			c.ContentTimeout = 500 * time.Millisecond
			res, out := run(t, c, testEnv, testMsg)
			code := 0
			if res.Reject != nil {
				code = res.Reject.Code
			}
			if code != tc.reject || res.Hold != tc.hold {
				t.Errorf("reject %v hold %v, want %d %v", res.Reject, res.Hold, tc.reject, tc.hold)
			}
			if out != testMsg {
				t.Errorf("message changed: %q", out)
			}
		})
	}
}

// TestCancel: Run returns when its context ends, even while a milter
// thinks.
func TestCancel(t *testing.T) {
	slow := startMilter(t, func() *script {
		return &script{seen: &seen{}, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			time.Sleep(3 * time.Second)
			return gomilter.RespAccept, nil
		}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := testConfig(slow).Run(ctx, testEnv, strings.NewReader(testMsg))
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("Run = %v after %v, want a context error soon", err, time.Since(start))
	}
}

// TestLocalSubmission: no client address (sendmail, pickup) is sent as
// family unknown with client name localhost, and an old protocol version
// still works.
func TestLocalSubmission(t *testing.T) {
	sn := &seen{}
	addr := startMilter(t, func() *script { return &script{seen: sn} }, gomilter.WithActions(gomilter.OptAddHeader))
	c := testConfig(addr)
	c.Protocol = 2
	c.Logger = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	env := milter.Envelope{Sender: "", Recipients: []string{"root@localhost"}, QueueID: "QQ"}
	res, out := run(t, c, env, testMsg)
	if res.Reject != nil || out != testMsg {
		t.Fatalf("reject %v out %q", res.Reject, out)
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.host != "localhost" || sn.family != "unknown" || sn.from != "" {
		t.Errorf("connect %q %q from %q", sn.host, sn.family, sn.from)
	}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
