package auth

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// dvTestBackend is a small DovecotBackend for the protocol tests,
// independent of the package's Authenticator: users with plain passwords,
// "tempuser" whose lookup fails temporarily, PLAIN and LOGIN behaving as
// Dovecot's do (same challenges, same failures), so that its transcripts
// can be compared with a real Dovecot's.
type dvTestBackend struct {
	users map[string]string
	mechs []string
	// block, when set, makes every exchange wait for it (or for its
	// context) before answering.
	block chan struct{}

	mu    sync.Mutex
	reqs  []DovecotRequest // StartMech's requests (dvRecordingBackend)
	infos []ClientInfo     // the ClientInfo of each password check's context
}

func newDvTestBackend() *dvTestBackend {
	return &dvTestBackend{
		users: map[string]string{"alice": "secret", "al\tice": "tab"},
		mechs: []string{"PLAIN", "LOGIN"},
	}
}

func (b *dvTestBackend) Mechanisms(SecurityOptions) []string { return b.mechs }

func (b *dvTestBackend) NewMech(name string) (ServerMech, error) {
	switch name {
	case "PLAIN":
		return &dvTestPlain{b: b}, nil
	case "LOGIN":
		return &dvTestLogin{b: b}, nil
	}
	return nil, fmt.Errorf("mechanism %s: %w", name, ErrMechanism)
}

func (b *dvTestBackend) check(ctx context.Context, user, pass string) error {
	info, _ := ClientInfoFrom(ctx)
	b.mu.Lock()
	b.infos = append(b.infos, info)
	b.mu.Unlock()
	if b.block != nil {
		select {
		case <-b.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if user == "tempuser" {
		return fmt.Errorf("lookup %s: %w", user, ErrTemporary)
	}
	want, ok := b.users[user]
	if !ok {
		return ErrUnknownUser
	}
	if want != pass {
		return ErrBadPassword
	}
	return nil
}

type dvTestPlain struct {
	b    *dvTestBackend
	user string
}

func (m *dvTestPlain) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if resp == nil {
		return []byte{}, false, nil
	}
	f := bytes.Split(resp, []byte{0})
	if len(f) != 3 || len(f[1]) == 0 {
		return nil, false, ErrMechanism
	}
	m.user = string(f[1])
	if len(f[0]) > 0 && string(f[0]) != m.user {
		return nil, false, ErrBadPassword
	}
	if err := m.b.check(ctx, m.user, string(f[2])); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}

func (m *dvTestPlain) User() string { return m.user }

type dvTestLogin struct {
	b     *dvTestBackend
	step  int
	user  string
	final bool
}

func (m *dvTestLogin) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	m.step++
	switch {
	case m.step == 1 && resp == nil:
		return []byte("Username:"), false, nil
	case m.step == 1 || m.step == 2 && m.user == "":
		// The initial response, or the answer to "Username:".
		m.user = string(resp)
		m.step = 2
		return []byte("Password:"), false, nil
	}
	if err := m.b.check(ctx, m.user, string(resp)); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}

func (m *dvTestLogin) User() string { return m.user }

// startDvTestServer serves backend on a fresh UNIX socket and returns its
// path. The socket lives in a short directory: t.TempDir() paths can pass
// the 108-byte limit of socket addresses.
func startDvTestServer(t testing.TB, srv *DovecotServer) string {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = dvQuietLog
	}
	dir, err := os.MkdirTemp("", "dvs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "auth")
	ln, err := ListenDovecotUnix(path, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	return path
}

// dvRawConn is a test client that speaks the protocol line by line.
type dvRawConn struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dvDialRaw(t testing.TB, path string) *dvRawConn {
	t.Helper()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &dvRawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *dvRawConn) send(lines ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, strings.Join(lines, "\n")+"\n"); err != nil {
		c.t.Fatalf("send %q: %v", lines, err)
	}
}

// recv returns the next line, or "EOF" when the server closed the
// connection, or "TIMEOUT" when nothing came within d.
func (c *dvRawConn) recv(d time.Duration) string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(d))
	line, err := c.r.ReadString('\n')
	var ne net.Error
	switch {
	case err == nil:
		return strings.TrimSuffix(line, "\n")
	case errors.As(err, &ne) && ne.Timeout():
		return "TIMEOUT"
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded):
		return "EOF"
	}
	if strings.Contains(err.Error(), "connection reset") {
		return "EOF"
	}
	c.t.Fatalf("recv: %v", err)
	return ""
}

// handshake sends the client handshake and returns the server's lines up
// to DONE.
func (c *dvRawConn) handshake() []string {
	c.t.Helper()
	c.send("VERSION\t1\t0", "CPID\t4242")
	var lines []string
	for {
		l := c.recv(5 * time.Second)
		if l == "EOF" || l == "TIMEOUT" {
			c.t.Fatalf("handshake: %s after %q", l, lines)
		}
		lines = append(lines, l)
		if l == "DONE" {
			return lines
		}
	}
}

// dvQuietLog keeps the expected protocol errors out of the test output.
var dvQuietLog = slog.New(slog.DiscardHandler)

func dvB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDovecotEscape(t *testing.T) {
	for _, c := range []struct{ in, esc string }{
		{"plain", "plain"},
		{"a\tb", "a\x01tb"},
		{"\x01", "\x011"},
		{"cr\rlf\n", "cr\x01rlf\x01n"},
		{"nul\x00", "nul\x010"},
		{"\x02\x0b\x0c", "\x02\x0b\x0c"}, // other control characters pass
		{"ü\t", "ü\x01t"},
	} {
		if got := dovecotEscape(c.in); got != c.esc {
			t.Errorf("dovecotEscape(%q) = %q, want %q", c.in, got, c.esc)
		}
		if got := dovecotUnescape(c.esc); got != c.in {
			t.Errorf("dovecotUnescape(%q) = %q, want %q", c.esc, got, c.in)
		}
	}
	// Dovecot's str_tabunescape: an unknown escape is the character
	// itself, a trailing escape character is dropped.
	for in, want := range map[string]string{"a\x01xb": "axb", "end\x01": "end", "\x01\x01": "\x01"} {
		if got := dovecotUnescape(in); got != want {
			t.Errorf("dovecotUnescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDovecotServerHandshake(t *testing.T) {
	b := newDvTestBackend()
	b.mechs = []string{"PLAIN", "LOGIN", "CRAM-MD5", "X-CUSTOM"}
	path := startDvTestServer(t, &DovecotServer{Backend: b})
	c := dvDialRaw(t, path)
	lines := c.handshake()
	want := []string{"VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "MECH\tLOGIN\tplaintext",
		"MECH\tCRAM-MD5\tdictionary\tactive", "MECH\tX-CUSTOM"}
	if len(lines) != len(want)+4 || !slices.Equal(lines[:len(want)], want) {
		t.Fatalf("handshake = %q, want %q then SPID, CUID, COOKIE, DONE", lines, want)
	}
	if !strings.HasPrefix(lines[len(want)], fmt.Sprintf("SPID\t%d", os.Getpid())) ||
		!strings.HasPrefix(lines[len(want)+1], "CUID\t") ||
		len(strings.TrimPrefix(lines[len(want)+2], "COOKIE\t")) != 32 {
		t.Errorf("SPID/CUID/COOKIE lines = %q", lines[len(want):])
	}
	// A second connection gets another CUID and another cookie.
	c2 := dvDialRaw(t, path)
	lines2 := c2.handshake()
	if lines2[len(want)+1] == lines[len(want)+1] || lines2[len(want)+2] == lines[len(want)+2] {
		t.Errorf("two connections share CUID or COOKIE: %q, %q", lines[len(want):], lines2[len(want):])
	}
}

// TestDovecotServerDialogue runs scripted dialogues against the server:
// each step sends lines and expects replies. The expected replies are what
// Dovecot 2.3.19 answers to the same lines with the same users
// (TestDovecotServerMatchesDovecot checks that against a running Dovecot).
func TestDovecotServerDialogue(t *testing.T) {
	path := startDvTestServer(t, &DovecotServer{Backend: newDvTestBackend()})
	for _, d := range dovecotDialogues {
		t.Run(d.name, func(t *testing.T) {
			c := dvDialRaw(t, path)
			c.handshake()
			for _, st := range d.steps {
				c.send(st.send...)
				c.expect(st)
				if st.silent {
					if got := c.recv(200 * time.Millisecond); got != "TIMEOUT" {
						t.Fatalf("after %q: got %q, want no reply", st.send, got)
					}
				}
			}
		})
	}
}

// expect reads as many lines as the step wants replies and compares them
// in any order: replies to concurrent requests may come in any order.
func (c *dvRawConn) expect(st dvStep) {
	c.t.Helper()
	var got []string
	for range st.want {
		got = append(got, c.recv(5*time.Second))
	}
	g, w := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(st.want))
	if !slices.Equal(g, w) {
		c.t.Fatalf("after %q: got %q, want %q", st.send, got, st.want)
	}
}

type dvStep struct {
	send   []string
	want   []string
	silent bool // nothing more comes (the connection stays open)
}

// dovecotDialogues are client dialogues after the handshake. Requests
// carry no-penalty, so that Dovecot answers them without its failure
// penalty delay.
var dovecotDialogues = []struct {
	name  string
	steps []dvStep
}{
	{"plain ok", []dvStep{{
		send: []string{"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=\trip=127.0.0.1\tno-penalty\tresp=" + dvB64("\x00alice\x00secret")},
		want: []string{"OK\t1\tuser=alice"},
	}}},
	{"plain authzid same user", []dvStep{{
		send: []string{"AUTH\t7\tPLAIN\tservice=smtp\tno-penalty\tresp=" + dvB64("alice\x00alice\x00secret")},
		want: []string{"OK\t7\tuser=alice"},
	}}},
	{"plain bad password", []dvStep{{
		send: []string{"AUTH\t2\tPLAIN\tservice=smtp\tno-penalty\tresp=" + dvB64("\x00alice\x00wrong")},
		want: []string{"FAIL\t2\tuser=alice"},
	}}},
	{"plain unknown user", []dvStep{{
		send: []string{"AUTH\t3\tplain\tservice=imap\tno-penalty\tresp=" + dvB64("\x00nobody\x00wrong")},
		want: []string{"FAIL\t3\tuser=nobody"},
	}}},
	{"plain temporary failure", []dvStep{{
		send: []string{"AUTH\t4\tPLAIN\tservice=smtp\tno-penalty\tresp=" + dvB64("\x00tempuser\x00x")},
		want: []string{"FAIL\t4\tuser=tempuser\tcode=temp_fail"},
	}}},
	{"plain malformed", []dvStep{{
		send: []string{"AUTH\t5\tPLAIN\tservice=smtp\tno-penalty\tresp=" + dvB64("alice-secret")},
		want: []string{"FAIL\t5"},
	}}},
	{"plain empty initial response", []dvStep{{
		send: []string{"AUTH\t5\tPLAIN\tservice=smtp\tno-penalty\tresp=="},
		want: []string{"FAIL\t5"},
	}}},
	{"plain without initial response", []dvStep{
		{send: []string{"AUTH\t8\tPLAIN\tservice=smtp\tno-penalty"}, want: []string{"CONT\t8\t"}},
		{send: []string{"CONT\t8\t" + dvB64("\x00alice\x00secret")}, want: []string{"OK\t8\tuser=alice"}},
	}},
	{"plain empty resp is no initial response", []dvStep{
		{send: []string{"AUTH\t8\tPLAIN\tservice=smtp\tno-penalty\tresp="}, want: []string{"CONT\t8\t"}},
	}},
	{"user name with tab", []dvStep{{
		send: []string{"AUTH\t9\tPLAIN\tservice=smtp\tno-penalty\tresp=" + dvB64("\x00al\tice\x00bad")},
		want: []string{"FAIL\t9\tuser=al\x01tice"},
	}}},
	{"login", []dvStep{
		{send: []string{"AUTH\t10\tLOGIN\tservice=smtp\tno-penalty"}, want: []string{"CONT\t10\t" + dvB64("Username:")}},
		{send: []string{"CONT\t10\t" + dvB64("alice")}, want: []string{"CONT\t10\t" + dvB64("Password:")}},
		{send: []string{"CONT\t10\t" + dvB64("secret")}, want: []string{"OK\t10\tuser=alice"}},
	}},
	{"login bad password", []dvStep{
		{send: []string{"AUTH\t10\tLOGIN\tservice=smtp\tno-penalty"}, want: []string{"CONT\t10\t" + dvB64("Username:")}},
		{send: []string{"CONT\t10\t" + dvB64("alice")}, want: []string{"CONT\t10\t" + dvB64("Password:")}},
		{send: []string{"CONT\t10\t" + dvB64("nope")}, want: []string{"FAIL\t10\tuser=alice"}},
	}},
	{"login initial response is the user name", []dvStep{
		{send: []string{"AUTH\t10\tLOGIN\tservice=smtp\tno-penalty\tresp=" + dvB64("alice")}, want: []string{"CONT\t10\t" + dvB64("Password:")}},
		{send: []string{"CONT\t10\t" + dvB64("secret")}, want: []string{"OK\t10\tuser=alice"}},
	}},
	{"interleaved requests", []dvStep{
		{send: []string{"AUTH\t11\tLOGIN\tservice=smtp\tno-penalty", "AUTH\t12\tLOGIN\tservice=smtp\tno-penalty"},
			want: []string{"CONT\t11\t" + dvB64("Username:"), "CONT\t12\t" + dvB64("Username:")}},
		{send: []string{"CONT\t12\t" + dvB64("alice")}, want: []string{"CONT\t12\t" + dvB64("Password:")}},
		{send: []string{"CONT\t11\t" + dvB64("alice")}, want: []string{"CONT\t11\t" + dvB64("Password:")}},
		{send: []string{"CONT\t11\t" + dvB64("bad")}, want: []string{"FAIL\t11\tuser=alice"}},
		{send: []string{"CONT\t12\t" + dvB64("secret")}, want: []string{"OK\t12\tuser=alice"}},
	}},
	{"largest id", []dvStep{{
		send: []string{"AUTH\t4294967295\tPLAIN\tservice=smtp\tno-penalty\tresp=" + dvB64("\x00alice\x00secret")},
		want: []string{"OK\t4294967295\tuser=alice"},
	}}},
	{"id reused after the request finished", []dvStep{
		{send: []string{"AUTH\t1\tPLAIN\tservice=smtp\tno-penalty\tresp=" + dvB64("\x00alice\x00secret")}, want: []string{"OK\t1\tuser=alice"}},
		{send: []string{"AUTH\t1\tPLAIN\tservice=smtp\tno-penalty\tresp=" + dvB64("\x00alice\x00secret")}, want: []string{"OK\t1\tuser=alice"}},
	}},
	{"invalid base64 in initial response", []dvStep{{
		send: []string{"AUTH\t6\tPLAIN\tservice=smtp\tno-penalty\tresp=!!!"},
		want: []string{"FAIL\t6\tcode=invalid_base64\treason=Invalid base64 data in initial response"},
	}}},
	{"invalid base64 in continuation", []dvStep{
		{send: []string{"AUTH\t13\tLOGIN\tservice=smtp\tno-penalty"}, want: []string{"CONT\t13\t" + dvB64("Username:")}},
		{send: []string{"CONT\t13\t!!"}, want: []string{"FAIL\t13\tcode=invalid_base64\treason=Invalid base64 data in continued response"}},
		{send: []string{"CONT\t13\t" + dvB64("alice")}, want: []string{"FAIL\t13\treason=Authentication request timed out"}},
	}},
	{"continuation of an unknown request", []dvStep{{
		send: []string{"CONT\t99\tAAAA"},
		want: []string{"FAIL\t99\treason=Authentication request timed out"},
	}}},
	{"cancel", []dvStep{
		{send: []string{"AUTH\t14\tLOGIN\tservice=smtp\tno-penalty"}, want: []string{"CONT\t14\t" + dvB64("Username:")}},
		{send: []string{"CANCEL\t14"}, silent: true},
		{send: []string{"CONT\t14\t" + dvB64("alice")}, want: []string{"FAIL\t14\treason=Authentication request timed out"}},
	}},
	{"cancel of an unknown request", []dvStep{{send: []string{"CANCEL\t15"}, silent: true}}},
	// Client errors Dovecot treats as bugs: it closes the connection.
	{"duplicate id", []dvStep{
		{send: []string{"AUTH\t16\tLOGIN\tservice=smtp\tno-penalty"}, want: []string{"CONT\t16\t" + dvB64("Username:")}},
		{send: []string{"AUTH\t16\tPLAIN\tservice=smtp\tno-penalty\tresp=" + dvB64("\x00alice\x00secret")}, want: []string{"EOF"}},
	}},
	{"id not a number", []dvStep{{send: []string{"AUTH\t1x\tPLAIN\tservice=smtp"}, want: []string{"EOF"}}}},
	{"id zero", []dvStep{{send: []string{"AUTH\t0\tPLAIN\tservice=smtp\tresp=" + dvB64("\x00alice\x00secret")}, want: []string{"EOF"}}}},
	{"id beyond 32 bits", []dvStep{{send: []string{"AUTH\t4294967296\tPLAIN\tservice=smtp"}, want: []string{"EOF"}}}},
	{"no service", []dvStep{{send: []string{"AUTH\t1\tPLAIN\tresp=" + dvB64("\x00alice\x00secret")}, want: []string{"EOF"}}}},
	{"no mechanism", []dvStep{{send: []string{"AUTH\t1"}, want: []string{"EOF"}}}},
	{"unknown mechanism", []dvStep{{send: []string{"AUTH\t1\tXYZ\tservice=smtp"}, want: []string{"EOF"}}}},
	{"parameters after resp", []dvStep{{
		send: []string{"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + dvB64("\x00alice\x00secret") + "\tfoo=bar"},
		want: []string{"EOF"},
	}}},
	{"unknown command", []dvStep{{send: []string{"FOO\t1"}, want: []string{"EOF"}}}},
}

func TestDovecotServerHandshakeErrors(t *testing.T) {
	path := startDvTestServer(t, &DovecotServer{Backend: newDvTestBackend()})
	for _, c := range []struct {
		name string
		send []string
	}{
		{"wrong major version", []string{"VERSION\t2\t0"}},
		{"no version", []string{"CPID\t1"}},
		{"request before CPID", []string{"VERSION\t1\t2", "AUTH\t1\tPLAIN\tservice=smtp"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := dvDialRaw(t, path)
			rc.send(c.send...)
			for {
				l := rc.recv(5 * time.Second)
				if l == "EOF" {
					break
				}
				if l == "TIMEOUT" || strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "FAIL") || strings.HasPrefix(l, "CONT") {
					t.Fatalf("got %q, want the connection closed after the handshake lines", l)
				}
			}
		})
	}
}

func TestDovecotServerLongLine(t *testing.T) {
	path := startDvTestServer(t, &DovecotServer{Backend: newDvTestBackend()})
	c := dvDialRaw(t, path)
	c.handshake()
	// The longest line accepted: an AUTH whose resp= brings it to the
	// limit.
	head := "AUTH\t1\tPLAIN\tservice=smtp\tresp="
	pw := strings.Repeat("x", base64.StdEncoding.DecodedLen(dovecotMaxLine-len(head))-len("\x00alice\x00"))
	line := head + dvB64("\x00alice\x00"+pw)
	if len(line) > dovecotMaxLine {
		t.Fatalf("test line %d bytes", len(line))
	}
	c.send(line)
	if got := c.recv(5 * time.Second); got != "FAIL\t1\tuser=alice" {
		t.Fatalf("line of %d bytes: got %q", len(line), got)
	}
	c.send(head + strings.Repeat("A", dovecotMaxLine))
	if got := c.recv(5 * time.Second); got != "EOF" {
		t.Fatalf("overlong line: got %q, want the connection closed", got)
	}
}

func TestDovecotServerMaxRequests(t *testing.T) {
	b := newDvTestBackend()
	path := startDvTestServer(t, &DovecotServer{Backend: b, MaxRequests: 2})
	c := dvDialRaw(t, path)
	c.handshake()
	c.send("AUTH\t1\tLOGIN\tservice=smtp", "AUTH\t2\tLOGIN\tservice=smtp")
	c.recv(5 * time.Second)
	c.recv(5 * time.Second)
	c.send("AUTH\t3\tLOGIN\tservice=smtp")
	if got := c.recv(5 * time.Second); got != "FAIL\t3\tcode=temp_fail\treason=Too many concurrent requests" {
		t.Fatalf("third request: %q", got)
	}
	// Finishing one makes room.
	c.send("CANCEL\t1", "AUTH\t3\tLOGIN\tservice=smtp")
	if got := c.recv(5 * time.Second); got != "CONT\t3\t"+dvB64("Username:") {
		t.Fatalf("after cancel: %q", got)
	}
}

func TestDovecotServerRequestTimeout(t *testing.T) {
	b := newDvTestBackend()
	path := startDvTestServer(t, &DovecotServer{Backend: b, RequestTimeout: 50 * time.Millisecond})
	c := dvDialRaw(t, path)
	c.handshake()
	c.send("AUTH\t1\tLOGIN\tservice=smtp")
	c.recv(5 * time.Second)
	// No reply comes for a request that timed out (as Dovecot's
	// auth_request_timeout), and the late continuation is refused.
	if got := c.recv(300 * time.Millisecond); got != "TIMEOUT" {
		t.Fatalf("got %q, want nothing", got)
	}
	c.send("CONT\t1\t" + dvB64("alice"))
	if got := c.recv(5 * time.Second); got != "FAIL\t1\treason=Authentication request timed out" {
		t.Fatalf("late continuation: %q", got)
	}
}

// A request waiting for a slow backend must not hold up the others on the
// same connection, and CANCEL must reach the backend's context.
func TestDovecotServerConcurrentRequests(t *testing.T) {
	b := newDvTestBackend()
	b.block = make(chan struct{})
	srv := &DovecotServer{Backend: b}
	path := startDvTestServer(t, srv)
	c := dvDialRaw(t, path)
	c.handshake()
	c.send("AUTH\t1\tPLAIN\tservice=smtp\tresp="+dvB64("\x00alice\x00secret"),
		"AUTH\t2\tLOGIN\tservice=smtp")
	if got := c.recv(5 * time.Second); got != "CONT\t2\t"+dvB64("Username:") {
		t.Fatalf("second request while the first waits: %q", got)
	}
	c.send("CANCEL\t1")
	// The blocked exchange sees its context cancelled and its reply is
	// dropped.
	if got := c.recv(300 * time.Millisecond); got != "TIMEOUT" {
		t.Fatalf("after cancel: %q", got)
	}
	c.send("AUTH\t3\tPLAIN\tservice=smtp\tresp=" + dvB64("\x00alice\x00secret"))
	close(b.block)
	if got := c.recv(5 * time.Second); got != "OK\t3\tuser=alice" {
		t.Fatalf("third request: %q", got)
	}
}

// dvRecordingBackend records the requests it gets through StartMech.
type dvRecordingBackend struct{ *dvTestBackend }

func (b dvRecordingBackend) StartMech(ctx context.Context, mech string, req *DovecotRequest) (ServerMech, error) {
	b.mu.Lock()
	b.reqs = append(b.reqs, *req)
	b.mu.Unlock()
	return b.NewMech(mech)
}

func TestDovecotClientServer(t *testing.T) {
	b := dvRecordingBackend{newDvTestBackend()}
	path := startDvTestServer(t, &DovecotServer{Backend: b})
	ctx := context.Background()
	cl, err := DialDovecot(ctx, "unix", path, &DovecotClientOptions{Logger: dvQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.Mechanisms(SecurityOptions{}); !slices.Equal(got, []string{"PLAIN", "LOGIN"}) {
		t.Errorf("Mechanisms = %q", got)
	}

	req := DovecotRequest{
		ClientInfo: ClientInfo{Service: "imap", LocalAddr: netip.MustParseAddrPort("192.0.2.1:143"),
			RemoteAddr: netip.MustParseAddrPort("[2001:db8::7]:50123"), Secured: true, Session: "s\t1"},
		ValidClientCert: true, NoPenalty: true,
		Params: map[string]string{"local_name": "mx.example", "debug": ""},
	}
	user, err := cl.Verify(ctx, req, "alice", "secret")
	if err != nil || user != "alice" {
		t.Fatalf("Verify(alice, secret) = %q, %v", user, err)
	}
	b.mu.Lock()
	got := b.reqs[0]
	b.mu.Unlock()
	wantParams := map[string]string{"service": "imap", "lip": "192.0.2.1", "rip": "2001:db8::7",
		"lport": "143", "rport": "50123", "secured": "", "valid-client-cert": "", "no-penalty": "",
		"session": "s\t1", "local_name": "mx.example", "debug": ""}
	want := req
	want.Params = wantParams
	if !reflect.DeepEqual(got, want) {
		t.Errorf("server got request\n%+v, want\n%+v", got, want)
	}

	b.mu.Lock()
	gotInfo := b.infos[0]
	b.mu.Unlock()
	if gotInfo != req.ClientInfo {
		t.Errorf("the exchange's context has ClientInfo %+v, want %+v", gotInfo, req.ClientInfo)
	}

	// NewMech, as an SMTP server uses a backend: the connection details
	// come from the context.
	info := ClientInfo{Service: "submission", LocalAddr: netip.MustParseAddrPort("[::1]:587"),
		RemoteAddr: netip.MustParseAddrPort("198.51.100.9:40000"), Secured: true, Session: "x"}
	m, err := cl.NewMech("PLAIN")
	if err != nil {
		t.Fatal(err)
	}
	if _, done, err := m.Next(WithClientInfo(ctx, info), []byte("\x00alice\x00secret")); !done || err != nil {
		t.Fatalf("NewMech PLAIN: %v, %v", done, err)
	}
	b.mu.Lock()
	gotInfo = b.infos[len(b.infos)-1]
	b.mu.Unlock()
	if gotInfo != info {
		t.Errorf("through NewMech the server got ClientInfo %+v, want %+v", gotInfo, info)
	}

	_, err = cl.Verify(ctx, req, "alice", "wrong")
	var de *DovecotError
	if !errors.As(err, &de) || !errors.Is(err, ErrBadPassword) || de.User != "alice" || de.Temporary {
		t.Errorf("Verify(alice, wrong) = %v, want a DovecotError wrapping ErrBadPassword for alice", err)
	}
	_, err = cl.Verify(ctx, req, "tempuser", "x")
	if !errors.As(err, &de) || !errors.Is(err, ErrTemporary) || de.Code != "temp_fail" {
		t.Errorf("Verify(tempuser) = %v, want a temporary DovecotError", err)
	}
	// Escaping both ways: a user name with a TAB.
	user, err = cl.Verify(ctx, req, "al\tice", "tab")
	if err != nil || user != "al\tice" {
		t.Errorf("Verify(al\\tice) = %q, %v", user, err)
	}

	// LOGIN, step by step, as an SMTP server would relay it.
	x, err := cl.Start("login", DovecotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i, step := range []struct {
		resp      []byte
		challenge string
		done      bool
	}{{nil, "Username:", false}, {[]byte("alice"), "Password:", false}, {[]byte("secret"), "", true}} {
		ch, done, err := x.Next(ctx, step.resp)
		if err != nil || string(ch) != step.challenge || done != step.done {
			t.Fatalf("LOGIN step %d: %q, %v, %v", i, ch, done, err)
		}
	}
	if x.User() != "alice" || x.Fields()["user"] != "alice" {
		t.Errorf("LOGIN user %q, fields %v", x.User(), x.Fields())
	}
	if _, _, err := x.Next(ctx, nil); !errors.Is(err, ErrMechanism) {
		t.Errorf("Next after done: %v", err)
	}
	if _, err := cl.Start("CRAM-MD5", DovecotRequest{}); !errors.Is(err, ErrMechanism) {
		t.Errorf("Start of an unannounced mechanism: %v", err)
	}
}

// Many goroutines share one client connection; each gets its own answer.
func TestDovecotClientConcurrent(t *testing.T) {
	b := newDvTestBackend()
	for i := range 20 {
		b.users[fmt.Sprintf("u%d", i)] = fmt.Sprintf("p%d", i)
	}
	path := startDvTestServer(t, &DovecotServer{Backend: b})
	ctx := context.Background()
	cl, err := DialDovecot(ctx, "unix", path, &DovecotClientOptions{Logger: dvQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for j := range 20 {
				user, pass := fmt.Sprintf("u%d", i), fmt.Sprintf("p%d", i)
				if j%2 == 1 {
					pass = "wrong"
				}
				got, err := cl.Verify(ctx, DovecotRequest{}, user, pass)
				if j%2 == 0 && (err != nil || got != user) {
					t.Errorf("Verify(%s, %s) = %q, %v", user, pass, got, err)
				}
				if j%2 == 1 && !errors.Is(err, ErrBadPassword) {
					t.Errorf("Verify(%s, %s) = %v, want ErrBadPassword", user, pass, err)
				}
			}
		})
	}
	wg.Wait()
}

// The client dials again after the server went away and came back, and
// reports the lost connection as temporary meanwhile.
func TestDovecotClientReconnect(t *testing.T) {
	dir, err := os.MkdirTemp("", "dvr")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "auth")
	serve := func() *DovecotServer {
		ln, err := ListenDovecotUnix(path, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		srv := &DovecotServer{Backend: newDvTestBackend(), Logger: dvQuietLog}
		go srv.Serve(context.Background(), ln)
		return srv
	}
	srv := serve()
	ctx := context.Background()
	cl, err := DialDovecot(ctx, "unix", path, &DovecotClientOptions{Timeout: 2 * time.Second, Logger: dvQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Verify(ctx, DovecotRequest{}, "alice", "secret"); err != nil {
		t.Fatal(err)
	}
	// An exchange waiting when the server goes.
	x, _ := cl.Start("LOGIN", DovecotRequest{})
	if _, _, err := x.Next(ctx, nil); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, _, err := x.Next(ctx, []byte("alice")); !errors.Is(err, ErrTemporary) {
		t.Errorf("exchange across a lost connection: %v, want ErrTemporary", err)
	}
	if _, err := cl.Verify(ctx, DovecotRequest{}, "alice", "secret"); !errors.Is(err, ErrTemporary) {
		t.Errorf("Verify with the server gone: %v, want ErrTemporary", err)
	}
	srv = serve()
	defer srv.Close()
	if _, err := cl.Verify(ctx, DovecotRequest{}, "alice", "secret"); err != nil {
		t.Errorf("Verify after the server came back: %v", err)
	}
}

// A server that never answers: the exchange gives up after the timeout (or
// the caller's context) with a temporary error and cancels the request.
func TestDovecotClientTimeout(t *testing.T) {
	b := newDvTestBackend()
	b.block = make(chan struct{})
	defer close(b.block)
	path := startDvTestServer(t, &DovecotServer{Backend: b})
	cl, err := DialDovecot(context.Background(), "unix", path, &DovecotClientOptions{Timeout: 100 * time.Millisecond, Logger: dvQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	_, err = cl.Verify(context.Background(), DovecotRequest{}, "alice", "secret")
	if !errors.Is(err, ErrTemporary) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Verify against a stuck server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = cl.Verify(ctx, DovecotRequest{}, "alice", "secret")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with a cancelled context: %v", err)
	}
}

func TestDovecotClientHandshakeErrors(t *testing.T) {
	for _, c := range []struct{ name, server, want string }{
		{"master socket", "VERSION\t1\t0\nSPID\t1\n", "auth-master"},
		{"major version", "VERSION\t2\t0\nMECH\tPLAIN\nDONE\n", "version"},
		{"no version", "MECH\tPLAIN\nDONE\n", "without VERSION"},
		{"closed", "VERSION\t1\t2\n", "EOF"},
		{"bad mech", "VERSION\t1\t2\nMECH\n", "MECH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(nc, c.server)
				nc.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, nc)
				nc.Close()
			}()
			_, err = DialDovecot(context.Background(), "tcp", ln.Addr().String(), &DovecotClientOptions{Timeout: 2 * time.Second, Logger: dvQuietLog})
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrTemporary) {
				t.Errorf("DialDovecot = %v, want a temporary error mentioning %q", err, c.want)
			}
		})
	}
}

// The client reads what Dovecot's replies may hold: nologin refusals, the
// older "temp" flag, escaped values, replies for ids nobody waits for.
func TestDovecotClientReplies(t *testing.T) {
	for _, c := range []struct {
		name, reply string
		check       func(t *testing.T, user string, err error)
	}{
		{"ok", "OK\t%d\tuser=bob\toriginal_user=BOB", func(t *testing.T, user string, err error) {
			if err != nil || user != "bob" {
				t.Errorf("got %q, %v", user, err)
			}
		}},
		{"nologin", "OK\t%d\tuser=carol\tnologin\treason=Go\x01taway", func(t *testing.T, user string, err error) {
			var de *DovecotError
			if !errors.As(err, &de) || de.Reason != "Go\taway" || !errors.Is(err, ErrBadPassword) {
				t.Errorf("got %q, %v", user, err)
			}
		}},
		{"proxy", "OK\t%d\tuser=dave\tproxy\thost=imap.example", func(t *testing.T, user string, err error) {
			var de *DovecotError
			if !errors.As(err, &de) || de.Fields["host"] != "imap.example" {
				t.Errorf("got %q, %v", user, err)
			}
		}},
		{"ok without user", "OK\t%d", func(t *testing.T, user string, err error) {
			if !errors.Is(err, ErrTemporary) {
				t.Errorf("got %q, %v", user, err)
			}
		}},
		{"old temp flag", "FAIL\t%d\tuser=x\ttemp", func(t *testing.T, user string, err error) {
			if !errors.Is(err, ErrTemporary) {
				t.Errorf("got %q, %v", user, err)
			}
		}},
		{"invalid base64", "FAIL\t%d\tcode=invalid_base64\treason=Invalid base64 data in initial response", func(t *testing.T, user string, err error) {
			if !errors.Is(err, ErrMechanism) {
				t.Errorf("got %q, %v", user, err)
			}
		}},
		{"stray replies first", "FAIL\t999\nJUNK\nCONT\tx\t\nOK\t%d\tuser=erin", func(t *testing.T, user string, err error) {
			if err != nil || user != "erin" {
				t.Errorf("got %q, %v", user, err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := dvFakeServer(t, func(id uint32) string { return strings.ReplaceAll(c.reply, "%d", fmt.Sprint(id)) + "\n" })
			cl, err := DialDovecot(context.Background(), "unix", path, &DovecotClientOptions{Timeout: 2 * time.Second, Logger: dvQuietLog})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			user, err := cl.Verify(context.Background(), DovecotRequest{}, "u", "p")
			c.check(t, user, err)
		})
	}
}

// dvFakeServer serves a handshake with PLAIN and answers every AUTH with
// reply(id).
func dvFakeServer(t *testing.T, reply func(id uint32) string) string {
	dir, err := os.MkdirTemp("", "dvf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "auth")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				io.WriteString(nc, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\t00\nDONE\n")
				r := bufio.NewReader(nc)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					f := strings.Split(line, "\t")
					if f[0] == "AUTH" {
						id, _ := parseDovecotID(f[1])
						io.WriteString(nc, reply(id))
					}
				}
			}()
		}
	}()
	return path
}

func TestListenDovecotUnix(t *testing.T) {
	dir, err := os.MkdirTemp("", "dvl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "auth")
	ln, err := ListenDovecotUnix(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, %v", st.Mode(), err)
	}
	// In use: refused.
	if _, err := ListenDovecotUnix(path, 0o660); err == nil {
		t.Error("second listener on a live socket succeeded")
	}
	// Stale (left behind without unlinking): replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = ListenDovecotUnix(path, 0o600)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	ln.Close()
	// Not a socket: refused, left alone.
	os.WriteFile(path, []byte("x"), 0o644)
	if _, err := ListenDovecotUnix(path, 0o600); err == nil {
		t.Error("listen over a regular file succeeded")
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Error("regular file was touched")
	}
}

// A DovecotServer in front of a DovecotClient relays: mechanisms with their
// flags, challenges, and refusals with their reason and code.
func TestDovecotProxy(t *testing.T) {
	b := newDvTestBackend()
	b.mechs = []string{"PLAIN", "LOGIN", "APOP"}
	inner := startDvTestServer(t, &DovecotServer{Backend: b})
	cl, err := DialDovecot(context.Background(), "unix", inner, &DovecotClientOptions{Logger: dvQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	outer := startDvTestServer(t, &DovecotServer{Backend: cl})
	c := dvDialRaw(t, outer)
	lines := c.handshake()
	want := []string{"VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "MECH\tLOGIN\tplaintext", "MECH\tAPOP\tprivate\tdictionary\tactive"}
	if !slices.Equal(lines[:4], want) {
		t.Errorf("relayed handshake %q, want %q", lines[:4], want)
	}
	for _, d := range dovecotDialogues {
		if strings.Contains(d.name, "unknown mechanism") || strings.Contains(d.name, "cancel") {
			continue
		}
		t.Run(d.name, func(t *testing.T) {
			c := dvDialRaw(t, outer)
			c.handshake()
			for _, st := range d.steps {
				c.send(st.send...)
				c.expect(st)
			}
		})
	}
}

// dvFinalBackend has one mechanism that accepts at once and sends
// additional data with success, as SCRAM's server-final-message.
type dvFinalBackend struct{}

func (dvFinalBackend) Mechanisms(SecurityOptions) []string { return []string{"X-FINAL"} }
func (dvFinalBackend) NewMech(string) (ServerMech, error) {
	return &dvFinalMech{}, nil
}

type dvFinalMech struct{}

func (*dvFinalMech) Next(context.Context, []byte) ([]byte, bool, error) {
	return []byte("v=final"), true, nil
}
func (*dvFinalMech) User() string { return "alice" }

// Additional data with success travels as resp= on the OK line, over TCP
// as over UNIX sockets, and through a relay.
func TestDovecotSuccessData(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &DovecotServer{Backend: dvFinalBackend{}, Logger: dvQuietLog}
	go srv.Serve(context.Background(), ln)
	defer srv.Close()

	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &dvRawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
	if hs := c.handshake(); hs[1] != "MECH\tX-FINAL" {
		t.Fatalf("handshake %q", hs)
	}
	c.send("AUTH\t1\tX-FINAL\tservice=smtp")
	if got, want := c.recv(5*time.Second), "OK\t1\tuser=alice\tresp="+dvB64("v=final"); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}

	cl, err := DialDovecot(context.Background(), "tcp", ln.Addr().String(), &DovecotClientOptions{Logger: dvQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	relay := startDvTestServer(t, &DovecotServer{Backend: cl})
	for _, path := range []string{"", relay} {
		var x ServerMech = nil
		if path == "" {
			x, err = cl.Start("X-FINAL", DovecotRequest{})
		} else {
			rc, err2 := DialDovecot(context.Background(), "unix", relay, &DovecotClientOptions{Logger: dvQuietLog})
			if err2 != nil {
				t.Fatal(err2)
			}
			defer rc.Close()
			x, err = rc.NewMech("X-FINAL")
		}
		if err != nil {
			t.Fatal(err)
		}
		data, done, err := x.Next(context.Background(), nil)
		if err != nil || !done || string(data) != "v=final" || x.User() != "alice" {
			t.Errorf("relay %q: %q, %v, %v, user %q", path, data, done, err, x.User())
		}
	}
}

// Beyond MaxConnections, a client waits (in the listen backlog) until a
// connection ends.
func TestDovecotServerMaxConnections(t *testing.T) {
	path := startDvTestServer(t, &DovecotServer{Backend: newDvTestBackend(), MaxConnections: 1})
	c1 := dvDialRaw(t, path)
	c1.handshake()
	c2 := dvDialRaw(t, path)
	c2.send("VERSION\t1\t2", "CPID\t2")
	if got := c2.recv(300 * time.Millisecond); got != "TIMEOUT" {
		t.Fatalf("second connection got %q while the first is open", got)
	}
	c1.nc.Close()
	if got := c2.recv(5 * time.Second); got != "VERSION\t1\t2" {
		t.Fatalf("second connection after the first closed: %q", got)
	}
}
