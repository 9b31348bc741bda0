package restrictions_test

// Differential test against Postfix 3.7: every scenario of testdata/oracle
// (see its README) runs on a private Postfix instance and on a Checker
// built from the same main.cf and tables; each command whose reply the
// restrictions decide is compared. Postfix's replies also drive the session
// state (whether MAIL or RCPT was accepted), so one difference does not
// cascade into the following commands.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
)

func TestOracleScenarios(t *testing.T) {
	scs, err := oracle.LoadScenarios("testdata/oracle")
	if err != nil {
		t.Fatal(err)
	}
	// Each scenario mostly waits for its Postfix instance, so more of them
	// run at once than -parallel (GOMAXPROCS) would allow.
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, sc := range scs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(sc.Name, func(t *testing.T) { runOracleScenario(t, sc) })
		})
	}
	wg.Wait()
}

func runOracleScenario(t *testing.T, sc oracle.Scenario) {
	p, startErr := oracle.TryStartPostfix(t, sc.Options())
	dir := t.TempDir()
	if p != nil {
		dir = p.ConfigDir
	} else if err := oracle.WriteConfigDir(dir, sc.Options()); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	// Postfix takes config_directory from "postfix -c", not from main.cf.
	cfg.Set("config_directory", dir)
	chk, chkErr := restrictions.FromConfig(t.Context(), cfg, restrictions.Options{})
	switch {
	case startErr != nil && chkErr == nil:
		t.Fatalf("%s: Postfix refuses the configuration, FromConfig accepts it:\n%v", sc.Path, startErr)
	case startErr == nil && chkErr != nil:
		t.Fatalf("%s: Postfix accepts the configuration, FromConfig refuses it: %v", sc.Path, chkErr)
	case startErr != nil:
		t.Logf("both refuse the configuration:\n  postfix: %v\n  checker: %v", startErr, chkErr)
		return
	}
	env := sessionEnv{
		chk:          chk,
		port:         p.Port,
		delayReject:  cfgBool(t, cfg, "smtpd_delay_reject"),
		heloRequired: cfgBool(t, cfg, "smtpd_helo_required"),
		saslEnabled:  cfgBool(t, cfg, "smtpd_sasl_auth_enable"),
	}
	var mismatches []string
	compared := 0
	for _, d := range sc.Dialogues {
		tr := p.RunDialogue(t, d)
		if testing.Verbose() {
			t.Logf("%s", tr)
		}
		m, n := env.replay(t, tr)
		compared += n
		for _, s := range m {
			mismatches = append(mismatches, fmt.Sprintf("%s:%s", sc.Path, s))
		}
	}
	t.Logf("%d dialogues, %d checked commands, %d mismatches", len(sc.Dialogues), compared, len(mismatches))
	if len(mismatches) > 0 {
		t.Errorf("Checker differs from Postfix:\n%s", strings.Join(mismatches, "\n"))
	}
}

func cfgBool(t *testing.T, cfg *config.Config, name string) bool {
	v, err := cfg.Bool(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// sessionEnv is what every session of one scenario shares.
type sessionEnv struct {
	chk          *restrictions.Checker
	port         int
	delayReject  bool
	heloRequired bool
	saslEnabled  bool
}

// session is smtpd's view of one dialogue, rebuilt from the commands and
// Postfix's replies.
type session struct {
	env               *sessionEnv
	snap              restrictions.Snapshot
	inTxn             bool     // MAIL was accepted
	rcpts             []string // recipients accepted in this transaction
	denied            bool     // the client was rejected at connect (smtpd_delay_reject = no)
	closed            bool     // the server closed the connection
	ehlo              bool     // the client said EHLO: it may pipeline
	illegalPipelining bool

	mismatches []string
	compared   int
}

// replay runs the dialogue's commands through the Checker and returns the
// differences and the number of commands compared.
func (env *sessionEnv) replay(t *testing.T, tr oracle.Transcript) ([]string, int) {
	s := &session{env: env}
	s.snap = restrictions.Snapshot{
		ClientAddr: netip.MustParseAddr("127.0.0.1"),
		ServerAddr: netip.MustParseAddr("127.0.0.1"),
		ServerPort: env.port,
		// smtpd_peername_lookup = no: the real peer is "unknown".
		ClientNameStatus:  restrictions.NamePermFail,
		ReverseNameStatus: restrictions.NamePermFail,
	}
	steps := tr.Steps
	for i := 0; i < len(steps); {
		// A pipelined group: the commands sent in one write.
		j := i + 1
		for j < len(steps) && steps[j].Cmd.Pipelined {
			j++
		}
		group := steps[i:j]
		var got []restrictions.LogEntry
		for k, st := range group {
			// smtpd notices the commands sent ahead when it reads one
			// with more input waiting: after HELO (no PIPELINING
			// offered) or after a command that must end a group
			// (RFC 2920 3.1), the session is marked.
			if k < len(group)-1 && (!s.ehlo || mustBeLast(st.Cmd.Text)) {
				s.illegalPipelining = true
			}
			got = append(got, s.step(t, tr.Dialogue.Name, st)...)
		}
		// Postfix's log lines of a group come with its last reply.
		last := group[len(group)-1]
		want := postfixEvents(last.Reply.Log)
		if !slices.Equal(want, got) && !(len(want) == 0 && len(got) == 0) {
			s.mismatch(tr.Dialogue.Name, last.Cmd, "log events",
				formatEvents(want), formatEvents(got))
		}
		i = j
	}
	return s.mismatches, s.compared
}

func mustBeLast(cmd string) bool {
	switch verb(cmd) {
	case "HELO", "EHLO", "DATA", "NOOP", "VRFY", "QUIT", "STARTTLS":
		return true
	}
	return false
}

func verb(cmd string) string {
	v, _, _ := strings.Cut(cmd, " ")
	return strings.ToUpper(v)
}

func (s *session) mismatch(dialogue string, cmd oracle.Command, what, postfix, checker string) {
	s.mismatches = append(s.mismatches, fmt.Sprintf(
		"%d: dialogue %s: %s: %s\n\tpostfix: %s\n\tchecker: %s",
		cmd.Line, dialogue, cmd.Text, what, postfix, checker))
}

// compare checks a Decision against Postfix's reply; accepted says what
// Postfix's reply is when the command passes the restrictions.
func (s *session) compare(dialogue string, st oracle.Step, d restrictions.Decision, accepted func(oracle.Reply) bool) {
	s.compared++
	r := st.Reply
	var checker string
	switch {
	case d.Hangup:
		checker = "(hang up)"
	case d.Accepted():
		checker = "(accepted)"
	default:
		checker = d.Reply.String()
		if d.Disconnect {
			checker += " (disconnect)"
		}
	}
	var postfix string
	var same bool
	switch {
	case r.Code == 0:
		postfix = "(hang up)"
		same = d.Hangup
	case accepted(r):
		postfix = "(accepted: " + r.String() + ")"
		same = d.Accepted()
	default:
		postfix = r.String()
		if r.Closed {
			postfix += " (disconnect)"
		}
		same = !d.Accepted() && !d.Hangup && d.Reply.String() == r.String() && d.Disconnect == r.Closed
	}
	if !same {
		s.mismatch(dialogue, st.Cmd, "reply", postfix, checker)
	}
}

func code(c int) func(oracle.Reply) bool {
	return func(r oracle.Reply) bool { return r.Code == c }
}

// protocolReply reports whether a reply comes from smtpd's command
// handling rather than from the restrictions: the Checker is not asked.
func protocolReply(r oracle.Reply) bool {
	text := r.String()
	for _, p := range []string{
		"503 5.5.1 Error: nested MAIL command",
		"503 5.5.1 Error: need MAIL command",
		"503 5.5.1 Error: need RCPT command",
		"554 5.5.1 Error: no valid recipients",
		"503 5.7.0 Error: access denied for ",
		"503 Error: MAIL transaction in progress",
		"503 Error: send HELO/EHLO first",
		"501 5.5.4 ",
		"501 Syntax:",
		"555 5.5.4 Unsupported option",
		"452 4.5.3 Error: too many recipients",
		"502 5.5.2 Error: command not recognized",
		"500 5.5.2 Error: bad syntax",
	} {
		if strings.HasPrefix(text, p) {
			return true
		}
	}
	return false
}

// step replays one command and returns the log events the Checker
// produced for it.
func (s *session) step(t *testing.T, dialogue string, st oracle.Step) []restrictions.LogEntry {
	env := s.env
	r := st.Reply
	cmd := st.Cmd.Text
	if s.closed {
		return nil
	}
	if r.Closed {
		// The server closed the connection after this reply (421, 521)
		// or instead of it (HANGUP).
		s.closed = true
		if r.Code == 0 && !s.asked(cmd) {
			return nil
		}
	}
	if s.denied && verb(cmd) != "QUIT" {
		// Every command after a rejection at connect gets
		// "503 5.7.0 Error: access denied for ...".
		return nil
	}
	ctx := t.Context()
	check := func(stage restrictions.Stage, accepted func(oracle.Reply) bool) restrictions.Decision {
		s.snap.IllegalPipelining = s.illegalPipelining
		d := env.chk.Check(ctx, stage, &s.snap)
		s.snap.Txn = d.Txn
		s.compare(dialogue, st, d, accepted)
		return d
	}
	var events []restrictions.LogEntry
	switch v := verb(cmd); v {
	case "XCLIENT":
		if r.Code != 220 && (protocolReply(r) || env.delayReject) {
			return nil
		}
		attrs, _ := oracle.XCLIENTAttrs(cmd)
		s.xclient(attrs)
		if !env.delayReject {
			d := check(restrictions.StageClient, code(220))
			events = d.Log
			if r.Code != 220 {
				s.denied = true
			}
		}
	case "HELO", "EHLO":
		arg := strings.TrimSpace(cmd[len(v):])
		if arg == "" || protocolReply(r) {
			return nil
		}
		s.resetTxn()
		s.snap.Helo = ""
		if !env.delayReject {
			s.snap.Helo, s.snap.ESMTP = arg, v == "EHLO"
			d := check(restrictions.StageHelo, code(250))
			events = d.Log
		}
		if r.Code == 250 {
			s.snap.Helo, s.snap.ESMTP = arg, v == "EHLO"
			s.ehlo = v == "EHLO"
		} else {
			s.snap.Helo = ""
		}
	case "MAIL":
		arg, ok := cutPrefixFold(cmd, "MAIL FROM:")
		if !ok || s.inTxn && r.String() == "503 5.5.1 Error: nested MAIL command" {
			return nil
		}
		if env.heloRequired && s.snap.Helo == "" {
			// smtpd_helo_required is answered by the sender stage.
			d := check(restrictions.StageSender, code(250))
			return d.Log
		}
		token, _ := envelopeToken(arg)
		addr, bad, ok := env.chk.ParseEnvelope(ctx, restrictions.StageSender, token, false)
		addr, ok = s.envelope(dialogue, st, token, addr, ok, bad)
		if !ok {
			return nil
		}
		if strings.HasPrefix(r.String(), "555 ") {
			return nil
		}
		s.resetTxn()
		s.snap.Sender = addr
		if !env.delayReject {
			d := check(restrictions.StageSender, code(250))
			events = d.Log
		}
		if r.Code == 250 {
			s.inTxn = true
		} else {
			s.snap.Sender = ""
		}
	case "RCPT":
		arg, ok := cutPrefixFold(cmd, "RCPT TO:")
		if !ok || !s.inTxn {
			return nil
		}
		token, _ := envelopeToken(arg)
		addr, bad, ok := env.chk.ParseEnvelope(ctx, restrictions.StageRecipient, token, false)
		addr, ok = s.envelope(dialogue, st, token, addr, ok, bad)
		if !ok {
			return nil
		}
		if protocolReply(r) {
			return nil
		}
		s.snap.Recipient = addr
		s.snap.RecipientCount = len(s.rcpts)
		d := check(restrictions.StageRecipient, code(250))
		events = d.Log
		if r.Code == 250 {
			s.rcpts = append(s.rcpts, addr)
		}
	case "DATA":
		if !s.inTxn || len(s.rcpts) == 0 || protocolReply(r) {
			return nil
		}
		s.dataSnapshot()
		d := check(restrictions.StageData, code(354))
		events = d.Log
	case ".":
		s.dataSnapshot()
		d := check(restrictions.StageEndOfData, func(r oracle.Reply) bool {
			return strings.HasPrefix(r.String(), "250 2.0.0 Ok: queued as ")
		})
		events = d.Log
		if r.Code == 250 {
			// A rejection at end of data keeps the transaction (smtpd
			// does not reset it); a queued message ends it.
			s.resetTxn()
		}
	case "RSET":
		if r.Code == 250 {
			s.resetTxn()
		}
	case "ETRN":
		arg := strings.TrimSpace(cmd[len(v):])
		if arg == "" || protocolReply(r) {
			return nil
		}
		s.snap.ETRNDomain = strings.TrimLeft(arg, "@#")
		d := check(restrictions.StageETRN, func(r oracle.Reply) bool {
			// After the restrictions, the flush service answers: 250,
			// or 458/459 without an enhanced status code.
			return r.Code == 250 || (r.Code == 458 || r.Code == 459) && !strings.Contains(r.String(), " 4.")
		})
		events = d.Log
		s.snap.ETRNDomain = ""
	}
	return events
}

// asked reports whether the Checker is asked for cmd at all (so that a
// hang-up in reply to it is compared).
func (s *session) asked(cmd string) bool {
	switch verb(cmd) {
	case "RCPT", "DATA", ".", "ETRN":
		return true
	case "MAIL", "HELO", "EHLO", "XCLIENT":
		return !s.env.delayReject
	}
	return false
}

// envelope compares ParseEnvelope's verdict with Postfix's syntax reply
// and returns the address the restrictions see, or false when smtpd
// rejected the syntax. When only ParseEnvelope rejects it, the session goes
// on with a plain reading of the address, as Postfix did.
func (s *session) envelope(dialogue string, st oracle.Step, token, addr string, ok bool, bad restrictions.Reply) (string, bool) {
	r := st.Reply
	postfixBad := r.String() == "501 5.1.7 Bad sender address syntax" ||
		r.String() == "501 5.1.3 Bad recipient address syntax"
	if !postfixBad && ok {
		return addr, true
	}
	s.compared++
	switch {
	case !postfixBad:
		s.mismatch(dialogue, st.Cmd, "ParseEnvelope", r.String(), bad.String())
		return plainAddress(token), true
	case ok:
		s.mismatch(dialogue, st.Cmd, "ParseEnvelope", r.String(), "(address accepted)")
	case bad.String() != r.String():
		s.mismatch(dialogue, st.Cmd, "ParseEnvelope", r.String(), bad.String())
	}
	return "", false
}

// plainAddress reads an envelope address without checking it: brackets,
// a source route and double quotes removed.
func plainAddress(token string) string {
	a := strings.TrimSuffix(strings.TrimPrefix(token, "<"), ">")
	if strings.HasPrefix(a, "@") {
		if _, rest, ok := strings.Cut(a, ":"); ok {
			a = rest
		}
	}
	return strings.ReplaceAll(a, `"`, "")
}

// xclient applies XCLIENT attributes: a new session as that client.
// NAME=[UNAVAILABLE] and [TEMPUNAVAIL] give the name status; REVERSE_NAME
// defaults to NAME; LOGIN counts only when smtpd_sasl_auth_enable is set.
func (s *session) xclient(attrs map[string]string) {
	s.resetTxn()
	s.snap.Txn = restrictions.Txn{}
	s.snap.Helo, s.snap.ESMTP = "", false
	s.ehlo = false
	if a, ok := attrs["ADDR"]; ok {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "IPV6:"), "ipv6:")
		if ip, err := netip.ParseAddr(a); err == nil {
			s.snap.ClientAddr = ip
		}
	}
	name := func(v string) (string, restrictions.NameStatus) {
		switch strings.ToUpper(v) {
		case "[UNAVAILABLE]":
			return "", restrictions.NamePermFail
		case "[TEMPUNAVAIL]":
			return "", restrictions.NameTempFail
		}
		return v, restrictions.NameOK
	}
	if v, ok := attrs["NAME"]; ok {
		s.snap.ClientName, s.snap.ClientNameStatus = name(v)
		s.snap.ReverseName, s.snap.ReverseNameStatus = s.snap.ClientName, s.snap.ClientNameStatus
	}
	if v, ok := attrs["REVERSE_NAME"]; ok {
		s.snap.ReverseName, s.snap.ReverseNameStatus = name(v)
	}
	if v, ok := attrs["HELO"]; ok && !strings.EqualFold(v, "[UNAVAILABLE]") {
		s.snap.Helo = v
	}
	if v, ok := attrs["LOGIN"]; ok && s.env.saslEnabled && !strings.EqualFold(v, "[UNAVAILABLE]") {
		s.snap.SASLUsername, s.snap.SASLMethod = v, "XCLIENT"
	}
}

// resetTxn ends the mail transaction (RSET, HELO, a new MAIL, a queued
// message).
func (s *session) resetTxn() {
	s.inTxn = false
	s.rcpts = nil
	s.snap.Sender = ""
	s.snap.Recipient = ""
	s.snap.RecipientCount = 0
	s.snap.Txn.Reset()
}

// dataSnapshot fills in what DATA and end of data see: the recipient only
// when there is exactly one.
func (s *session) dataSnapshot() {
	s.snap.RecipientCount = len(s.rcpts)
	s.snap.Recipient = ""
	if len(s.rcpts) == 1 {
		s.snap.Recipient = s.rcpts[0]
	}
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// envelopeToken splits the argument of MAIL FROM: or RCPT TO: as smtpd
// does: the address is the first token (a "<...>" token may hold spaces
// and quoted strings), the rest are ESMTP parameters.
func envelopeToken(arg string) (token, rest string) {
	arg = strings.TrimLeft(arg, " ")
	if !strings.HasPrefix(arg, "<") {
		token, rest, _ = strings.Cut(arg, " ")
		return token, rest
	}
	inQuote := false
	for i := 1; i < len(arg); i++ {
		switch c := arg[i]; {
		case c == '\\' && i+1 < len(arg):
			i++
		case c == '"':
			inQuote = !inQuote
		case c == '>' && !inQuote:
			return arg[:i+1], strings.TrimLeft(arg[i+1:], " ")
		}
	}
	return arg, ""
}

// eventKinds are the restriction events smtpd logs as
// "QUEUEID: KIND: CMD from NAME[ADDR]: TEXT; from=<...> ...".
var eventKinds = []string{"reject", "reject_warning", "warn", "info", "hold", "discard",
	"filter", "redirect", "bcc", "hangup", "permit"}

// postfixEvents extracts the restriction events from smtpd log lines.
func postfixEvents(lines []string) []restrictions.LogEntry {
	var out []restrictions.LogEntry
	for _, l := range lines {
		qid, rest, ok := strings.Cut(l, ": ")
		if !ok || !isQueueID(qid) {
			continue
		}
		kind, rest, ok := strings.Cut(rest, ": ")
		if !ok || !slices.Contains(eventKinds, kind) {
			continue
		}
		// "RCPT from name[addr]: text"
		i := strings.Index(rest, " from ")
		if i < 0 {
			continue
		}
		j := strings.Index(rest[i:], "]: ")
		if j < 0 {
			continue
		}
		text := rest[i+j+3:]
		for _, sep := range []string{"; from=<", "; proto="} {
			if k := strings.LastIndex(text, sep); k >= 0 {
				text = text[:k]
				break
			}
		}
		out = append(out, restrictions.LogEntry{Kind: kind, Text: text})
	}
	return out
}

// isQueueID: "NOQUEUE" or a short queue ID (hex).
func isQueueID(s string) bool {
	if s == "NOQUEUE" {
		return true
	}
	if s == "" {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func formatEvents(ev []restrictions.LogEntry) string {
	if len(ev) == 0 {
		return "(none)"
	}
	var b strings.Builder
	for i, e := range ev {
		if i > 0 {
			b.WriteString(" | ")
		}
		b.WriteString(e.Kind + ": " + e.Text)
	}
	return b.String()
}
