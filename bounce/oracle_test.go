package bounce

// The differential test: a private Postfix 3.7 relays to the sink, which
// rejects some recipients (550), defers others (450) and accepts the
// rest; Postfix's notices come back to the sink too (every address is
// relayed there). For each notice Postfix sends, the test builds the same
// notice with this package from the same inputs (the envelope it sent,
// the replies the sink gave, the original as the sink received it) and
// compares them byte for byte after masking what must differ (dates, the
// notice's queue ID, the boundary's timestamp), and also as Python's email
// module and go-message see them.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// oracleRcpt is one RCPT TO of a case.
type oracleRcpt struct {
	addr   string
	params string // NOTIFY=..., ORCPT=...
}

// oracleCase is one message sent through Postfix.
type oracleCase struct {
	name       string
	sender     string
	mailParams string // RET=, ENVID=, BODY=, SMTPUTF8
	rcpts      []oracleRcpt
	body       string // LF lines
	// want is the number of notices Postfix must send for it (sender and
	// postmaster, any kind).
	want int
}

// sentCase is a case after Postfix accepted it.
type sentCase struct {
	oracleCase
	queueID string
	arrival time.Time
}

func bigBody(n int) string {
	var b strings.Builder
	b.WriteString("Subject: big\n\n")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d of a long message, to be returned as headers only\n", i)
	}
	return b.String()
}

// The cases for the instance with Postfix's default templates (the text
// part's prose is masked), SMTPUTF8 on, delay warnings after 1 s and
// every postmaster class.
var casesDefault = []oracleCase{
	{name: "hdrs-envid-orcpt", sender: "alice@sender.test", mailParams: "RET=HDRS ENVID=env-1",
		rcpts: []oracleRcpt{{"bad1@dest.test", "ORCPT=rfc822;orig1@dest.test"}, {"bad2@dest.test", "NOTIFY=FAILURE"}},
		body:  "From: Alice <alice@sender.test>\nTo: x@dest.test\nSubject: hello\n\nbody line\n", want: 2},
	{name: "full-8bit", sender: "bob@sender.test", mailParams: "RET=FULL BODY=8BITMIME",
		rcpts: []oracleRcpt{{"bad3@dest.test", ""}},
		body:  "Subject: caf\xc3\xa9\n\nbody \xc3\xa9\n", want: 2},
	{name: "full-too-big", sender: "carol@sender.test", mailParams: "RET=FULL",
		rcpts: []oracleRcpt{{"bad4@dest.test", ""}}, body: bigBody(60000), want: 2},
	{name: "full-under-limit", sender: "carol@sender.test", mailParams: "",
		rcpts: []oracleRcpt{{"bad4@dest.test", ""}}, body: bigBody(45000), want: 2},
	{name: "null-sender", sender: "", rcpts: []oracleRcpt{{"bad5@dest.test", ""}},
		body: "Subject: a bounce\n\nx\n", want: 1},
	{name: "notify-never", sender: "erin@sender.test",
		rcpts: []oracleRcpt{{"bad6@dest.test", "NOTIFY=NEVER"}}, body: "Subject: never\n\nx\n", want: 1},
	{name: "smtputf8", sender: "d\xc3\xb6rte@sender.test", mailParams: "SMTPUTF8",
		rcpts: []oracleRcpt{{"bad7@dest.test", ""}, {"bad\xc3\xa9@dest.test", ""}},
		body:  "Subject: caf\xc3\xa9\n\nx\n", want: 2},
	{name: "smtputf8-ascii", sender: "gil@sender.test", mailParams: "SMTPUTF8 ENVID=e2",
		rcpts: []oracleRcpt{{"bad8@dest.test", "ORCPT=rfc822;o8@dest.test"}}, body: "Subject: plain\n\nx\n", want: 2},
	{name: "success", sender: "frank@sender.test", mailParams: "RET=FULL ENVID=succ",
		rcpts: []oracleRcpt{{"good1@dest.test", "NOTIFY=SUCCESS"}, {"good2@dest.test", "NOTIFY=SUCCESS,FAILURE"},
			{"bad9@dest.test", "NOTIFY=SUCCESS"}},
		body: "Subject: success\n\nx\n", want: 2},
	{name: "success-default-ret", sender: "frank@sender.test",
		rcpts: []oracleRcpt{{"good3@dest.test", "NOTIFY=SUCCESS ORCPT=rfc822;alias@dest.test"}},
		body:  "Subject: success\n\nx\n", want: 1},
	{name: "delay", sender: "gina@sender.test", mailParams: "RET=FULL ENVID=late",
		rcpts: []oracleRcpt{{"slow1@dest.test", "NOTIFY=DELAY"}, {"slow2@dest.test", "ORCPT=rfc822;s2@dest.test"},
			{"slow3@dest.test", "NOTIFY=FAILURE"}},
		body: "Subject: delayed\n\nx\n", want: 2},
	{name: "null-sender-delay", sender: "", rcpts: []oracleRcpt{{"slow9@dest.test", ""}},
		body: "Subject: a late bounce\n\nx\n", want: 0},
	{name: "double-bounce-sender", sender: "double-bounce@mx.oracle.test", rcpts: []oracleRcpt{{"bad12@dest.test", ""}},
		body: "Subject: a postmaster notice\n\nx\n", want: 0},
	{name: "bounce-bounces", sender: "rejectdata@sender.test", rcpts: []oracleRcpt{{"bad13@dest.test", ""}},
		body: "Subject: the notice to this sender fails\n\nx\n", want: 2},
	{name: "local-unknown-user", sender: "hal@sender.test",
		rcpts: []oracleRcpt{{"nosuchuser@local.test", ""}}, body: "Subject: error\n\nx\n", want: 2},
	{name: "alias", sender: "jan@sender.test",
		rcpts: []oracleRcpt{{"alias1@dest.test", ""}, {"alias2@dest.test", "ORCPT=rfc822;first@dest.test"}},
		body:  "Subject: alias\n\nx\n", want: 2},
	{name: "wrap", sender: "ivy@sender.test", rcpts: func() []oracleRcpt {
		var r []oracleRcpt
		for n := 20; n <= 140; n += 3 {
			r = append(r, oracleRcpt{fmt.Sprintf("badwrap%d@dest.test", n), ""})
		}
		return r
	}(), body: "Subject: wrap\n\nx\n", want: 2},
}

// The cases for the instance with a template file given to both, SMTPUTF8
// off, messages expiring after 2 s and Postfix's default notify_classes.
var casesTemplate = []oracleCase{
	{name: "t-7bit", sender: "jo@sender.test", mailParams: "RET=FULL BODY=7BIT",
		rcpts: []oracleRcpt{{"bad1@dest.test", ""}}, body: "Subject: seven\n\nx\n", want: 1},
	{name: "t-8bit", sender: "jo@sender.test", mailParams: "BODY=8BITMIME",
		rcpts: []oracleRcpt{{"bad2@dest.test", ""}}, body: "Subject: eight\n\n\xc3\xa9\n", want: 1},
	{name: "t-none", sender: "jo@sender.test", mailParams: "RET=HDRS",
		rcpts: []oracleRcpt{{"bad3@dest.test", ""}}, body: "Subject: none\n\nx\n", want: 1},
	{name: "t-expired", sender: "kim@sender.test",
		rcpts: []oracleRcpt{{"slow1@dest.test", ""}}, body: "Subject: expires\n\nx\n", want: 1},
	{name: "t-null-dropped", sender: "", rcpts: []oracleRcpt{{"bad4@dest.test", ""}},
		body: "Subject: dropped\n\nx\n", want: 0},
	{name: "t-success", sender: "lee@sender.test",
		rcpts: []oracleRcpt{{"good1@dest.test", "NOTIFY=SUCCESS"}}, body: "Subject: ok\n\nx\n", want: 1},
}

// templateFile uses every variable bounce(5) documents, $$ and a main.cf
// parameter.
const templateFile = `# a template file for the test
failure_template = <<EOF
Charset: us-ascii
From: MAILER-DAEMON (Test Mail System)
Subject: Test: undelivered
Postmaster-Subject: Test: postmaster copy

Host $myhostname in $mydomain ($mail_name) could not deliver.
Queue life: $maximal_queue_lifetime_seconds s = $maximal_queue_lifetime_minutes min,
$maximal_queue_lifetime_hours h, $maximal_queue_lifetime_days d, $maximal_queue_lifetime_weeks w.
Warning after: ${delay_warning_time_seconds}s. Costs $$5. Limit $bounce_size_limit.
EOF

success_template = <<END
Subject: Test: delivered

Delivered by $myhostname.
END
`

func TestOracleNotices(t *testing.T) {
	oracle.Require(t, "postfix")
	for _, tc := range []struct {
		name  string
		main  string
		files []oracle.File
		cases []oracleCase
		prose bool // compare the text part's template text too
	}{
		{name: "default", cases: casesDefault, main: `delay_warning_time = 1s
maximal_queue_lifetime = 1h
notify_classes = bounce, 2bounce, delay, resource, software
bounce_notice_recipient = pm-bounce@admin.test
2bounce_notice_recipient = pm-2bounce@admin.test
delay_notice_recipient = pm-delay@admin.test
mydestination = local.test
local_recipient_maps =
virtual_alias_maps = inline:{alias1@dest.test=bad10@dest.test, alias2@dest.test=bad11@dest.test}
`},
		{name: "template", cases: casesTemplate, prose: true, main: `smtputf8_enable = no
maximal_queue_lifetime = 2s
bounce_queue_lifetime = 2s
delay_warning_time = 0
mydomain = oracle.test
bounce_size_limit = 1000
bounce_template_file = $config_directory/bounce.cf
`, files: []oracle.File{{Name: "bounce.cf", Data: templateFile}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runOracle(t, tc.main, tc.files, tc.cases, tc.prose)
		})
	}
}

func runOracle(t *testing.T, main string, files []oracle.File, cases []oracleCase, prose bool) {
	sk := startSink(t)
	main = fmt.Sprintf("relayhost = [127.0.0.1]:%d\ndefault_transport = smtp\nrelay_transport = smtp\n"+
		"queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n", sk.Port()) + main
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main, Files: files})

	// Our settings come from the same main.cf through package config.
	cfg, err := config.Load(p.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Set("config_directory", p.ConfigDir)
	settings, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	settings.NewID = func() string { return "NOTICEID" }

	compared := 0
	defer func() { t.Logf("%d cases, %d notices compared with Postfix's", len(cases), compared) }()
	var sent []sentCase
	for i, c := range cases {
		// A recipient that takes the message and asks for nothing, so
		// the sink holds the original as Postfix queued it.
		keep := fmt.Sprintf("keep%d@keep.test", i)
		c.rcpts = append(slices.Clone(c.rcpts), oracleRcpt{keep, "NOTIFY=NEVER"})
		s := p.Session(t)
		cmds := []string{"EHLO client.example", strings.TrimSpace("MAIL FROM:<" + c.sender + "> " + c.mailParams)}
		for _, r := range c.rcpts {
			cmds = append(cmds, strings.TrimSpace("RCPT TO:<"+r.addr+"> "+r.params))
		}
		cmds = append(cmds, "DATA")
		for _, cmd := range cmds {
			if r := s.Cmd(cmd); r.Code >= 400 {
				t.Fatalf("case %s: %s: %s", c.name, cmd, r)
			}
		}
		arrival := time.Now()
		r := s.Message(c.body)
		s.Close()
		_, id, ok := strings.Cut(r.String(), "queued as ")
		if r.Code != 250 || !ok {
			t.Fatalf("case %s: end of data: %s", c.name, r)
		}
		sent = append(sent, sentCase{c, strings.TrimSpace(id), arrival})
	}

	defer func() {
		if !t.Failed() && slices.ContainsFunc(cases, func(c oracleCase) bool { return strings.HasPrefix(c.sender, "rejectdata") }) {
			compared += doubleBounce(t, sk, settings, prose)
		}
	}()
	for i, c := range sent {
		keep := fmt.Sprintf("keep%d@keep.test", i)
		orig, ok := sk.wait(30*time.Second, func(m sinkMessage) bool { return slices.Contains(m.To, keep) })
		if !ok {
			t.Fatalf("case %s: the original never reached the sink", c.name)
		}
		// Postfix's notices about this message.
		isOurs := func(m sinkMessage) bool {
			return (m.From == "" || strings.HasPrefix(m.From, "double-bounce@")) && reportedID(m.Data) == c.queueID
		}
		deadline := time.Now().Add(20 * time.Second)
		var theirs []sinkMessage
		for {
			theirs = sk.all(isOurs)
			if len(theirs) >= c.want || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if c.want == 0 {
			// Nothing may come; give Postfix the time a notice takes.
			time.Sleep(3 * time.Second)
			theirs = sk.all(isOurs)
		}
		if len(theirs) != c.want {
			t.Errorf("case %s: Postfix sent %d notices, the case expects %d", c.name, len(theirs), c.want)
		}
		ours := c.generate(t, settings, orig, sk.Port())
		if len(ours) != len(theirs) {
			t.Errorf("case %s: postkit made %d notices, Postfix sent %d", c.name, len(ours), len(theirs))
		}
		for _, n := range ours {
			var match *sinkMessage
			for k := range theirs {
				m := &theirs[k]
				if m.From == n.Sender && len(m.To) == 1 && m.To[0] == n.Recipient &&
					subjectOf(m.Data) == subjectOf(string(n.Data)) {
					match = m
				}
			}
			if match == nil {
				t.Errorf("case %s: Postfix sent no %s notice (%s) from <%s> to <%s>", c.name, n.Kind, n.Class, n.Sender, n.Recipient)
				continue
			}
			compareNotice(t, c.name+"/"+n.Kind.String()+"/"+n.Class, match.Data, string(n.Data), prose)
			compared++
		}
	}
}

// doubleBounce checks the double bounce Postfix sends when the notice to
// a sender is itself refused: the notice is the original, from the null
// sender, and goes to 2bounce_notice_recipient.
func doubleBounce(t *testing.T, sk *sink, s *Settings, prose bool) int {
	notices := sk.all(func(m sinkMessage) bool { return m.Rejected && m.From == "" })
	compared := 0
	for _, n := range notices {
		_, rest, _ := strings.Cut(n.Data, "\r\n\tid ")
		id, _, _ := strings.Cut(rest, ";")
		theirs, ok := sk.wait(20*time.Second, func(m sinkMessage) bool {
			return strings.HasPrefix(m.From, "double-bounce@") && reportedID(m.Data) == id
		})
		if !ok {
			t.Errorf("no double bounce for the refused notice %s", id)
			continue
		}
		content := strings.ReplaceAll(n.Data, "\r\n", "\n")
		rcpt := n.To[0]
		code, text, _ := strings.Cut(dataReject, " ")
		// Postfix queued its notice as 8-bit, which is what
		// Notice.Encoding says of this package's (checked below).
		m := &Message{QueueID: id, Sender: "", Arrival: time.Now(), Encoding: Encoding8Bit,
			Content: strings.NewReader(content), Size: int64(len(content)),
			Recipients: []Recipient{{Address: rcpt, Action: Failed, Status: "5.7.1", RemoteMTA: "127.0.0.1",
				DiagnosticCode: "smtp; " + dataReject,
				Reason:         fmt.Sprintf("host 127.0.0.1[127.0.0.1] said: %s %s (in reply to end of DATA command)", code, text)}}}
		ours, err := s.Notices(Failure, m)
		if err != nil || len(ours) != 1 {
			t.Fatalf("double bounce: %v %v", ours, err)
		}
		compareNotice(t, "double bounce of "+id, theirs.Data, string(ours[0].Data), prose)
		if ours[0].Encoding != Encoding8Bit || !strings.Contains(n.Data, "\r\nContent-Transfer-Encoding: 8bit\r\n") {
			t.Errorf("double bounce: the refused notice is not labelled 8bit, or ours says %d", ours[0].Encoding)
		}
		compared++
	}
	return compared
}

// generate builds the case's notices with this package, from what Postfix
// knew: the envelope, the sink's replies and the queued original.
func (c sentCase) generate(t *testing.T, s *Settings, orig sinkMessage, port int) []Notice {
	t.Helper()
	content := strings.ReplaceAll(orig.Data, "\r\n", "\n")
	m := &Message{
		QueueID: c.queueID, Arrival: c.arrival, Sender: c.sender,
		Content: strings.NewReader(content), Size: int64(len(content)),
	}
	for _, p := range strings.Fields(c.mailParams) {
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToUpper(k) {
		case "RET":
			m.Ret = map[string]Ret{"FULL": RetFull, "HDRS": RetHdrs}[v]
		case "ENVID":
			m.ENVID = v
		case "SMTPUTF8":
			m.SMTPUTF8 = true
		case "BODY":
			m.Encoding = map[string]Encoding{"7BIT": Encoding7Bit, "8BITMIME": Encoding8Bit}[v]
		}
	}
	expired := s.MaximalQueueLifetime < 10*time.Second
	aliases := map[string]string{"alias1@dest.test": "bad10@dest.test", "alias2@dest.test": "bad11@dest.test"}
	for _, r := range c.rcpts {
		rc := Recipient{Address: r.addr}
		if a, ok := aliases[r.addr]; ok {
			rc.Address, rc.Original = a, r.addr
		}
		for _, p := range strings.Fields(r.params) {
			k, v, _ := strings.Cut(p, "=")
			switch k {
			case "NOTIFY":
				n, err := ParseNotify(v)
				if err != nil {
					t.Fatal(err)
				}
				rc.Notify = n
			case "ORCPT":
				rc.ORCPT = v
			}
		}
		domain := rc.Address[strings.LastIndexByte(rc.Address, '@')+1:]
		switch {
		case domain == "local.test":
			local := r.addr[:strings.LastIndexByte(r.addr, '@')]
			rc.Action, rc.Status, rc.Reason = Failed, "5.1.1", `unknown user: "`+local+`"`
		default:
			code, text := sinkReply(rc.Address)
			dsn, _, _ := strings.Cut(text, " ")
			rc.Status, rc.RemoteMTA = dsn, "127.0.0.1"
			switch code {
			case 250:
				rc.Action = Relayed
				rc.Status = "2.0.0"
				rc.DiagnosticCode = "smtp; 250 2.0.0 Ok: queued as SINK1"
				rc.Reason = fmt.Sprintf("delivery via 127.0.0.1[127.0.0.1]:%d: 250 2.0.0 Ok: queued as SINK1", port)
			default:
				rc.Action = Failed
				if code == 450 {
					rc.Action = Delayed
					if expired {
						rc.Action = Failed
					}
				}
				rc.DiagnosticCode = fmt.Sprintf("smtp; %d %s", code, text)
				rc.Reason = fmt.Sprintf("host 127.0.0.1[127.0.0.1] said: %d %s (in reply to RCPT TO command)", code, text)
			}
		}
		m.Recipients = append(m.Recipients, rc)
	}
	var out []Notice
	for _, k := range []Kind{Failure, Delay, Success} {
		ns, err := s.Notices(k, m)
		if err != nil {
			t.Fatalf("case %s: %v", c.name, err)
		}
		out = append(out, ns...)
	}
	return out
}

// reportedID is the queue ID a notice reports on: the first
// X-Postfix-Queue-ID field (a returned notice holds another).
func reportedID(data string) string {
	_, rest, ok := strings.Cut(data, "\r\nX-Postfix-Queue-ID: ")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "\r\n")
	return id
}

func subjectOf(data string) string {
	_, rest, _ := strings.Cut(data, "\r\nSubject: ")
	s, _, _ := strings.Cut(rest, "\r\n")
	return s
}

var (
	reBoundary  = regexp.MustCompile(`boundary="([^"]+)"`)
	reDate      = regexp.MustCompile(`[A-Z][a-z]{2}, [ 0-9]\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z0-9+-]+\)`)
	reNoticeID  = regexp.MustCompile(`(?m)^(\tid )[0-9A-Za-z]+;`)
	reMessageID = regexp.MustCompile(`(?m)^(Message-Id: <)\d{14}\.[0-9A-Za-z]+@`)
	reJSONText  = regexp.MustCompile(`(?m)^ "text": .*$`)
	reText      = regexp.MustCompile(`(?s)(Content-Description: Notification\r\n[^\r]*\r\n[^\r]*\r\n\r\n).*?(\r\n<|\r\n--BOUNDARY)`)
)

// mask replaces what legitimately differs between two notices about the
// same message: dates, the notice's queue ID, the boundary's timestamp
// and, unless prose, the template text.
func mask(s string, prose bool) string {
	if m := reBoundary.FindStringSubmatch(s); m != nil {
		s = strings.ReplaceAll(s, m[1], "BOUNDARY")
	}
	s = reDate.ReplaceAllString(s, "DATE")
	s = reNoticeID.ReplaceAllString(s, "${1}NOTICEID;")
	s = reMessageID.ReplaceAllString(s, "${1}TIME.NOTICEID@")
	if !prose {
		s = reText.ReplaceAllString(s, "${1}TEMPLATE TEXT${2}")
	}
	return s
}

func compareNotice(t *testing.T, name, theirs, ours string, prose bool) {
	t.Helper()
	mt, mo := mask(theirs, prose), mask(ours, prose)
	if mt != mo {
		t.Errorf("%s: notices differ (- Postfix, + postkit):\n%s", name, oracle.Diff(mt, mo))
		return
	}
	// Both as Python's email module and go-message see them.
	dir := t.TempDir()
	pt, po := filepath.Join(dir, "postfix.eml"), filepath.Join(dir, "postkit.eml")
	os.WriteFile(pt, []byte(theirs), 0o644)
	os.WriteFile(po, []byte(ours), 0o644)
	st, errT := pythonSummary(pt)
	so, errO := pythonSummary(po)
	if errT != nil || errO != nil {
		t.Errorf("%s: Python's email module: Postfix's: %v; postkit's: %v", name, errT, errO)
		return
	}
	if !prose {
		st, so = reJSONText.ReplaceAllString(st, ""), reJSONText.ReplaceAllString(so, "")
	}
	if mask(st, prose) != mask(so, prose) {
		t.Errorf("%s: Python sees the notices differently:\n%s", name, oracle.Diff(mask(st, prose), mask(so, prose)))
	}
	gt, errT := goMessageSummary([]byte(theirs))
	gotO, errO := goMessageSummary([]byte(ours))
	if errT != nil || errO != nil {
		t.Errorf("%s: go-message: Postfix's: %v; postkit's: %v", name, errT, errO)
		return
	}
	if !bytes.Equal([]byte(mask(gt, prose)), []byte(mask(gotO, prose))) {
		t.Errorf("%s: go-message sees the notices differently:\n%s", name, oracle.Diff(mask(gt, prose), mask(gotO, prose)))
	}
}

// pythonSummary runs testdata/dsn_summary.py on a message file.
func pythonSummary(path string) (string, error) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		return "", fmt.Errorf("no %s", py)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(py, "testdata/dsn_summary.py", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%v: %s", err, stderr.String())
	}
	return string(out), nil
}

var _ = strconv.Itoa
