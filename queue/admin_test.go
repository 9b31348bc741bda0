package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// adminMsg describes a message to queue for the listing tests.
type adminMsg struct {
	sender  string
	rcpts   []string
	state   State
	reasons map[int]string // Delayed statuses by recipient index
	done    []int          // recipients Delivered
	size    int            // content size; 0: testContent
	arrival time.Time
}

// queueAdminMsg commits m into q and moves it to its state.
func queueAdminMsg(t *testing.T, q *Queue, m adminMsg) string {
	t.Helper()
	ctx := context.Background()
	env := &cleanup.Envelope{Arrival: m.arrival, Sender: m.sender, Hold: m.state == Hold}
	for _, r := range m.rcpts {
		env.Recipients = append(env.Recipients, cleanup.Recipient{Addr: r})
	}
	content := testContent
	if m.size > 0 {
		content = "Subject: x\r\n\r\n"
		content += strings.Repeat("y", m.size-len(content))
	}
	env.Size = int64(len(content))
	id := commit(t, q, content, env)
	var st []Status
	for i, r := range m.reasons {
		st = append(st, Status{Rcpt: i, Outcome: Delayed, DSN: "4.4.1", Reason: r})
	}
	for _, i := range m.done {
		st = append(st, Status{Rcpt: i, Outcome: Delivered, DSN: "2.0.0", Reason: "250 ok"})
	}
	if len(st) > 0 {
		if err := q.MarkRecipients(ctx, id, st); err != nil {
			t.Fatal(err)
		}
	}
	switch m.state {
	case Active:
		if err := q.Move(ctx, id, Active); err != nil {
			t.Fatal(err)
		}
	case Deferred:
		if err := q.Defer(ctx, id, m.arrival.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

func TestMailqFormat(t *testing.T) {
	arr := time.Date(2026, 11, 28, 6, 1, 18, 0, time.UTC)
	date := arr.In(time.Local).Format("Mon Jan _2 15:04:05")
	long := "delivery temporarily suspended: connect to mx.example.org[192.0.2.1]:25: Connection refused"
	tests := []struct {
		name string
		msgs []adminMsg
		want func(ids []string) string
	}{
		{"empty", nil, func([]string) string { return "Mail queue is empty\n" }},
		{"one held", []adminMsg{{sender: "a@example.com", rcpts: []string{"b@example.org"}, state: Hold, size: 2048, arrival: arr}},
			func(ids []string) string {
				return mailqHeader +
					fmt.Sprintf("%-17s %8d %s a@example.com\n", ids[0]+"!", 2048, date) +
					strings.Repeat(" ", 47) + "b@example.org\n\n" +
					"-- 2 Kbytes in 1 Request.\n"
			}},
		{"active, deferred with reasons, null sender, delivered left out", []adminMsg{
			{sender: "", rcpts: []string{"x@example.org"}, state: Active, size: 500, arrival: arr},
			{sender: "s@example.com", rcpts: []string{"c@example.org", "d@example.org", "e@example.org", "f@example.org"},
				state: Deferred, size: 600, arrival: arr,
				reasons: map[int]string{0: "connect to 127.0.0.1[127.0.0.1]:1: Connection refused", 1: "connect to 127.0.0.1[127.0.0.1]:1: Connection refused", 3: long},
				done:    []int{2}},
		}, func(ids []string) string {
			return mailqHeader +
				fmt.Sprintf("%-17s %8d %s MAILER-DAEMON\n", ids[0]+"*", 500, date) +
				strings.Repeat(" ", 47) + "x@example.org\n\n" +
				fmt.Sprintf("%-17s %8d %s s@example.com\n", ids[1], 600, date) +
				strings.Repeat(" ", 23) + "(connect to 127.0.0.1[127.0.0.1]:1: Connection refused)\n" +
				strings.Repeat(" ", 47) + "c@example.org\n" +
				strings.Repeat(" ", 47) + "d@example.org\n" +
				"(" + long + ")\n" +
				strings.Repeat(" ", 47) + "f@example.org\n\n" +
				"-- 1 Kbytes in 2 Requests.\n"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := openTest(t, t.TempDir(), Options{})
			var ids []string
			for _, m := range tc.msgs {
				ids = append(ids, queueAdminMsg(t, q, m))
			}
			var b bytes.Buffer
			if err := q.Mailq(context.Background(), &b); err != nil {
				t.Fatal(err)
			}
			if d := oracle.Diff(tc.want(ids), b.String()); d != "" {
				t.Errorf("mailq:\n%s\ngot:\n%s", d, b.String())
			}
		})
	}
}

func TestMailqJSONFormat(t *testing.T) {
	arr := time.Unix(1795845724, 0)
	q := openTest(t, t.TempDir(), Options{})
	id1 := queueAdminMsg(t, q, adminMsg{sender: "", rcpts: []string{"<a>&\"b\"@example.org", "c@example.org"},
		state: Deferred, size: 313, arrival: arr, reasons: map[int]string{0: "said: 451 \"try\" <later>"}})
	id2 := queueAdminMsg(t, q, adminMsg{sender: "h@example.com", rcpts: []string{"d@example.org"}, state: Hold, size: 296, arrival: arr})
	if err := q.SetAttr(context.Background(), id2, map[string]string{AttrForceExpire: "1"}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := q.MailqJSON(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	want := `{"queue_name": "deferred", "queue_id": "` + id1 + `", "arrival_time": 1795845724, "message_size": 313, "forced_expire": false, "sender": "MAILER-DAEMON", "recipients": [{"address": "<a>&\"b\"@example.org", "delay_reason": "said: 451 \"try\" <later>"}, {"address": "c@example.org"}]}
{"queue_name": "hold", "queue_id": "` + id2 + `", "arrival_time": 1795845724, "message_size": 296, "forced_expire": true, "sender": "h@example.com", "recipients": [{"address": "d@example.org"}]}
`
	if d := oracle.Diff(want, b.String()); d != "" {
		t.Errorf("postqueue -j:\n%s", d)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("not JSON: %s", line)
		}
	}
}

func TestPostcat(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	env := testEnvelope(2)
	env.Arrival = time.Date(2026, 11, 28, 6, 1, 18, 0, time.UTC)
	id := commit(t, q, testContent, env)
	if err := q.MarkRecipients(context.Background(), id, []Status{{Rcpt: 1, Outcome: Delivered}}); err != nil {
		t.Fatal(err)
	}
	header := "From: alice@example.com\nSubject: hi\n"
	body := "body line 1\nbody line 2\n"
	cat := func(o PostcatOptions) string {
		var b bytes.Buffer
		if err := q.Postcat(context.Background(), &b, id, o); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	tests := []struct {
		name string
		opts PostcatOptions
		want string
	}{
		{"-h", PostcatOptions{Header: true}, header},
		{"-b", PostcatOptions{Body: true}, "\n" + body},
		{"-h -b", PostcatOptions{Header: true, Body: true}, header + "\n" + body},
	}
	for _, tc := range tests {
		if got := cat(tc.opts); got != tc.want {
			t.Errorf("postcat %s = %q, want %q", tc.name, got, tc.want)
		}
	}
	all := cat(PostcatOptions{})
	name := "incoming/" + id
	for _, want := range []string{
		"*** ENVELOPE RECORDS " + name + " ***\n",
		fmt.Sprintf("message_size: %15d", len(testContent)),
		"message_arrival_time: " + env.Arrival.In(time.Local).Format("Mon Jan _2 15:04:05 2006") + "\n",
		"sender: alice@example.com\n",
		"recipient: rcpta@example.net\n",
		"done_recipient: rcptb@example.net\n",
		"*** MESSAGE CONTENTS " + name + " ***\n" + header + "\n" + body + "*** HEADER EXTRACTED " + name + " ***\n",
		"*** MESSAGE FILE END " + name + " ***\n",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("postcat output lacks %q:\n%s", want, all)
		}
	}
	if env := cat(PostcatOptions{Envelope: true}); strings.Contains(env, "Subject:") || !strings.Contains(env, "sender: alice") ||
		!strings.Contains(env, "*** MESSAGE CONTENTS "+name+" ***\n*** HEADER EXTRACTED "+name+" ***\n") {
		t.Errorf("postcat -e:\n%s", env)
	}
	if err := q.Postcat(context.Background(), &bytes.Buffer{}, "4Yxk3B5xWJzBq2", PostcatOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("postcat of a missing ID: %v, want ErrNotFound", err)
	}
}

// pfJSON is one postqueue -j line.
type pfJSON struct {
	QueueName    string `json:"queue_name"`
	QueueID      string `json:"queue_id"`
	ArrivalTime  int64  `json:"arrival_time"`
	MessageSize  int    `json:"message_size"`
	ForcedExpire bool   `json:"forced_expire"`
	Sender       string `json:"sender"`
	Recipients   []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// A private Postfix holds some messages and defers others (relayhost is
// a closed port); the same messages (senders, recipients, sizes, arrival
// times, deferral reasons as Postfix recorded them) are queued here, and
// postqueue -p and -j of both must be the same but for the queue IDs and
// the order of messages within a queue (Postfix's is directory order).
func TestMailqMatchesPostfix(t *testing.T) {
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: `enable_long_queue_ids = yes
smtpd_data_restrictions = check_sender_access inline:{hold@example.com=HOLD}
default_transport = smtp
relay_transport = smtp
relayhost = [127.0.0.1]:1
`})
	send := func(from string, rcpts ...string) {
		s := pf.Session(t)
		defer s.Close()
		cmds := []string{"EHLO client.example", "MAIL FROM:<" + from + ">"}
		for _, r := range rcpts {
			cmds = append(cmds, "RCPT TO:<"+r+">")
		}
		for _, c := range append(cmds, "DATA") {
			if r := s.Cmd(c); r.Code >= 400 {
				t.Fatalf("%s: %v", c, r)
			}
		}
		if r := s.Message("Subject: test\n\n" + strings.Repeat("body line\n", len(rcpts)*40)); r.Code != 250 {
			t.Fatalf("end of data: %v", r)
		}
	}
	send("hold@example.com", "a@example.org", "b@example.org")
	send("def@example.com", "c@example.org", "d@example.org")
	send("", "e@example.org")
	send("more@example.com", "f@example.org", "g@example.org", "h@example.org")
	send("hold@example.com", "i@example.org")

	pq := oracle.Require(t, "postqueue")
	run := func(arg string) string {
		r, err := oracle.Exec(pq, nil, "-c", pf.ConfigDir, arg)
		if err != nil || r.Code != 0 {
			t.Fatalf("postqueue %s: %v %d %s", arg, err, r.Code, r.Stderr)
		}
		return string(r.Stdout)
	}
	// Wait until every message is held or deferred with its reasons.
	var pfMsgs []pfJSON
	var pfJ string
	deadline := time.Now().Add(40 * time.Second)
	for {
		pfJ = run("-j")
		pfMsgs = pfMsgs[:0]
		settled := true
		for line := range strings.SplitSeq(strings.TrimSpace(pfJ), "\n") {
			var m pfJSON
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("postqueue -j line %q: %v", line, err)
			}
			pfMsgs = append(pfMsgs, m)
			if m.QueueName != "hold" && m.QueueName != "deferred" {
				settled = false
			}
		}
		if settled && len(pfMsgs) == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix's queue did not settle:\n%s", pfJ)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pfP := run("-p")

	q := openTest(t, t.TempDir(), Options{})
	idMap := map[string]string{} // ours to Postfix's
	for _, m := range pfMsgs {
		am := adminMsg{sender: m.Sender, state: State(m.QueueName), size: m.MessageSize,
			arrival: time.Unix(m.ArrivalTime, 0), reasons: map[int]string{}}
		if am.sender == "MAILER-DAEMON" {
			am.sender = ""
		}
		for i, r := range m.Recipients {
			am.rcpts = append(am.rcpts, r.Address)
			if r.DelayReason != "" {
				am.reasons[i] = r.DelayReason
			}
		}
		idMap[queueAdminMsg(t, q, am)] = m.QueueID
	}
	var b bytes.Buffer
	if err := q.Mailq(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	ours := b.String()
	for o, p := range idMap {
		// Pad or cut to the same width so the columns can be compared.
		ours = strings.ReplaceAll(ours, fmt.Sprintf("%-17s", o+"*")[:17], fmt.Sprintf("%-17s", p+"*"))
		ours = strings.ReplaceAll(ours, fmt.Sprintf("%-17s", o+"!")[:17], fmt.Sprintf("%-17s", p+"!"))
		ours = strings.ReplaceAll(ours, fmt.Sprintf("%-17s", o)[:17], fmt.Sprintf("%-17s", p))
	}
	if d := oracle.Diff(sortBlocks(pfP), sortBlocks(ours)); d != "" {
		t.Errorf("postqueue -p differs from Postfix's:\n%s\nPostfix:\n%s\npostkit:\n%s", d, pfP, ours)
	}

	b.Reset()
	if err := q.MailqJSON(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	oursJ := b.String()
	for o, p := range idMap {
		oursJ = strings.ReplaceAll(oursJ, `"queue_id": "`+o+`"`, `"queue_id": "`+p+`"`)
	}
	sortLines := func(s string) string {
		l := strings.Split(strings.TrimSpace(s), "\n")
		slices.Sort(l)
		return strings.Join(l, "\n")
	}
	if d := oracle.Diff(sortLines(pfJ), sortLines(oursJ)); d != "" {
		t.Errorf("postqueue -j differs from Postfix's:\n%s\nPostfix:\n%s\npostkit:\n%s", d, pfJ, oursJ)
	}
}

var blockHead = regexp.MustCompile(`^\S`)

// sortBlocks puts the message blocks of a postqueue -p listing in a
// fixed order, keeping the header and the total line in place.
func sortBlocks(s string) string {
	parts := strings.Split(s, "\n\n")
	if len(parts) < 2 {
		return s
	}
	head, _, _ := strings.Cut(parts[0], "\n")
	parts[0] = strings.TrimPrefix(parts[0], head+"\n")
	last := parts[len(parts)-1]
	blocks := parts[:len(parts)-1]
	slices.SortFunc(blocks, func(a, b string) int {
		// By queue (mark) and then text: Postfix lists state by state.
		return strings.Compare(stateKey(a)+a, stateKey(b)+b)
	})
	return head + "\n" + strings.Join(blocks, "\n\n") + "\n\n" + last
}

func stateKey(block string) string {
	if !blockHead.MatchString(block) {
		return "?"
	}
	id, _, _ := strings.Cut(block, " ")
	switch {
	case strings.HasSuffix(id, "*"):
		return "1"
	case strings.HasSuffix(id, "!"):
		return "3"
	}
	return "2"
}

// postcat -h, -b and -h -b print exactly what Postfix's postcat prints
// for the same content, and postcat -e has Postfix's section markers and
// the same sender, recipient, size and arrival records.
func TestPostcatMatchesPostfix(t *testing.T) {
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: `enable_long_queue_ids = yes
smtpd_data_restrictions = check_sender_access inline:{hold@example.com=HOLD}
`})
	msgs := []string{
		"Subject: x\nX-A: b\n  folded\n\nbody1\n\nbody3\n",
		"Subject: no body\n",
		"Subject: empty lines\n\n\n\n",
		"Subject: long\n\n" + strings.Repeat("0123456789", 90) + "\nend\n",
	}
	queuedAs := regexp.MustCompile(`queued as (\S+)`)
	q := openTest(t, t.TempDir(), Options{})
	for i, text := range msgs {
		s := pf.Session(t)
		for _, c := range []string{"EHLO client.example", "MAIL FROM:<hold@example.com>", "RCPT TO:<a@example.org>", "DATA"} {
			if r := s.Cmd(c); r.Code >= 400 {
				t.Fatalf("%s: %v", c, r)
			}
		}
		r := s.Message(text)
		s.Close()
		m := queuedAs.FindStringSubmatch(strings.Join(r.Lines, " "))
		if r.Code != 250 || m == nil {
			t.Fatalf("end of data: %v", r)
		}
		pfID := m[1]
		postcat := func(args ...string) string {
			res := pf.Postcat(t, append(args, "-q", pfID)...)
			if res.Code != 0 {
				t.Fatalf("postcat %v: %s", args, res.Stderr)
			}
			return string(res.Stdout)
		}
		full := postcat("-h", "-b")
		var arrival time.Time
		for l := range strings.SplitSeq(postcat("-e"), "\n") {
			if v, ok := strings.CutPrefix(l, "message_arrival_time: "); ok {
				var err error
				if arrival, err = time.ParseInLocation("Mon Jan _2 15:04:05 2006", v, time.Local); err != nil {
					t.Fatal(err)
				}
			}
		}
		content := strings.ReplaceAll(full, "\n", "\r\n")
		env := &cleanup.Envelope{Arrival: arrival, Sender: "hold@example.com", Hold: true, Size: int64(len(content)),
			Recipients: []cleanup.Recipient{{Addr: "a@example.org", Original: "a@example.org"}}}
		id := commit(t, q, content, env)
		for _, opts := range []struct {
			args []string
			o    PostcatOptions
		}{
			{[]string{"-h"}, PostcatOptions{Header: true}},
			{[]string{"-b"}, PostcatOptions{Body: true}},
			{[]string{"-h", "-b"}, PostcatOptions{Header: true, Body: true}},
			{[]string{"-e"}, PostcatOptions{Envelope: true}},
		} {
			want := postcat(opts.args...)
			var b bytes.Buffer
			if err := q.Postcat(context.Background(), &b, id, opts.o); err != nil {
				t.Fatal(err)
			}
			got := strings.ReplaceAll(b.String(), id, pfID)
			if opts.o.Envelope {
				// Postkit's envelope is not Postfix's record for record:
				// compare the records both have.
				keep := func(s string) string {
					var out []string
					for l := range strings.SplitSeq(s, "\n") {
						if strings.HasPrefix(l, "***") || strings.HasPrefix(l, "sender:") ||
							strings.HasPrefix(l, "recipient:") || strings.HasPrefix(l, "original_recipient:") ||
							strings.HasPrefix(l, "message_arrival_time:") {
							out = append(out, l)
						}
						if f := strings.Fields(l); len(f) == 7 && f[0] == "message_size:" {
							out = append(out, f[0]+" "+f[3]) // recipient count
						}
					}
					return strings.Join(out, "\n")
				}
				if !strings.Contains(got, fmt.Sprintf("message_size: %15d ", len(content))) {
					t.Errorf("message %d: our message_size is not the content size %d:\n%s", i, len(content), got)
				}
				if !strings.Contains(want, fmt.Sprintf("message_size: %15d ", recordSize(full))) {
					t.Errorf("message %d: Postfix's message_size is not %d (its record bytes):\n%s", i, recordSize(full), want)
				}
				want, got = keep(want), keep(got)
			}
			if d := oracle.Diff(want, got); d != "" {
				t.Errorf("message %d, postcat %v:\n%s\nPostfix:\n%s\npostkit:\n%s", i, opts.args, d, want, got)
			}
		}
	}
}

// recordSize is the size of text (LF lines) in Postfix's queue file
// records, which Postfix reports as message_size: per line a type byte,
// the length in 7-bit groups, and the text. For lines under 128 bytes
// that equals the line with CRLF, postkit's content size.
func recordSize(text string) int {
	n := 0
	for l := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		n += 1 + len(l)
		for v := len(l); ; v >>= 7 {
			n++
			if v < 128 {
				break
			}
		}
	}
	return n
}
