package pop3server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/mailbox"
)

var testMsgs = []string{
	"From: a@example.org\nSubject: one\n\nhello\n.dot line\n..two dots\nend\n",
	"From: b@example.org\r\nSubject: crlf stored\r\n\r\nline\r\nmixed\nlast",
	"Subject: no body\n",
	"Subject: three\n\nl1\nl2\nl3\nl4\n",
}

// seqUIDs opens the Maildir as IMAP would and returns its UIDVALIDITY and
// the UIDs in order.
func seqUIDs(t *testing.T, dir string) (uint32, []uint32) {
	t.Helper()
	md, err := mailbox.OpenMaildir(context.Background(), dir, mailbox.MaildirOpenOptions{ReadOnly: true, Hub: mailbox.NewHub(mailbox.HubOptions{Watch: mailbox.WatchNone})})
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for _, m := range md.Messages() {
		uids = append(uids, m.UID)
	}
	return md.UIDValidity(), uids
}

func TestTransaction(t *testing.T) {
	e := startServer(t, nil)
	e.deliver(t, "alice", testMsgs...)
	c := dial(t, e.Addr)
	c.login("alice", "secret")

	var total int
	var sizes []int
	for _, m := range testMsgs {
		// RFC 1939 11: sizes count CRLF line ends, not the stuffing nor
		// the CRLF added after an unterminated last line.
		n := len(strings.ReplaceAll(strings.ReplaceAll(m, "\r\n", "\n"), "\n", "\r\n"))
		sizes = append(sizes, n)
		total += n
	}
	if got, want := c.cmd("STAT"), fmt.Sprintf("+OK %d %d", len(testMsgs), total); got != want {
		t.Errorf("STAT = %q, want %q", got, want)
	}
	if got := c.cmd("LIST"); got != "+OK 4 messages:" {
		t.Errorf("LIST = %q", got)
	}
	var want strings.Builder
	for i, n := range sizes {
		fmt.Fprintf(&want, "%d %d\r\n", i+1, n)
	}
	if got := c.multi(); got != want.String() {
		t.Errorf("LIST body = %q, want %q", got, want.String())
	}
	if got, want := c.cmd("LIST 2"), fmt.Sprintf("+OK 2 %d", sizes[1]); got != want {
		t.Errorf("LIST 2 = %q, want %q", got, want)
	}
	validity, uids := seqUIDs(t, e.maildir("alice"))
	if got := c.cmd("UIDL"); got != "+OK" {
		t.Errorf("UIDL = %q", got)
	}
	want.Reset()
	for i, uid := range uids {
		fmt.Fprintf(&want, "%d %08x%08x\r\n", i+1, uid, validity)
	}
	if got := c.multi(); got != want.String() {
		t.Errorf("UIDL body = %q, want %q", got, want.String())
	}
	for i, m := range testMsgs {
		if got, want := c.cmd("RETR %d", i+1), fmt.Sprintf("+OK %d octets", sizes[i]); got != want {
			t.Errorf("RETR %d = %q, want %q", i+1, got, want)
		}
		if got, want := c.multi(), crlfStuffed(m); got != want {
			t.Errorf("RETR %d body = %q, want %q", i+1, got, want)
		}
	}
	for _, tc := range []struct {
		cmd, want string
	}{
		{"TOP 1 0", "From: a@example.org\r\nSubject: one\r\n\r\n"},
		{"TOP 1 2", "From: a@example.org\r\nSubject: one\r\n\r\nhello\r\n..dot line\r\n"},
		{"TOP 2 100", crlfStuffed(testMsgs[1])},
		{"TOP 3 1", "Subject: no body\r\n"},
		{"TOP 4 3", "Subject: three\r\n\r\nl1\r\nl2\r\nl3\r\n"},
	} {
		if got := c.cmd("%s", tc.cmd); got != "+OK" {
			t.Errorf("%s = %q", tc.cmd, got)
		}
		if got := c.multi(); got != tc.want {
			t.Errorf("%s body = %q, want %q", tc.cmd, got, tc.want)
		}
	}
	for _, tc := range []struct{ cmd, want string }{
		{"LIST 5", "-ERR There's no message 5."},
		{"LIST 0", "-ERR There's no message 0."},
		{"RETR x", "-ERR Invalid message number: x"},
		{"LIST 1 2", "-ERR Noise after message number: 2"},
		{"TOP 1", "-ERR Invalid arguments."},
		{"TOP 1 -1", "-ERR Invalid number of lines: -1"},
		{"USER x", "-ERR Unknown command: USER"},
		{"XYZZY", "-ERR Unknown command: XYZZY"},
		{"NOOP", "+OK"},
		{"DELE 1", "+OK Marked to be deleted."},
		{"DELE 1", "-ERR Message is deleted."},
		{"RETR 1", "-ERR Message is deleted."},
		{"STAT", fmt.Sprintf("+OK 3 %d", total-sizes[0])},
		{"RSET", "+OK"},
		{"STAT", fmt.Sprintf("+OK 4 %d", total)},
	} {
		if got := c.cmd("%s", tc.cmd); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.cmd, got, tc.want)
		}
	}
	if got := c.cmd("CAPA"); got != "+OK" {
		t.Fatalf("CAPA = %q", got)
	}
	if got, want := c.multi(), "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"; got != want {
		t.Errorf("CAPA after login = %q, want %q", got, want)
	}
	if got := c.cmd("QUIT"); got != "+OK Logging out." {
		t.Errorf("QUIT = %q", got)
	}
	// RSET forgot the retrievals: no message got the Seen flag.
	for _, f := range names(t, filepath.Join(e.maildir("alice"), "cur")) {
		if strings.HasSuffix(f, "S") {
			t.Errorf("%s marked seen after RSET", f)
		}
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestDeletionsAndSeen(t *testing.T) {
	e := startServer(t, nil)
	e.deliver(t, "alice", testMsgs...)
	cur := filepath.Join(e.maildir("alice"), "cur")

	// A dropped connection deletes nothing but keeps the Seen flags of
	// what RETR sent (Dovecot's behaviour).
	c := dial(t, e.Addr)
	c.login("alice", "secret")
	c.cmd("RETR 1")
	c.multi()
	c.cmd("DELE 2")
	c.conn.Close()
	waitFor(t, "logout", func() bool { return strings.Contains(e.Log.String(), "Disconnected: Connection closed top=0/0") })
	if n := len(names(t, cur)); n != 4 {
		t.Fatalf("after a drop %d messages remain, want 4", n)
	}
	_, uids := seqUIDs(t, e.maildir("alice"))
	md, _ := mailbox.OpenMaildir(context.Background(), e.maildir("alice"), mailbox.MaildirOpenOptions{ReadOnly: true, Hub: e.Srv.Hub})
	flags := func() []string {
		md.Sync(context.Background())
		var f []string
		for _, m := range md.Messages() {
			f = append(f, m.Flags.String())
		}
		return f
	}
	if got := flags(); strings.Join(got, ",") != "S,,," {
		t.Errorf("flags after drop = %q, want S on message 1 only", got)
	}

	// DELE + QUIT expunges, and the survivors keep their UIDs (UIDL).
	c = dial(t, e.Addr)
	c.login("alice", "secret")
	c.cmd("UIDL")
	before := c.multi()
	c.cmd("RETR 4")
	c.multi()
	c.cmd("DELE 2")
	c.cmd("DELE 3")
	if got := c.cmd("QUIT"); got != "+OK Logging out, messages deleted." {
		t.Errorf("QUIT = %q", got)
	}
	waitFor(t, "logout", func() bool { return strings.Contains(e.Log.String(), "Disconnected: Logged out") })
	if got := flags(); strings.Join(got, ",") != "S,S" {
		t.Errorf("flags after QUIT = %q, want S,S", got)
	}
	c = dial(t, e.Addr)
	c.login("alice", "secret")
	if got := c.cmd("STAT"); !strings.HasPrefix(got, "+OK 2 ") {
		t.Errorf("STAT after QUIT = %q", got)
	}
	c.cmd("UIDL")
	after := c.multi()
	bl := strings.Split(before, "\r\n")
	if want := "1 " + strings.Fields(bl[0])[1] + "\r\n2 " + strings.Fields(bl[3])[1] + "\r\n"; after != want {
		t.Errorf("UIDL after expunge = %q, want %q", after, want)
	}
	if _, u := seqUIDs(t, e.maildir("alice")); len(u) != 2 || u[0] != uids[0] || u[1] != uids[3] {
		t.Errorf("IMAP UIDs after expunge = %v (before %v)", u, uids)
	}
	c.cmd("QUIT")
	logs := e.Log.String()
	for _, re := range []string{
		`pop3-login: Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.1, mpid=\d+, secured, session=<[A-Za-z0-9+/]+>`,
		`pop3\(alice\)<\d+><[A-Za-z0-9+/]+>: Disconnected: Logged out top=0/0, retr=1/\d+, del=2/4, size=\d+`,
	} {
		if !regexp.MustCompile(re).MatchString(logs) {
			t.Errorf("log lacks %s:\n%s", re, logs)
		}
	}
}

func TestInUse(t *testing.T) {
	e := startServer(t, nil)
	e.deliver(t, "alice", testMsgs[0])
	c1 := dial(t, e.Addr)
	c1.login("alice", "secret")
	c2 := dial(t, e.Addr)
	c2.cmd("USER alice")
	if got := c2.cmd("PASS secret"); got != "-ERR [IN-USE] Mailbox is locked by another POP3 session." {
		t.Errorf("second login = %q", got)
	}
	c1.cmd("QUIT")
	waitFor(t, "logout", func() bool { return strings.Contains(e.Log.String(), "Logged out") })
	c2.cmd("USER alice")
	if got := c2.cmd("PASS secret"); got != "+OK Logged in." {
		t.Errorf("login after the first session ended = %q", got)
	}
}

func TestPlaintextPolicy(t *testing.T) {
	e := startServer(t, nil)
	e.deliver(t, "bob", testMsgs[0])
	// 127.0.0.2 -> 127.0.0.1 is not "secured": no plaintext before TLS.
	c := dialFrom(t, "127.0.0.2", e.Addr)
	c.cmd("CAPA")
	if got, want := c.multi(), "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nSASL CRAM-MD5 SCRAM-SHA-256\r\n"; got != want {
		t.Errorf("CAPA before TLS = %q, want %q", got, want)
	}
	const refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
	if got := c.cmd("USER bob"); got != refused {
		t.Errorf("USER before TLS = %q", got)
	}
	if got := c.cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00bob\x00hunter2 two"))); got != "-ERR [AUTH] Plaintext authentication disabled." {
		t.Errorf("AUTH PLAIN before TLS = %q", got)
	}
	if got := c.cmd("STLS"); got != "+OK Begin TLS negotiation now." {
		t.Fatalf("STLS = %q", got)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.br = tc, bufio.NewReader(tc)
	c.cmd("CAPA")
	if got := c.multi(); !strings.Contains(got, "USER\r\nSASL PLAIN LOGIN") || strings.Contains(got, "STLS") {
		t.Errorf("CAPA after STLS = %q", got)
	}
	if got := c.cmd("STLS"); got != "-ERR TLS is already active." {
		t.Errorf("second STLS = %q", got)
	}
	c.login("bob", "hunter2 two") // a password with a space
	c.cmd("QUIT")
	waitFor(t, "login line", func() bool { return strings.Contains(e.Log.String(), "rip=127.0.0.2, lip=127.0.0.1, mpid=") })
	if !strings.Contains(e.Log.String(), ", TLS, session=") {
		t.Errorf("login over STLS not logged with TLS:\n%s", e.Log.String())
	}

	// AllowPlaintextAuth (disable_plaintext_auth = no).
	e2 := startServer(t, func(s *Server) { s.AllowPlaintextAuth = true })
	c = dialFrom(t, "127.0.0.2", e2.Addr)
	c.login("bob", "hunter2 two")
}

func TestImplicitTLSAndSASL(t *testing.T) {
	e := startServer(t, nil)
	msg := "Subject: tls\n\nbody\n"
	e.deliver(t, "alice", msg)
	tc, err := tls.Dial("tcp", e.TLSAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	c := &client{t: t, conn: tc, br: bufio.NewReader(tc)}
	if g := c.line(); g != "+OK postkit ready." {
		t.Errorf("greeting = %q", g)
	}
	// AUTH LOGIN with challenges, then a failed and an aborted AUTH PLAIN.
	if got := c.cmd("AUTH LOGIN"); got != "+ "+base64.StdEncoding.EncodeToString([]byte("Username:")) {
		t.Fatalf("AUTH LOGIN = %q", got)
	}
	if got := c.cmd("%s", base64.StdEncoding.EncodeToString([]byte("alice"))); !strings.HasPrefix(got, "+ ") {
		t.Fatalf("LOGIN user = %q", got)
	}
	if got := c.cmd("%s", base64.StdEncoding.EncodeToString([]byte("wrong"))); got != "-ERR [AUTH] Authentication failed." {
		t.Errorf("LOGIN bad password = %q", got)
	}
	if got := c.cmd("AUTH PLAIN"); got != "+ " {
		t.Errorf("AUTH PLAIN without initial response = %q", got)
	}
	if got := c.cmd("*"); got != "-ERR Authentication aborted by client." {
		t.Errorf("cancel = %q", got)
	}
	if got := c.cmd("AUTH PLAIN !!!"); got != "-ERR [AUTH] Invalid base64 data in initial response." {
		t.Errorf("bad base64 = %q", got)
	}
	if got := c.cmd("AUTH DIGEST-MD5"); got != "-ERR [AUTH] Unsupported authentication mechanism." {
		t.Errorf("unknown mechanism = %q", got)
	}
	if got := c.cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret"))); got != "+OK Logged in." {
		t.Fatalf("AUTH PLAIN = %q", got)
	}
	c.cmd("RETR 1")
	if got := c.multi(); got != crlfStuffed(msg) {
		t.Errorf("RETR over POP3S = %q", got)
	}
	c.cmd("QUIT")
	if len(*e.Sleeps) != 1 || (*e.Sleeps)[0] != 2*time.Second {
		t.Errorf("failure delays = %v, want one of 2s (auth_failure_delay)", *e.Sleeps)
	}
}

func TestLimits(t *testing.T) {
	e := startServer(t, func(s *Server) {
		s.MaxIPConnections = 2
		s.MaxLineLength = 100
	})
	e.deliver(t, "alice", testMsgs[0])
	c1 := dial(t, e.Addr)
	c2 := dial(t, e.Addr)
	c3, err := net.Dial("tcp", e.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, _ := io.ReadAll(c3); string(got) != "-ERR [SYS/TEMP] Too many connections from your address.\r\n" {
		t.Errorf("third connection got %q", got)
	}
	// A line over the limit ends the connection.
	if got := c1.cmd("%s", "NOOP "+strings.Repeat("x", 200)); got != "-ERR Input line too long." {
		t.Errorf("long line = %q", got)
	}
	if b, _ := io.ReadAll(c1.br); len(b) != 0 {
		t.Errorf("after a long line got %q, want the connection closed", b)
	}
	// Idle: RFC 1939's autologout timer, here shortened.
	c2.conn.Close()
	eIdle := startServer(t, func(s *Server) { s.IdleTimeout = 300 * time.Millisecond })
	c2 = dial(t, eIdle.Addr)
	if got := c2.line(); got != "-ERR Disconnected for inactivity." {
		t.Errorf("idle = %q", got)
	}

	// Failed logins: delayed each time, the connection closed after three.
	e2 := startServer(t, func(s *Server) { s.MaxUserIPConnections = 1 })
	c := dial(t, e2.Addr)
	for i := 0; i < 3; i++ {
		c.cmd("USER alice")
		if got := c.cmd("PASS bad%d", i); got != "-ERR [AUTH] Authentication failed." {
			t.Errorf("bad PASS = %q", got)
		}
	}
	if b, _ := io.ReadAll(c.br); len(b) != 0 {
		t.Errorf("after 3 failures got %q, want the connection closed", b)
	}
	if len(*e2.Sleeps) != 3 {
		t.Errorf("failure delays = %v, want 3", *e2.Sleeps)
	}
	failLog := regexp.MustCompile(`pop3-login: Disconnected \(auth failed, 3 attempts in \d+ secs\): user=<alice>, method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.1, secured, session=<`)
	waitFor(t, "auth failure log", func() bool { return failLog.MatchString(e2.Log.String()) })
	// mail_max_userip_connections: a second session of alice from the
	// same address is refused before the mailbox lock is tried.
	c = dial(t, e2.Addr)
	c.login("alice", "secret")
	c4 := dial(t, e2.Addr)
	c4.cmd("USER alice")
	if got := c4.cmd("PASS secret"); !strings.HasPrefix(got, "-ERR [IN-USE] Maximum number of connections from user+IP exceeded") {
		t.Errorf("over mail_max_userip_connections = %q", got)
	}
}

func TestDefaultMailboxPath(t *testing.T) {
	for _, tc := range []struct {
		u    auth.User
		want string // "" = error
	}{
		{auth.User{Name: "a", Home: "/home/a"}, "/home/a/Maildir"},
		{auth.User{Name: "a", Home: "/home/a", Mail: "maildir:~/Mail:LAYOUT=fs"}, "/home/a/Mail"},
		{auth.User{Name: "joe@example.org", Mail: "maildir:/var/vmail/%d/%n"}, "/var/vmail/example.org/joe"},
		{auth.User{Name: "joe@example.org", Mail: "maildir:/var/vmail/%u/100%%"}, "/var/vmail/joe@example.org/100%"},
		{auth.User{Name: "../etc", Mail: "maildir:/var/vmail/%u"}, ""},
		{auth.User{Name: "..", Mail: "maildir:/var/vmail/%u"}, ""},
		{auth.User{Name: "a/b", Mail: "maildir:/var/vmail/%u"}, ""},
		{auth.User{Name: "@example.org", Mail: "maildir:/var/vmail/%d/%n"}, ""},
		{auth.User{Name: "a", Mail: "maildir:rel/%u"}, ""},
		{auth.User{Name: "a", Mail: "mbox:~/mail"}, ""},
		{auth.User{Name: "a"}, ""},
		{auth.User{Name: "a", Mail: "maildir:/x/%z"}, ""},
	} {
		got, err := DefaultMailboxPath(context.Background(), tc.u)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%+v: got %q, want an error", tc.u, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v = %q, %v; want %q", tc.u, got, err, tc.want)
		}
	}
}

// TestSTLSInjection: commands pipelined after STLS in the clear are not
// run once TLS is up (RFC 2595 / CVE-2011-0411's class of bug).
func TestSTLSInjection(t *testing.T) {
	e := startServer(t, nil)
	c := dialFrom(t, "127.0.0.2", e.Addr)
	io.WriteString(c.conn, "STLS\r\nUSER alice\r\n")
	if got := c.line(); got != "+OK Begin TLS negotiation now." {
		t.Fatalf("STLS = %q", got)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.br = tc, bufio.NewReader(tc)
	if got := c.cmd("PASS secret"); got != "-ERR No username given." {
		t.Errorf("PASS after an injected USER = %q", got)
	}
}

// TestConcurrentChanges: an IMAP session (another *Maildir) changes flags
// and expunges while POP3 holds its listing.
func TestConcurrentChanges(t *testing.T) {
	e := startServer(t, nil)
	e.deliver(t, "alice", testMsgs...)
	c := dial(t, e.Addr)
	c.login("alice", "secret")
	md, err := mailbox.OpenMaildir(context.Background(), e.maildir("alice"), mailbox.MaildirOpenOptions{Hub: e.Srv.Hub})
	if err != nil {
		t.Fatal(err)
	}
	msgs := md.Messages()
	if _, err := md.SetFlags(context.Background(), msgs[0].UID, mailbox.FlagFlagged); err != nil {
		t.Fatal(err)
	}
	if err := md.Expunge(context.Background(), msgs[1].UID); err != nil {
		t.Fatal(err)
	}
	if got := c.cmd("RETR 1"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("RETR of a renamed message = %q", got)
	}
	if got := c.multi(); got != crlfStuffed(testMsgs[0]) {
		t.Errorf("RETR 1 = %q", got)
	}
	if got := c.cmd("RETR 2"); got != "-ERR Message was expunged by another session." {
		t.Errorf("RETR of an expunged message = %q", got)
	}
	c.cmd("QUIT")
	waitFor(t, "logout", func() bool { return strings.Contains(e.Log.String(), "Logged out") })
	md.Sync(context.Background())
	if m, _ := md.Message(msgs[0].UID); m.Flags != mailbox.FlagFlagged|mailbox.FlagSeen {
		t.Errorf("flags after RETR = %v, want the IMAP flag kept and S added", m.Flags)
	}
	// A listing made while a file is being renamed finds it again.
	n, err := virtualSize(filepath.Join(e.maildir("alice"), "cur", "gone"), "gone", func() (*os.File, error) {
		f, _, err := md.Open(context.Background(), msgs[2].UID)
		return f, err
	})
	if err != nil || n != int64(len(crlfStuffed(testMsgs[2]))) {
		t.Errorf("virtualSize through reopen = %d, %v", n, err)
	}
}

// TestBadCommands: a peer that does not speak POP3 is disconnected after
// 20 unknown commands in a row; a good command resets the count.
func TestBadCommands(t *testing.T) {
	e := startServer(t, nil)
	c := dial(t, e.Addr)
	for i := 0; i < 19; i++ {
		if got := c.cmd("GET / HTTP/1.1"); got != "-ERR Unknown command." {
			t.Fatalf("bad command %d = %q", i, got)
		}
	}
	c.cmd("CAPA")
	c.multi()
	for i := 0; i < 19; i++ {
		c.cmd("\x01")
	}
	if got := c.cmd("NOOP"); got != "-ERR Unknown command." {
		t.Fatalf("20th bad command = %q", got)
	}
	if got := c.line(); got != "-ERR Too many bad commands." {
		t.Errorf("after 20 bad commands = %q", got)
	}
	if b, _ := io.ReadAll(c.br); len(b) != 0 {
		t.Errorf("connection still open: %q", b)
	}
}

func TestImplementationCapability(t *testing.T) {
	e := startServer(t, func(s *Server) { s.Implementation = "postkit"; s.Greeting = "mail.example.org ready." })
	c := dial(t, e.Addr)
	c.login("alice", "secret")
	c.cmd("CAPA")
	if got := c.multi(); !strings.HasSuffix(got, "AUTH-RESP-CODE\r\nIMPLEMENTATION postkit\r\n") {
		t.Errorf("CAPA = %q", got)
	}
	c2, err := net.Dial("tcp", e.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if g, _ := bufio.NewReader(c2).ReadString('\n'); g != "+OK mail.example.org ready.\r\n" {
		t.Errorf("greeting = %q", g)
	}
}

// TestClose: Close ends the sessions as dropped connections (no
// deletions, Seen flags kept) and Serve returns ErrServerClosed.
func TestClose(t *testing.T) {
	e := startServer(t, nil)
	e.deliver(t, "alice", testMsgs[:2]...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.Srv.Serve(ln) }()
	c := dial(t, ln.Addr().String())
	c.login("alice", "secret")
	c.cmd("RETR 1")
	c.multi()
	c.cmd("DELE 2")
	e.Srv.Close()
	if err := <-served; err != ErrServerClosed {
		t.Errorf("Serve = %v", err)
	}
	if b, _ := io.ReadAll(c.br); len(b) != 0 {
		t.Errorf("after Close got %q", b)
	}
	md, err := mailbox.OpenMaildir(context.Background(), e.maildir("alice"), mailbox.MaildirOpenOptions{ReadOnly: true, Hub: e.Srv.Hub})
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for _, m := range md.Messages() {
		flags = append(flags, m.Flags.String())
	}
	if strings.Join(flags, ",") != "S," {
		t.Errorf("after Close: flags %q, want message 1 seen and message 2 kept", flags)
	}
}
