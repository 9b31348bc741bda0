package rewrite

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// The differential tests send messages to a private Postfix whose
// smtpd_data_restrictions put every message on hold, read the queued
// envelope and headers back with postcat, and compare them with what the
// Rewriter built from the same main.cf and tables produces.

// oracleMsg is one message of a differential case.
type oracleMsg struct {
	remote  bool     // client 192.0.2.7 (remote) instead of 127.0.0.1 (local)
	sender  string   // MAIL FROM path, without the angle brackets
	rcpts   []string // RCPT TO paths
	headers []string // header lines, "Name: value", continuation lines with "\n"
}

type oracleCase struct {
	name       string
	noMappings bool // main sets receive_override_options = no_address_mappings
	main       string
	files      []oracle.File
	msgs       []oracleMsg
}

// queued is what postcat shows for one held message.
type queued struct {
	skipped  bool     // MAIL FROM was refused
	accepted []string // the recipients smtpd accepted
	reply    oracle.Reply
	sender   string
	rcpts    [][2]string // original recipient, final recipient
	headers  []string    // logical headers, "\n" between lines
	sent     []string    // the headers as sent (expectFromRewriter)
}

// baseMain is the main.cf every case starts from: mail from 127.0.0.1 is
// local (permit_inet_interfaces), everything goes on hold.
const baseMain = `
myorigin = origin.example
mydomain = example.com
mydestination = $myorigin, localhost.$mydomain, mail.example.com
smtpd_relay_restrictions = permit_mynetworks, check_client_access static:OK, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_data_restrictions = check_client_access static:HOLD
local_recipient_maps =
virtual_alias_domains =
smtputf8_enable = yes
# XCLIENT changes the client that permit_mynetworks sees, but not the
# socket address that permit_inet_interfaces (the default) checks.
local_header_rewrite_clients = permit_mynetworks
`

func runOracle(t *testing.T, c oracleCase) (*oracle.Postfix, []queued) {
	t.Helper()
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: baseMain + c.main, Files: c.files})
	postcat := oracle.Require(t, "postcat")
	out := make([]queued, len(c.msgs))
	tm := time.Now()
	defer func() { t.Logf("oracle: %d messages in %v", len(c.msgs), time.Since(tm)) }()
	// One session carries all the messages (XCLIENT between them), and
	// one postcat run reads them all back: starting processes is what
	// costs time here.
	var s *oracle.SMTPConn
	var ids []string
	idx := map[string]int{}
	for i, m := range c.msgs {
		if s == nil {
			s = p.Session(t)
		}
		client := "ADDR=127.0.0.1 NAME=localhost"
		if m.remote {
			client = "ADDR=192.0.2.7 NAME=client.remote.test"
		}
		if r := s.Cmd("XCLIENT " + client); r.Code != 220 {
			t.Fatalf("msg %d: XCLIENT: %v", i, r)
		}
		if r := s.Cmd("EHLO client.test"); r.Code != 250 {
			t.Fatalf("msg %d: EHLO: %v", i, r)
		}
		if r := s.Cmd("MAIL FROM:<" + m.sender + ">"); r.Code != 250 {
			t.Logf("msg %d: MAIL FROM:<%s>: %v (not compared)", i, m.sender, r)
			out[i] = queued{skipped: true}
			if r.Closed || m.remote {
				s.Close()
				s = nil
			} else {
				s.Cmd("RSET")
			}
			continue
		}
		var accepted []string
		for _, rc := range m.rcpts {
			if r := s.Cmd("RCPT TO:<" + rc + ">"); r.Code != 250 {
				t.Logf("msg %d: RCPT TO:<%s>: %v (not compared)", i, rc, r)
				continue
			}
			accepted = append(accepted, rc)
		}
		if r := s.Cmd("DATA"); r.Code != 354 {
			t.Fatalf("msg %d: DATA: %v\nPostfix's log:\n%s", i, r, lastLines(p.Log(), 40))
		}
		r := s.Message(strings.Join(m.headers, "\n") + "\n\nbody\n")
		out[i] = queued{reply: r, accepted: accepted}
		// A session posing as a remote client may not use XCLIENT again
		// (smtpd_authorized_xclient_hosts sees the new client).
		if r.Closed || m.remote {
			s.Close()
			s = nil
		}
		if r.Code == 250 {
			id := r.Lines[0][strings.LastIndexByte(r.Lines[0], ' ')+1:]
			ids = append(ids, id)
			idx[id] = i
		}
	}
	if s != nil {
		s.Close()
	}
	if len(ids) == 0 {
		return p, out
	}
	res, err := exec.Command(postcat, append([]string{"-c", p.ConfigDir, "-q"}, ids...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("postcat -q %s: %v\n%s", ids, err, res)
	}
	const mark = "*** ENVELOPE RECORDS "
	for _, part := range strings.Split(string(res), mark)[1:] {
		// "hold/ID ***"
		head, _, _ := strings.Cut(part, " ***")
		id := head[strings.LastIndexByte(head, '/')+1:]
		i, ok := idx[id]
		if !ok {
			t.Fatalf("postcat printed an unknown queue file %q", head)
		}
		q := parsePostcat(t, part)
		q.reply, q.accepted = out[i].reply, out[i].accepted
		out[i] = q
		delete(idx, id)
	}
	if len(idx) > 0 {
		t.Fatalf("postcat did not print %v:\n%s", idx, res)
	}
	return p, out
}

func parsePostcat(t *testing.T, s string) queued {
	var q queued
	lines := strings.Split(s, "\n")
	i := 0
	orig := ""
	for ; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "*** MESSAGE CONTENTS") {
			i++
			break
		}
		switch {
		case strings.HasPrefix(l, "sender: "):
			q.sender = strings.TrimPrefix(l, "sender: ")
		case l == "sender:":
			q.sender = ""
		case strings.HasPrefix(l, "original_recipient: "):
			orig = strings.TrimPrefix(l, "original_recipient: ")
		case strings.HasPrefix(l, "recipient: "):
			q.rcpts = append(q.rcpts, [2]string{orig, strings.TrimPrefix(l, "recipient: ")})
			orig = ""
		}
	}
	for ; i < len(lines) && lines[i] != ""; i++ {
		l := lines[i]
		if (l[0] == ' ' || l[0] == '\t') && len(q.headers) > 0 {
			q.headers[len(q.headers)-1] += "\n" + l
			continue
		}
		q.headers = append(q.headers, l)
	}
	return q
}

// dropped are the headers cleanup always removes (message_drop_headers).
var dropped = map[string]bool{"bcc": true, "resent-bcc": true, "return-path": true, "content-length": true}

// pathInternal is what smtpd hands cleanup for a MAIL FROM or RCPT TO
// path: the address in internal form. A path address.ParsePath refuses
// (smtpd refused it too, so it is not compared) is only unquoted.
func pathInternal(s string) string {
	p, err := address.ParsePath("<"+s+">", address.PathOptions{AllowNull: true, NoDomainCheck: true})
	if err != nil {
		return address.Unquote(s)
	}
	// smtpd drops a source route.
	return p.Address.Internal()
}

// expectFromRewriter computes what the Rewriter makes of one message.
func expectFromRewriter(ctx context.Context, t *testing.T, r *Rewriter, m oracleMsg, noMappings bool) (queued, error) {
	var q queued
	var err error
	if q.sender, err = r.Sender(ctx, pathInternal(m.sender), noMappings); err != nil {
		return q, err
	}
	seen := map[string]bool{}
	for _, rc := range m.rcpts {
		orig := pathInternal(rc)
		a, err := r.Recipient(ctx, orig, noMappings)
		if err != nil {
			return q, err
		}
		list := []string{a}
		if !noMappings {
			if list, err = r.VirtualAlias(ctx, a); err != nil {
				return q, err
			}
		}
		for _, f := range list {
			k := strings.ToLower(orig + "\x00" + f)
			if seen[k] {
				continue
			}
			seen[k] = true
			q.rcpts = append(q.rcpts, [2]string{orig, f})
		}
	}
	domain := ""
	rewriteHeaders := true
	if m.remote {
		domain = r.Config().RemoteHeaderRewriteDomain
		rewriteHeaders = domain != ""
	}
	for _, h := range m.headers {
		name, value, _ := strings.Cut(h, ":")
		if dropped[strings.ToLower(name)] {
			continue
		}
		if rewriteHeaders {
			// Feed CRLF lines as cleanup gets them from the SMTP server.
			v, _, err := r.HeaderLine(ctx, name, strings.ReplaceAll(value, "\n", "\r\n"), domain, noMappings)
			if err != nil {
				return q, err
			}
			value = strings.ReplaceAll(v, "\r\n", "\n")
		}
		q.headers = append(q.headers, name+":"+value)
		q.sent = append(q.sent, h)
	}
	return q, nil
}

func compareOracle(t *testing.T, c oracleCase) int {
	t.Helper()
	ctx := context.Background()
	p, got := runOracle(t, c)
	cfg, err := config.Load(p.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := FromConfig(ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	r.log = quiet() // the expected warnings of loops and multi-valued entries
	compared := 0
	for i, m := range c.msgs {
		pf := got[i]
		if pf.skipped {
			continue
		}
		m.rcpts = pf.accepted
		want, err := expectFromRewriter(ctx, t, r, m, c.noMappings)
		if pf.reply.Code != 250 {
			t.Logf("msg %d: Postfix: %v; rewrite: %v", i, pf.reply, err)
			// Postfix deferred or rejected the message: so must we.
			var ee *ExpansionError
			if err == nil {
				t.Errorf("msg %d: Postfix answered %v, rewrite gave no error", i, pf.reply)
			} else if pf.reply.Code/100 == 4 && !errors.As(err, &ee) && !strings.Contains(pf.reply.String(), "4.3.0") {
				t.Errorf("msg %d: Postfix answered %v, rewrite: %v", i, pf.reply, err)
			}
			compared++
			continue
		}
		if err != nil {
			t.Errorf("msg %d: Postfix queued the message, rewrite failed: %v", i, err)
			continue
		}
		if pf.sender != want.sender {
			t.Errorf("msg %d: sender <%s>: Postfix %q, rewrite %q", i, m.sender, pf.sender, want.sender)
		}
		compared++
		if fmt.Sprint(pf.rcpts) != fmt.Sprint(want.rcpts) {
			t.Errorf("msg %d: recipients %q:\n Postfix %q\n rewrite %q", i, m.rcpts, pf.rcpts, want.rcpts)
		}
		compared += len(m.rcpts)
		// Postfix's headers: drop the ones cleanup added.
		var pfh []string
		for _, h := range pf.headers {
			name, _, _ := strings.Cut(h, ":")
			switch strings.ToLower(name) {
			case "received", "message-id", "date", "resent-message-id", "resent-date":
				continue
			}
			pfh = append(pfh, h)
		}
		// cleanup appends a Resent-From (or From) it finds missing.
		for len(pfh) > len(want.headers) {
			name, _, _ := strings.Cut(pfh[len(pfh)-1], ":")
			if n := strings.ToLower(name); n != "resent-from" && n != "from" {
				break
			}
			pfh = pfh[:len(pfh)-1]
		}
		if len(pfh) != len(want.headers) {
			t.Errorf("msg %d: Postfix has %d headers, rewrite %d:\n%s\n---\n%s", i, len(pfh), len(want.headers),
				strings.Join(pfh, "\n"), strings.Join(want.headers, "\n"))
			continue
		}
		for j := range pfh {
			if pfh[j] != want.headers[j] {
				t.Errorf("msg %d header %d: %q\n Postfix %q\n rewrite %q", i, j, want.sent[j], pfh[j], want.headers[j])
			}
			compared++
		}
	}
	return compared
}

// lastLines returns the last n lines of s, for failure messages.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
