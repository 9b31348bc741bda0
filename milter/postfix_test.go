package milter_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/milter"
	"github.com/postkit-mail/postkit/restrictions"
)

// diffCases are header and body modifications whose result is compared
// with what Postfix's cleanup makes of the same milter replies.
var diffCases = [][]func(m gomilter.Modifier) error{
	0: {func(m gomilter.Modifier) error { return m.InsertHeader(0, "X-Ins0", "zero") }},
	1: {func(m gomilter.Modifier) error { return m.InsertHeader(1, "X-Ins1", "one") }},
	2: {func(m gomilter.Modifier) error { return m.InsertHeader(3, "X-Ins3", "three") }},
	3: {func(m gomilter.Modifier) error { return m.InsertHeader(99, "X-Ins99", "end") }},
	4: {func(m gomilter.Modifier) error { return m.ChangeHeader(1, "X-Dup", "changed first") }},
	5: {func(m gomilter.Modifier) error { return m.ChangeHeader(2, "x-dup", "changed second, lower-case name") }},
	6: {func(m gomilter.Modifier) error { return m.ChangeHeader(5, "X-Dup", "no fifth") }},
	7: {func(m gomilter.Modifier) error { return m.ChangeHeader(2, "X-Dup", "") }},
	8: {func(m gomilter.Modifier) error { return m.ChangeHeader(7, "X-Dup", "") }},
	9: {func(m gomilter.Modifier) error { return m.AddHeader("X-Multi", "first\n\tsecond\n third") }},
	10: {
		func(m gomilter.Modifier) error { return m.ChangeHeader(1, "X-Dup", "") },
		func(m gomilter.Modifier) error { return m.ChangeHeader(1, "X-Dup", "after delete") },
		func(m gomilter.Modifier) error { return m.InsertHeader(2, "X-Mid", "mid") },
		func(m gomilter.Modifier) error { return m.AddHeader("X-End", "end") },
	},
	11: {func(m gomilter.Modifier) error {
		return m.ReplaceBody(strings.NewReader("replaced\r\nbody\r\n\r\n.leading dot\r\nno final newline"))
	}},
	12: {func(m gomilter.Modifier) error { return m.ChangeHeader(1, "Subject", "new subject") }},
	13: {func(m gomilter.Modifier) error { return m.ChangeHeader(1, "X-Folded", "now\n\tfolded too") }},
	14: {func(m gomilter.Modifier) error { return m.AddHeader("X-Lead", "  two leading spaces") }},
	15: {func(m gomilter.Modifier) error { return m.AddHeader("X-Empty", "") }},
	16: {
		func(m gomilter.Modifier) error { return m.InsertHeader(0, "X-A", "a") },
		func(m gomilter.Modifier) error { return m.InsertHeader(0, "X-B", "b") },
		func(m gomilter.Modifier) error { return m.InsertHeader(2, "X-C", "c") },
	},
	17: {func(m gomilter.Modifier) error { return m.ChangeHeader(0, "X-Dup", "index zero") }},
	18: {func(m gomilter.Modifier) error { return m.ReplaceBody(strings.NewReader("")) }},
	19: {func(m gomilter.Modifier) error { return m.ReplaceBody(strings.NewReader("bare\nLF\nlines\n")) }},
	20: {
		func(m gomilter.Modifier) error { return m.AddRecipient("carol@example.org", "") },
		func(m gomilter.Modifier) error { return m.DeleteRecipient("<BOB@example.org>") },
		func(m gomilter.Modifier) error { return m.ChangeFrom("bounce@example.com", "") },
		func(m gomilter.Modifier) error { return m.AddRecipient("<dave@example.org>", "") },
		func(m gomilter.Modifier) error { return m.AddRecipient("carol@example.org", "") },
	},
	21: {func(m gomilter.Modifier) error { return m.ChangeFrom("<>", "") }},
	22: {
		func(m gomilter.Modifier) error { return m.DeleteRecipient("<bob@example.org>") },
		func(m gomilter.Modifier) error { return m.AddRecipient("x y@example.org", "") },
	},
	23: {func(m gomilter.Modifier) error { return m.AddRecipient("bob@example.org", "") }},
	24: {
		func(m gomilter.Modifier) error { return m.AddRecipient("erin@example.org", "") },
		func(m gomilter.Modifier) error { return m.DeleteRecipient("erin@example.org") },
	},
}

// TestPostfixDifferential sends messages through a private Postfix with a
// milter that modifies them and quarantines them (so they stay in the hold
// queue), then runs postkit's client against the same milter with the
// message as Postfix showed it to the milter, and compares postkit's
// Apply output with the queue file (postcat).
func TestPostfixDifferential(t *testing.T) {
	t.Parallel()
	postcat := oracle.Require(t, "postcat")
	var mu sync.Mutex
	seenBy := map[string][]*seen{} // X-Case -> what the milter saw: from Postfix, then from postkit
	addr := startMilter(t, func() *script {
		sn := &seen{}
		return &script{seen: sn, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			sn.mu.Lock()
			var c int = -1
			for _, h := range sn.headers {
				fmt.Sscanf(h, "X-Case: %d", &c)
			}
			sn.mu.Unlock()
			if c < 0 || c >= len(diffCases) {
				return gomilter.RespAccept, nil
			}
			mu.Lock()
			seenBy[fmt.Sprint(c)] = append(seenBy[fmt.Sprint(c)], sn)
			mu.Unlock()
			for _, f := range diffCases[c] {
				if err := f(m); err != nil {
					return nil, err
				}
			}
			m.Quarantine("differential test")
			return gomilter.RespAccept, nil
		}}
	})
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: "smtpd_milters = " + addr + "\nmilter_default_action = tempfail\n"})

	for c := range diffCases {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			msg := lines(
				"From: Alice <alice@example.com>",
				"To: bob@example.org",
				"Subject: differential",
				"X-Dup: one",
				"X-Folded: folded",
				"  header",
				"X-Dup: two",
				fmt.Sprintf("X-Case: %d", c),
				"",
				"body line one",
				"",
				"body line three",
			)
			s := pf.Session(t)
			for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<alice@example.com>", "RCPT TO:<bob@example.org>", "DATA"} {
				if r := s.Cmd(cmd); r.Code >= 400 {
					t.Fatalf("%s: %v", cmd, r)
				}
			}
			r := s.Message(strings.ReplaceAll(msg, "\r\n", "\n"))
			s.Close()
			m := regexp.MustCompile(`queued as ([0-9A-Za-z]+)`).FindStringSubmatch(fmt.Sprint(r))
			if r.Code != 250 || m == nil {
				t.Fatalf("end of data: %v", r)
			}
			out, err := exec.Command(postcat, "-c", pf.ConfigDir, "-bh", "-q", m[1]).CombinedOutput()
			if err != nil {
				t.Fatalf("postcat: %v\n%s", err, out)
			}
			want := strings.ReplaceAll(string(out), "\n", "\r\n")

			// The same milter replies through postkit, on the message as
			// Postfix presented it.
			mu.Lock()
			views := seenBy[fmt.Sprint(c)]
			mu.Unlock()
			if len(views) != 1 {
				t.Fatalf("the milter saw the message %d times", len(views))
			}
			sn := views[0]
			sn.mu.Lock()
			var in strings.Builder
			// Postfix's own Received: header, which the milter does not see.
			rcvd := regexp.MustCompile(`(?m)^Received: .*\r\n(?:[ \t].*\r\n)*`).FindString(want)
			if rcvd == "" {
				t.Fatalf("no Received: header from Postfix:\n%s", want)
			}
			in.WriteString(rcvd)
			for _, h := range sn.headers {
				in.WriteString(strings.ReplaceAll(h, "\n", "\r\n") + "\r\n")
			}
			in.WriteString("\r\n")
			in.Write(sn.body)
			sn.mu.Unlock()
			// Macro values as this Postfix has them.
			cfg := testConfig(addr)
			cfg.Values = map[string]string{"j": "mx.oracle.test", "{daemon_name}": "mx.oracle.test", "v": "Postfix 3.7.11"}
			res, got := run(t, cfg, milter.Envelope{ClientAddr: "127.0.0.1", ClientName: "unknown", Helo: "client.example",
				Sender: "alice@example.com", Recipients: []string{"bob@example.org"}, QueueID: m[1], SkipFirstHeader: true,
				Macros: map[string]string{"{daemon_addr}": "127.0.0.1", "{mail_mailer}": "discard", "{rcpt_mailer}": "discard"}},
				in.String())
			mu.Lock()
			views = seenBy[fmt.Sprint(c)]
			mu.Unlock()
			if len(views) == 2 {
				pv, ov := views[0], views[1]
				pv.mu.Lock()
				ov.mu.Lock()
				if !reflect.DeepEqual(pv.macros, ov.macros) {
					t.Errorf("macros differ:\nPostfix %q\npostkit %q", pv.macros, ov.macros)
				}
				if !reflect.DeepEqual(pv.stages, ov.stages) || pv.helo != ov.helo || pv.from != ov.from ||
					!reflect.DeepEqual(pv.rcpts, ov.rcpts) || pv.addr != ov.addr || pv.family != ov.family || pv.host != ov.host {
					t.Errorf("events differ:\nPostfix %q %q %q %q %q %q %q\npostkit %q %q %q %q %q %q %q", pv.stages, pv.helo, pv.from, pv.rcpts, pv.addr, pv.family, pv.host,
						ov.stages, ov.helo, ov.from, ov.rcpts, ov.addr, ov.family, ov.host)
				}
				ov.mu.Unlock()
				pv.mu.Unlock()
			} else {
				t.Errorf("postkit's run reached the milter %d times", len(views)-1)
			}
			if !res.Hold {
				t.Errorf("no quarantine")
			}
			if got != want {
				t.Errorf("postkit and Postfix differ\n%s", oracle.Diff(want, got))
			}

			// The envelope: Postfix's queue file records against
			// Result.Envelope.
			env, err := exec.Command(postcat, "-c", pf.ConfigDir, "-e", "-q", m[1]).CombinedOutput()
			if err != nil {
				t.Fatalf("postcat -e: %v\n%s", err, env)
			}
			var pfSender string
			var pfRcpts []string
			for _, line := range strings.Split(string(env), "\n") {
				if v, ok := strings.CutPrefix(line, "sender: "); ok {
					pfSender = v
				}
				if v, ok := strings.CutPrefix(line, "recipient: "); ok {
					pfRcpts = append(pfRcpts, v)
				}
			}
			sender, rcpts := res.Envelope("alice@example.com", []string{"bob@example.org"})
			if sender != pfSender || strings.Join(rcpts, " ") != strings.Join(pfRcpts, " ") {
				t.Errorf("envelope: postkit %q %q, Postfix %q %q\n%s", sender, rcpts, pfSender, pfRcpts, env)
			}
		})
	}
	_ = context.Background
}

// TestPostfixDifferentialChain: two milters in a row through Postfix and
// through postkit; the second sees the first one's changes (and not
// Postfix's own Received: header, even when the first inserted above it),
// and the resulting queue file matches Apply.
func TestPostfixDifferentialChain(t *testing.T) {
	t.Parallel()
	postcat := oracle.Require(t, "postcat")
	first := startMilter(t, func() *script {
		return &script{seen: &seen{}, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			m.InsertHeader(0, "X-M1", "one")
			m.ChangeHeader(1, "Subject", "m1 subject")
			m.ReplaceBody(strings.NewReader("m1 body\r\n"))
			return gomilter.RespContinue, nil
		}}
	})
	var mu sync.Mutex
	var views []*seen
	second := startMilter(t, func() *script {
		sn := &seen{}
		mu.Lock()
		views = append(views, sn)
		mu.Unlock()
		return &script{seen: sn, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			m.InsertHeader(2, "X-M2", "two")
			m.ChangeHeader(1, "X-M1", "m2 changed")
			m.Quarantine("chain")
			return gomilter.RespAccept, nil
		}}
	})
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: "smtpd_milters = " + first + ", " + second + "\n"})
	msg := lines("From: a@example.com", "To: b@example.org", "Subject: chain", "", "body")
	s := pf.Session(t)
	for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.org>", "DATA"} {
		if r := s.Cmd(cmd); r.Code >= 400 {
			t.Fatalf("%s: %v", cmd, r)
		}
	}
	r := s.Message(strings.ReplaceAll(msg, "\r\n", "\n"))
	s.Close()
	m := regexp.MustCompile(`queued as ([0-9A-Za-z]+)`).FindStringSubmatch(fmt.Sprint(r))
	if r.Code != 250 || m == nil {
		t.Fatalf("end of data: %v", r)
	}
	out, err := exec.Command(postcat, "-c", pf.ConfigDir, "-bh", "-q", m[1]).CombinedOutput()
	if err != nil {
		t.Fatalf("postcat: %v\n%s", err, out)
	}
	want := strings.ReplaceAll(string(out), "\n", "\r\n")
	mu.Lock()
	pfView := views[len(views)-1]
	mu.Unlock()

	// The message as Postfix had it before the milters: its Received:
	// header, the client's headers, the headers cleanup added (the second
	// milter saw them; they follow the client's).
	rcvd := regexp.MustCompile(`(?m)^Received: .*\r\n(?:[ \t].*\r\n)*`).FindString(want)
	pfView.mu.Lock()
	pfHeaders := append([]string(nil), pfView.headers...)
	pfView.mu.Unlock()
	var in strings.Builder
	in.WriteString(rcvd)
	for _, h := range pfHeaders[1:] { // without X-M1
		if strings.HasPrefix(h, "Subject:") {
			h = "Subject: chain"
		}
		in.WriteString(strings.ReplaceAll(h, "\n", "\r\n") + "\r\n")
	}
	in.WriteString("\r\nbody\r\n")

	res, got := run(t, testConfig(first, second), milter.Envelope{ClientAddr: "127.0.0.1", Helo: "client.example",
		Sender: "a@example.com", Recipients: []string{"b@example.org"}, QueueID: "Q", SkipFirstHeader: true}, in.String())
	if !res.Hold {
		t.Error("no quarantine")
	}
	if got != want {
		t.Errorf("postkit and Postfix differ\n%s", oracle.Diff(want, got))
	}
	mu.Lock()
	ourView := views[len(views)-1]
	mu.Unlock()
	ourView.mu.Lock()
	defer ourView.mu.Unlock()
	if strings.Join(ourView.headers, "|") != strings.Join(pfHeaders, "|") || string(ourView.body) != "m1 body\r\n" {
		t.Errorf("second milter saw\npostkit %q\nPostfix %q", ourView.headers, pfHeaders)
	}
}

// TestPostfixDifferentialLocal: mail submitted with Postfix's sendmail goes
// through non_smtpd_milters; postkit with Envelope.Local shows the milter
// the same events and macros and applies its changes the same way.
func TestPostfixDifferentialLocal(t *testing.T) {
	t.Parallel()
	postcat := oracle.Require(t, "postcat")
	sendmail := oracle.Require(t, "sendmail")
	var mu sync.Mutex
	var views []*seen
	addr := startMilter(t, func() *script {
		sn := &seen{}
		mu.Lock()
		views = append(views, sn)
		mu.Unlock()
		return &script{seen: sn, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			m.InsertHeader(1, "X-Local", "one")
			m.ChangeHeader(1, "Subject", "changed")
			m.Quarantine("local")
			return gomilter.RespAccept, nil
		}}
	})
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: "non_smtpd_milters = " + addr + "\n"})
	pf.EnablePickup(t)
	before := countQueued(t, pf)
	cmd := exec.Command(sendmail, "-C", pf.ConfigDir, "-f", "alice@example.com", "bob@example.org")
	cmd.Stdin = strings.NewReader("Subject: local\nTo: bob@example.org\n\nbody\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	// Wait for pickup and cleanup to put the message on hold.
	var id string
	for deadline := time.Now().Add(15 * time.Second); id == ""; {
		if ids := heldIDs(t, pf); len(ids) > before {
			id = ids[len(ids)-1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no held message\n%s", pf.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := exec.Command(postcat, "-c", pf.ConfigDir, "-bh", "-q", id).CombinedOutput()
	if err != nil {
		t.Fatalf("postcat: %v\n%s", err, out)
	}
	want := strings.ReplaceAll(string(out), "\n", "\r\n")
	mu.Lock()
	pv := views[len(views)-1]
	mu.Unlock()

	rcvd := regexp.MustCompile(`(?m)^Received: .*\r\n(?:[ \t].*\r\n)*`).FindString(want)
	pv.mu.Lock()
	var in strings.Builder
	in.WriteString(rcvd)
	for _, h := range pv.headers {
		in.WriteString(strings.ReplaceAll(h, "\n", "\r\n") + "\r\n")
	}
	in.WriteString("\r\n")
	in.Write(pv.body)
	pv.mu.Unlock()

	cfg := testConfig(addr)
	cfg.Values = map[string]string{"j": "mx.oracle.test", "{daemon_name}": "mx.oracle.test", "v": "Postfix 3.7.11"}
	res, got := run(t, cfg, milter.Envelope{Local: true, Sender: "alice@example.com", Recipients: []string{"bob@example.org"},
		QueueID: id, SkipFirstHeader: true}, in.String())
	if !res.Hold {
		t.Error("no quarantine")
	}
	if got != want {
		t.Errorf("postkit and Postfix differ\n%s", oracle.Diff(want, got))
	}
	mu.Lock()
	ov := views[len(views)-1]
	mu.Unlock()
	pv.mu.Lock()
	defer pv.mu.Unlock()
	ov.mu.Lock()
	defer ov.mu.Unlock()
	if !reflect.DeepEqual(pv.macros, ov.macros) {
		t.Errorf("macros differ:\nPostfix %q\npostkit %q", pv.macros, ov.macros)
	}
	pe := []any{pv.stages, pv.host, pv.family, pv.port, pv.addr, pv.helo, pv.from, pv.rcpts}
	oe := []any{ov.stages, ov.host, ov.family, ov.port, ov.addr, ov.helo, ov.from, ov.rcpts}
	if !reflect.DeepEqual(pe, oe) {
		t.Errorf("events differ:\nPostfix %q\npostkit %q", pe, oe)
	}
}

// heldIDs lists the queue IDs in the instance's hold queue, oldest first.
func heldIDs(t *testing.T, pf *oracle.Postfix) []string {
	ents, _ := os.ReadDir(filepath.Join(pf.QueueDir, "hold"))
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids
}

func countQueued(t *testing.T, pf *oracle.Postfix) int { return len(heldIDs(t, pf)) }

// TestPostfixDifferentialReplies: the SMTP reply Postfix gives for a
// milter's answer is what postkit's Result.Reject holds (code, enhanced
// code, text lines).
func TestPostfixDifferentialReplies(t *testing.T) {
	t.Parallel()
	multi := mustResp(gomilter.RejectWithCodeAndReason(554, "5.7.0 first line\nsecond line"))
	noDSN := mustResp(gomilter.RejectWithCodeAndReason(550, "go away"))
	wrongClass := mustResp(gomilter.RejectWithCodeAndReason(452, "5.2.2 mailbox full"))
	cases := []struct {
		name   string
		stage  string // where the milter answers
		resp   *gomilter.Response
		action string // milter_default_action, "" = tempfail
		slow   bool   // the milter answers after milter_content_timeout
	}{
		{"eom-reject", "eom", gomilter.RespReject, "", false},
		{"eom-tempfail", "eom", gomilter.RespTempFail, "", false},
		{"eom-multi", "eom", multi, "", false},
		{"eom-nodsn", "eom", noDSN, "", false},
		{"eom-wrongclass", "eom", wrongClass, "", false},
		{"data-reject", "data", gomilter.RespReject, "", false},
		{"header-tempfail", "header", gomilter.RespTempFail, "", false},
		{"body-multi", "body", multi, "", false},
		{"mail-wrongclass", "mail", wrongClass, "", false},
		{"eom-wrongclass-reject", "eom", wrongClass, "reject", false},
		{"eom-timeout-reject", "eom", gomilter.RespAccept, "reject", true},
	}
	var mu sync.Mutex
	current := 0
	addr := startMilter(t, func() *script {
		mu.Lock()
		tc := cases[current]
		mu.Unlock()
		s := &script{seen: &seen{}}
		switch tc.stage {
		case "eom":
			s.eom = func(gomilter.Modifier) (*gomilter.Response, error) {
				if tc.slow {
					time.Sleep(1500 * time.Millisecond)
				}
				return tc.resp, nil
			}
		case "data":
			s.data = tc.resp
		case "header":
			s.header = func(string, string) *gomilter.Response { return tc.resp }
		case "body":
			s.body = tc.resp
		case "mail":
			s.mail = tc.resp
		}
		return s
	})
	mainCF := func(action string) string {
		if action == "" {
			action = "tempfail"
		}
		return "smtpd_milters = " + addr + "\nmilter_default_action = " + action + "\nmilter_content_timeout = 1s\n"
	}
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: mainCF("")})
	msg := lines("From: a@example.com", "To: b@example.org", "Subject: replies", "", "body")
	action := ""
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			current = i
			mu.Unlock()
			if tc.action != action {
				pf.Reconfigure(t, mainCF(tc.action), nil)
				action = tc.action
			}
			s := pf.Session(t)
			var final oracle.Reply
			for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.org>", "DATA"} {
				final = s.Cmd(cmd)
				if final.Code >= 400 {
					break
				}
			}
			if final.Code < 400 && final.Code != 354 {
				t.Fatalf("Postfix accepted: %v", final)
			}
			if final.Code == 354 {
				final = s.Message(strings.ReplaceAll(msg, "\r\n", "\n"))
			}
			s.Close()

			cfg := testConfig(addr)
			cfg.DefaultAction, cfg.ContentTimeout = tc.action, time.Second
			res, _ := run(t, cfg, testEnv, msg)
			if res.Reject == nil {
				t.Fatalf("postkit: no reject; Postfix: %v", final)
			}
			// Postfix repeats code and enhanced code on every line.
			var want []string
			for _, l := range strings.Split(res.Reject.Text, "\n") {
				want = append(want, restrictions.Reply{Code: res.Reject.Code, DSN: res.Reject.DSN, Text: l}.String())
			}
			var got []string
			for _, l := range final.Lines {
				got = append(got, fmt.Sprintf("%d %s", final.Code, l))
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("reply differs:\nPostfix %q\npostkit %q", got, want)
			}
		})
	}
}

// TestPostfixMilterMaps: smtpd_milter_maps picks the milters per client
// address (or DISABLE), in Postfix and in postkit's FromConfig + Run.
func TestPostfixMilterMaps(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := map[string]int{}
	mk := func(name string) string {
		return startMilter(t, func() *script {
			return &script{seen: &seen{}, eom: func(gomilter.Modifier) (*gomilter.Response, error) {
				mu.Lock()
				calls[name]++
				mu.Unlock()
				return gomilter.RespAccept, nil
			}}
		})
	}
	def, special := mk("default"), mk("special")
	msg := lines("From: a@example.com", "Subject: maps", "", "body")
	for _, tc := range []struct {
		table string
		want  string // the milter that must run, "" for none
	}{
		{"127.0.0.1 " + special + "\n", "special"},
		{"127.0.0.1 DISABLE\n", ""},
		{"192.0.2.0/24 DISABLE\n", "default"},
	} {
		main := "smtpd_milters = " + def + "\nsmtpd_milter_maps = cidr:$config_directory/milters\n"
		files := []oracle.File{{Name: "milters", Data: tc.table}}
		pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main, Files: files})
		mu.Lock()
		clear(calls)
		mu.Unlock()
		s := pf.Session(t)
		for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.org>", "DATA"} {
			if r := s.Cmd(cmd); r.Code >= 400 {
				t.Fatalf("%s: %v", cmd, r)
			}
		}
		if r := s.Message(strings.ReplaceAll(msg, "\r\n", "\n")); r.Code != 250 {
			t.Fatalf("end of data: %v", r)
		}
		s.Close()
		mu.Lock()
		pfCalls := fmt.Sprint(calls)
		clear(calls)
		mu.Unlock()

		cf, err := config.Load(pf.ConfigDir)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := milter.FromConfig(context.Background(), cf, "smtpd_milters")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Logger = testConfig().Logger
		env := testEnv
		env.ClientAddr = "127.0.0.1"
		if _, err := cfg.Run(context.Background(), env, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		ours := fmt.Sprint(calls)
		mu.Unlock()
		want := "map[]"
		if tc.want != "" {
			want = "map[" + tc.want + ":1]"
		}
		if pfCalls != want || ours != want {
			t.Errorf("table %q: Postfix ran %s, postkit %s, want %s", tc.table, pfCalls, ours, want)
		}
	}
}
