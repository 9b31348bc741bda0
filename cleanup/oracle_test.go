package cleanup

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/corpus"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// The differential test's configuration: Postfix keeps every message in
// its hold queue (the DATA restriction), where postcat reads it; postkit
// runs the same main.cf and tables.
const oracleMain = `smtpd_data_restrictions = check_client_access static:HOLD
mynetworks = 127.0.0.0/8 192.0.2.0/24
mydestination = example.com
myorigin = example.com
virtual_alias_maps = texthash:$config_directory/virtual
canonical_maps = texthash:$config_directory/canonical
sender_canonical_maps = texthash:$config_directory/sender_canonical
masquerade_domains = sub.example.com
recipient_delimiter = +
always_bcc = archive@example.com
sender_bcc_maps = texthash:$config_directory/sender_bcc
recipient_bcc_maps = texthash:$config_directory/recipient_bcc
header_checks = regexp:$config_directory/header_checks
smtpd_sender_restrictions = check_sender_access texthash:$config_directory/sender_access
`

var oracleFiles = []oracle.File{
	{Name: "virtual", Data: "sales@example.com  ann@example.com, bob@example.net\n" +
		"info@example.com  info@example.com, carol@example.org\n" +
		"@alias.example  catch@example.com\n"},
	{Name: "canonical", Data: "joe@example.com  joe.public@example.com\nold@example.org  new@example.org\n"},
	{Name: "sender_canonical", Data: "bounce@example.com  bounces@example.com\n"},
	{Name: "sender_bcc", Data: "watched@example.com  sender-copy@example.com\n"},
	{Name: "recipient_bcc", Data: "ann@example.com  ann-copy@example.com\n"},
	{Name: "sender_access", Data: "effect-bcc@example.com  BCC copy@example.net\n" +
		"effect-redirect@example.com  REDIRECT elsewhere@example.net\n" +
		"effect-filter@example.com  FILTER smtp:[127.0.0.1]:10025\n" +
		"effect-discard@example.com  DISCARD\n"},
	{Name: "header_checks", Data: "/^X-Replace-Me:/  REPLACE X-Replaced: yes\n" +
		"/^X-Prepend-Here:/  PREPEND X-Prepended: 1\n" +
		"/^X-Ignore-Me:/  IGNORE\n" +
		"/^Subject: .*bcc me/  BCC hdr-bcc@example.com\n" +
		"/^Subject: .*redirect me/  REDIRECT redirected@example.com\n" +
		"/^Subject: .*reject me/  REJECT go away\n" +
		"/^Subject: .*defer me/  REJECT 4.7.1 later\n" +
		"/^Subject: .*discard me/  DISCARD\n"},
}

type oracleCase struct {
	name  string
	from  string
	rcpts []string // RCPT TO arguments (address and parameters)
	msg   string
}

func handCases() []oracleCase {
	r := func(s ...string) []string { return s }
	manyRcvd := strings.Repeat("Received: from a.example by b.example; Mon, 1 Jan 2024 00:00:00 +0000\n", 20)
	return []oracleCase{
		{name: "missing everything", from: "joe", rcpts: r("<user@example.net>"), msg: "Subject: bare\n\nbody\n"},
		{name: "no headers at all", from: "joe@example.com", rcpts: r("<user@example.net>"), msg: "just a body line\nand another\n"},
		{name: "null sender", from: "", rcpts: r("<user@example.net>"), msg: "Subject: bounce\n\nbody\n"},
		{name: "all present", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "Message-ID: <x1@example.com>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nFrom: Joe <joe@example.com>\nTo: user@example.net\nSubject: ok\n\nbody\n"},
		{name: "resent", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "Message-ID: <x2@example.com>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nFrom: a@example.org\nTo: b@example.org\nResent-From: joe\nResent-To: user@example.net\nSubject: fwd\n\nbody\n"},
		{name: "dropped headers", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "Return-Path: <evil@example.org>\nBcc: hidden@example.org\nContent-Length: 99\nResent-Bcc: rb@example.org\nFrom: joe\nSubject: drop\n\nbody\n"},
		{name: "many received", from: "joe@example.com", rcpts: r("<user@example.net>"), msg: manyRcvd + "Subject: hops\n\nbody\n"},
		{name: "too many hops", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: strings.Repeat("Received: from a.example by b.example; Mon, 1 Jan 2024 00:00:00 +0000\n", 49) + "Subject: loop\n\nbody\n"},
		{name: "header addresses", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "From: Joe Public <joe>\nTo: ann, \"Bob B.\" <bob@example.com>, old@example.org\nCc: x@a.sub.example.com (comment)\nReply-To: bounce@example.com\nSubject: addrs\n\nbody\n"},
		{name: "long To list", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "To: a1@example.org, a2@example.org, a3@example.org, a4@example.org, a5@example.org,\n a6@example.org, a7, a8\nSubject: list\n\nbody\n"},
		{name: "undisclosed", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "To: undisclosed-recipients:;\nSubject: u\n\nbody\n"},
		{name: "virtual list with notify", from: "joe@example.com", rcpts: r("<sales@example.com> NOTIFY=SUCCESS,FAILURE", "<sales@example.com>"),
			msg: "Subject: v\n\nbody\n"},
		{name: "virtual self and catch-all", from: "joe@example.com", rcpts: r("<info@example.com>", "<someone+tag@alias.example>", "<user@example.net> ORCPT=rfc822;orig@example.net"),
			msg: "Subject: v2\n\nbody\n"},
		{name: "canonical envelope and masquerade", from: "bounce@host.sub.example.com", rcpts: r("<joe@example.com>", "<old@example.org>", "<x@a.sub.example.com>"),
			msg: "From: bounce@host.sub.example.com\nSubject: c\n\nbody\n"},
		{name: "bcc maps", from: "watched@example.com", rcpts: r("<ann@example.com>", "<user@example.net>"), msg: "Subject: b\n\nbody\n"},
		{name: "duplicates", from: "joe@example.com", rcpts: r("<user@example.net>", "<USER@example.net>", "<user@example.net>"), msg: "Subject: d\n\nbody\n"},
		{name: "header check actions", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "X-Replace-Me: 1\nX-Prepend-Here: 2\nX-Ignore-Me: 3\nFrom: joe\nSubject: please bcc me\n\nbody\n"},
		{name: "header check redirect", from: "joe@example.com", rcpts: r("<user@example.net>", "<sales@example.com>"),
			msg: "Subject: redirect me\n\nbody\n"},
		{name: "folded and odd headers", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "Subject: folded\n  over lines\nX-Empty:\nfrom: lower case <joe>\nMESSAGE-ID:   <spaced@example.com>  \n\nbody\n.dot line\n"},
		{name: "header check reject", from: "joe@example.com", rcpts: r("<user@example.net>"), msg: "Subject: please reject me\n\nbody\n"},
		{name: "header check reject 4xx", from: "joe@example.com", rcpts: r("<user@example.net>"), msg: "Subject: defer me\n\nbody\n"},
		{name: "header check discard", from: "joe@example.com", rcpts: r("<user@example.net>"), msg: "Subject: discard me\n\nbody\n"},
		{name: "bcc only", from: "joe@example.com", rcpts: r("<user@example.net>"), msg: "Bcc: user@example.net\nSubject: b\n\nbody\n"},
		{name: "smtpd BCC", from: "effect-bcc@example.com", rcpts: r("<user@example.net>"), msg: "Subject: e\n\nbody\n"},
		{name: "smtpd REDIRECT", from: "effect-redirect@example.com", rcpts: r("<user@example.net>", "<sales@example.com>"), msg: "Subject: e\n\nbody\n"},
		{name: "smtpd FILTER", from: "effect-filter@example.com", rcpts: r("<user@example.net>"), msg: "Subject: e\n\nbody\n"},
		{name: "smtpd DISCARD", from: "effect-discard@example.com", rcpts: r("<user@example.net>"), msg: "Subject: e\n\nbody\n"},
		{name: "unchanged address header with odd spacing", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "To:   user@example.net   ,\n   other@example.org  (x)\nFrom: Joe   <joe.public@example.com>\nSubject: s\n\nbody\n"},
		{name: "mime", from: "joe@example.com", rcpts: r("<user@example.net>"),
			msg: "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\nFrom: joe\n\n--XX\nContent-Type: text/plain\nTo: not-a-header-rewrite\n\npart\n--XX--\n"},
	}
}

// postcatResult is what postcat shows of a queued message.
type postcatResult struct {
	sender     string
	redirect   string
	filter     string
	recipients []string // "orig -> rcpt notify=N orcpt=X"
	content    string
}

// parsePostcat reads "postcat -q ID" output.
func parsePostcat(out string) postcatResult {
	var r postcatResult
	var notify, orcpt, orig string
	section := ""
	var content strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "*** ") {
			section = l
			continue
		}
		if strings.Contains(section, "MESSAGE CONTENTS") {
			content.WriteString(l + "\n")
			continue
		}
		k, v, _ := strings.Cut(l, ": ")
		switch k {
		case "sender":
			r.sender = v
		case "redirect_to":
			r.redirect = v
		case "content_filter":
			r.filter = v
		case "named_attribute":
			a, b, _ := strings.Cut(v, "=")
			switch a {
			case "notify_flags":
				notify = b
			case "dsn_orig_rcpt":
				orcpt = b
			}
		case "original_recipient":
			orig = v
		case "recipient":
			r.recipients = append(r.recipients, fmt.Sprintf("%s -> %s notify=%s orcpt=%s", orig, v, notify, orcpt))
			notify, orcpt, orig = "", "", ""
		}
	}
	r.content = content.String()
	return r
}

func notifyFlags(n []string) string {
	f := 0
	for _, w := range n {
		switch strings.ToUpper(w) {
		case "NEVER":
			f |= 1
		case "SUCCESS":
			f |= 2
		case "FAILURE":
			f |= 4
		case "DELAY":
			f |= 8
		}
	}
	if f == 0 {
		return ""
	}
	return strconv.Itoa(f)
}

var (
	maskDate  = regexp.MustCompile(`[A-Z][a-z][a-z], [ 0-9]?\d [A-Z][a-z][a-z] \d{4} \d\d:\d\d:\d\d [-+]\d{4} \([A-Z]+\)`)
	maskStamp = regexp.MustCompile(`<\d{14}\.`)
	maskXID   = regexp.MustCompile(`(?m)^\tby mx.oracle.test \(Postfix\) with E?SMTP id `)
)

func maskContent(s, id string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, id, "QUEUEID")
	s = maskDate.ReplaceAllString(s, "DATE")
	s = maskStamp.ReplaceAllString(s, "<STAMP.")
	return strings.TrimSuffix(s, "\n")
}

// startOraclePostkit runs postkit's SMTP server and cleanup with the
// oracle's configuration.
func startOraclePostkit(t *testing.T, main string, rec *logRecorder) (string, *DirStore) {
	t.Helper()
	dir := t.TempDir()
	opts := oracle.PostfixOptions{Main: main, Files: oracleFiles}
	if err := oracle.WriteConfigDir(dir, opts); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "etc"))
	if err != nil {
		cfg, err = config.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	cc, err := ConfigFromMain(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cc.Logger = slog.New(rec)
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := New(cc, st)
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := smtpserver.ConfigFrom(ctx, cfg, smtpserver.RoleSMTP, restrictions.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	scfg.Handoff = cl.Handoff()
	scfg.ErrorSleepTime = -1
	srv, err := smtpserver.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), st
}

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// TestOracleCleanup sends the same messages to a private Postfix and to
// postkit (smtpserver + cleanup) and compares the queued results: the
// envelope sender, every recipient with its original address, NOTIFY and
// ORCPT, the message content (queue IDs, dates and the Message-Id
// timestamp masked) and cleanup's message-id log line.
func TestOracleCleanup(t *testing.T) {
	oracle.Require(t, "postcat")
	cases := handCases()
	for i, p := range corpusSample(t, 40) {
		cases = append(cases, oracleCase{name: fmt.Sprintf("corpus %d %s", i, filepath.Base(p)),
			from: "joe@example.com", rcpts: []string{"<sales@example.com>"}, msg: string(corpus.Message(t, p))})
	}
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: oracleMain, Files: oracleFiles})
	n := runOracleCases(t, pf, oracleMain, cases)
	// The client as a remote one (no header rewriting, no added headers).
	// Not with XCLIENT: Postfix 3.7 decides the rewriting context from
	// the connection before XCLIENT (seen with this harness).
	main2 := oracleMain + "local_header_rewrite_clients =\n"
	pf.Reconfigure(t, main2, oracleFiles)
	n2 := runOracleCases(t, pf, main2, cases)
	// The other header settings: remote_header_rewrite_domain,
	// always_add_missing_headers, undisclosed_recipients_header,
	// enable_original_recipient = no.
	main3 := main2 + "remote_header_rewrite_domain = remote.invalid\nalways_add_missing_headers = yes\n" +
		"undisclosed_recipients_header = To: undisclosed-recipients:;\nenable_original_recipient = no\n"
	pf.Reconfigure(t, main3, oracleFiles)
	n3 := runOracleCases(t, pf, main3, handCases())
	t.Logf("%d cases in 3 configurations, %d queued messages compared with Postfix", 2*len(cases)+len(handCases()), n+n2+n3)
}

func runOracleCases(t *testing.T, pf *oracle.Postfix, main string, cases []oracleCase) int {
	rec := &logRecorder{}
	addr, st := startOraclePostkit(t, main, rec)
	compared := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Postfix.
			pc := pf.Session(t)
			pc.Cmd("EHLO client.example")
			pc.Cmd("MAIL FROM:<" + tc.from + ">")
			for _, r := range tc.rcpts {
				pc.Cmd("RCPT TO:" + r)
			}
			pc.Cmd("DATA")
			wantReply := pc.Message(tc.msg)
			pc.Close()
			// postkit.
			kc := smtptest.Dial(t, addr)
			defer kc.Close()
			kc.Cmd("EHLO client.example")
			kc.Cmd("MAIL FROM:<" + tc.from + ">")
			for _, r := range tc.rcpts {
				kc.Cmd("RCPT TO:" + r)
			}
			kc.Cmd("DATA")
			gotReply := kc.Data(tc.msg)

			wr := queuedAs.ReplaceAllString(wantReply.String(), "queued as QUEUEID")
			gr := queuedAs.ReplaceAllString(gotReply.String(), "queued as QUEUEID")
			if wr != gr {
				t.Fatalf("end of data: Postfix %q, postkit %q", wr, gr)
			}
			wm := queuedAs.FindStringSubmatch(wantReply.String())
			gm := queuedAs.FindStringSubmatch(gotReply.String())
			if wm == nil || gm == nil {
				return // refused by both, the same way
			}
			res := oracle.Run(t, nil, "postcat", "-c", pf.ConfigDir, "-q", wm[1])
			ids, _ := st.List()
			if res.Code != 0 || !strings.Contains(string(res.Stdout), "*** ENVELOPE RECORDS") {
				// Not in Postfix's queue (DISCARD): not in ours either.
				if slices.Contains(ids, gm[1]) {
					t.Errorf("Postfix queued nothing (%s), postkit queued %s", res.Stderr, gm[1])
				}
				return
			}
			want := parsePostcat(string(res.Stdout))
			env, data, err := st.Read(gm[1])
			if err != nil {
				t.Fatal(err)
			}
			if env.Filter != want.filter {
				t.Errorf("filter: Postfix %q, postkit %q", want.filter, env.Filter)
			}
			if !env.Hold {
				t.Errorf("the smtpd HOLD action did not reach the envelope")
			}
			if env.Redirect != want.redirect {
				t.Errorf("redirect: Postfix %q, postkit %q", want.redirect, env.Redirect)
			}
			if env.Sender != want.sender {
				t.Errorf("sender: Postfix %q, postkit %q", want.sender, env.Sender)
			}
			var got []string
			for _, r := range env.Recipients {
				got = append(got, fmt.Sprintf("%s -> %s notify=%s orcpt=%s", r.Original, r.Addr, notifyFlags(r.Notify), r.ORCPT))
			}
			if strings.Join(got, "\n") != strings.Join(want.recipients, "\n") {
				t.Errorf("recipients:\nPostfix:\n\t%s\npostkit:\n\t%s", strings.Join(want.recipients, "\n\t"), strings.Join(got, "\n\t"))
			}
			wc, gc := maskContent(want.content, wm[1]), maskContent(string(data), gm[1])
			if wc != gc {
				t.Errorf("content differs:\n%s", oracle.Diff(wc, gc))
			}
			// cleanup's message-id line.
			wantLog := ""
			for _, l := range strings.Split(pf.Log(), "\n") {
				if i := strings.Index(l, "]: "+wm[1]+": message-id="); i >= 0 && strings.Contains(l, "postfix/cleanup[") {
					wantLog = maskContent(l[i+3:], wm[1])
				}
			}
			gotLog := ""
			for _, l := range rec.all() {
				if strings.HasPrefix(l, gm[1]+": message-id=") {
					gotLog = maskContent(l, gm[1])
				}
			}
			if wantLog != gotLog {
				t.Errorf("log: Postfix %q, postkit %q", wantLog, gotLog)
			}
			compared++
		})
	}
	return compared
}

// corpusSample picks n SpamAssassin messages spread over the corpus.
func corpusSample(t *testing.T, n int) []string {
	all := corpus.SpamAssassin(t)
	var out []string
	for i := 0; i < n && len(all) > 0; i++ {
		out = append(out, all[i*len(all)/n])
	}
	return out
}
