package auth

// Tests against the real peers: a private Dovecot 2.3 auth server (the
// reference for the server side and the peer of the client side) and a
// private Postfix whose smtpd authenticates through smtpd_sasl_type =
// dovecot (the client the server side exists for).

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// dovecotPasswd is the passwd-file of the private Dovecot: the users of
// dvTestBackend, plus refusals by extra field (nologin, proxy).
const dovecotPasswd = "" +
	"alice:{PLAIN}secret::::::\n" +
	"carol:{PLAIN}pw::::::nologin reason=Go\\taway\n" +
	"dave:{PLAIN}pw::::::nologin proxy host=imap.example.com\n"

// dovecotCheckpassword answers for users the passwd-file does not know:
// tempuser gets a temporary failure (checkpassword's exit status 111),
// everyone else a refusal.
const dovecotCheckpassword = `#!/bin/sh
user=$(head -c 512 <&3 | tr '\0' '\n' | head -n 1)
[ "$user" = tempuser ] && exit 111
exit 1
`

// startDovecot starts a private Dovecot auth service (oracle.StartDovecotAuth)
// with the passwd-file and checkpassword passdbs above and verbose logging.
func startDovecot(t testing.TB, mechs string) *oracle.Dovecot {
	return startDovecotLogging(t, mechs, true)
}

// startDovecotLogging is startDovecot with auth_verbose and auth_debug set
// to verbose (off for benchmarks, where writing the log lines costs
// Dovecot more than the protocol).
func startDovecotLogging(t testing.TB, mechs string, verbose bool) *oracle.Dovecot {
	t.Helper()
	return oracle.StartDovecotAuth(t, oracle.DovecotOptions{Mechanisms: mechs, Passwd: dovecotPasswd,
		Checkpassword: dovecotCheckpassword, Verbose: verbose})
}

// TestDovecotServerMatchesDovecot runs the same client lines against
// Dovecot and against DovecotServer and compares the replies, handshake
// included (except SPID, CUID and COOKIE, which are per process and
// connection).
func TestDovecotServerMatchesDovecot(t *testing.T) {
	t.Parallel()
	dv := startDovecot(t, "plain login cram-md5 digest-md5 scram-sha-256 anonymous apop")
	b := newDvTestBackend()
	b.mechs = []string{"PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-256", "ANONYMOUS", "APOP"}
	ours := startDvTestServer(t, &DovecotServer{Backend: b})

	handshake := func(path string) []string {
		c := dvDialRaw(t, path)
		lines := c.handshake()
		for i, l := range lines {
			if k, _, ok := strings.Cut(l, "\t"); ok && (k == "SPID" || k == "CUID" || k == "COOKIE") {
				lines[i] = k
			}
		}
		return lines
	}
	if want, got := handshake(dv.Socket), handshake(ours); !slices.Equal(got, want) {
		t.Errorf("handshake:\n ours    %q\n dovecot %q", got, want)
	}

	dvCompareDialogues(t, dv.Socket, ours, nil)
}

// dvCompareDialogues runs dovecotDialogues against Dovecot and against our
// server side by side and compares the replies, after passing both through
// normalize when it is not nil.
func dvCompareDialogues(t *testing.T, dovecot, ours string, normalize func(string) string) {
	for _, d := range dovecotDialogues {
		if d.name == "user name with tab" {
			// Dovecot refuses the name by auth_username_chars and
			// adds original_user; the escaping itself is checked
			// by TestDovecotClientAgainstDovecot.
			continue
		}
		t.Run(d.name, func(t *testing.T) {
			// Dovecot answers failures on a 500 ms tick even with
			// auth_failure_delay = 0: run the dialogues side by side.
			t.Parallel()
			cd, co := dvDialRaw(t, dovecot), dvDialRaw(t, ours)
			cd.handshake()
			co.handshake()
			for _, st := range d.steps {
				cd.send(st.send...)
				co.send(st.send...)
				var want, got []string
				for range st.want {
					want = append(want, cd.recv(5*time.Second))
					got = append(got, co.recv(5*time.Second))
				}
				if st.silent {
					want = append(want, cd.recv(700*time.Millisecond))
					got = append(got, co.recv(700*time.Millisecond))
				}
				if normalize != nil {
					for i := range want {
						want[i], got[i] = normalize(want[i]), normalize(got[i])
					}
				}
				slices.Sort(want)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("after %q:\n ours    %q\n dovecot %q", st.send, got, want)
				}
			}
		})
	}
}

// dvTempFail makes the lookup of "tempuser" fail temporarily, as the
// private Dovecot's checkpassword does.
type dvTempFail struct{ PassDB }

func (d dvTempFail) LookupCredentials(ctx context.Context, user string) (Credentials, error) {
	if user == "tempuser" {
		return Credentials{}, fmt.Errorf("test database down: %w", ErrTemporary)
	}
	return d.PassDB.LookupCredentials(ctx, user)
}

// dvAuthenticator is the package's Authenticator over the private
// Dovecot's passwd-file, with the same mechanisms and no failure delay
// (the private Dovecot has auth_failure_delay = 0).
func dvAuthenticator(t testing.TB, dv *oracle.Dovecot, mechs ...string) *Authenticator {
	t.Helper()
	pf, err := OpenPasswdFile(filepath.Join(dv.Dir, "passwd"), PasswdFileOptions{Logger: dvQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	return &Authenticator{PassDB: dvTempFail{pf}, AuthMechanisms: mechs, FailureDelay: -1, Logger: dvQuietLog}
}

// The package's Authenticator behind DovecotServer answers as Dovecot
// does with the same passwd-file.
func TestDovecotServerAuthenticatorMatchesDovecot(t *testing.T) {
	t.Parallel()
	dv := startDovecot(t, "plain login cram-md5 scram-sha-256")
	var backend DovecotBackend = dvAuthenticator(t, dv, "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256")
	ours := startDvTestServer(t, &DovecotServer{Backend: backend})
	handshake := func(path string) []string {
		lines := dvDialRaw(t, path).handshake()
		for i, l := range lines {
			if k, _, ok := strings.Cut(l, "\t"); ok && (k == "SPID" || k == "CUID" || k == "COOKIE") {
				lines[i] = k
			}
		}
		return lines
	}
	if want, got := handshake(dv.Socket), handshake(ours); !slices.Equal(got, want) {
		t.Errorf("handshake:\n ours    %q\n dovecot %q", got, want)
	}
	// The Authenticator's mechanisms do not name the user of a failed
	// exchange (ServerMech.User is the authenticated user), so FAIL
	// lacks the user= Dovecot sends. Clients only log it; Postfix
	// ignores it.
	dropFailUser := func(l string) string {
		if !strings.HasPrefix(l, "FAIL\t") {
			return l
		}
		f := strings.Split(l, "\t")
		f = slices.DeleteFunc(f, func(p string) bool { return strings.HasPrefix(p, "user=") })
		return strings.Join(f, "\t")
	}
	dvCompareDialogues(t, dv.Socket, ours, dropFailUser)

	// CRAM-MD5 and SCRAM-SHA-256 through DovecotClient against both.
	for name, path := range map[string]string{"dovecot": dv.Socket, "ours": ours} {
		cl, err := DialDovecot(context.Background(), "unix", path, &DovecotClientOptions{Logger: dvQuietLog})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for _, pass := range []string{"secret", "wrong"} {
			if err := dvCRAM(cl, "alice", pass); (err == nil) != (pass == "secret") {
				t.Errorf("%s: CRAM-MD5 alice/%s: %v", name, pass, err)
			}
		}
	}
}

// dvCRAM runs a CRAM-MD5 exchange (RFC 2195: user SP
// hex(HMAC-MD5(password, challenge))).
func dvCRAM(cl *DovecotClient, user, pass string) error {
	ctx := context.Background()
	x, err := cl.Start("CRAM-MD5", DovecotRequest{NoPenalty: true})
	if err != nil {
		return err
	}
	ch, done, err := x.Next(ctx, nil)
	if err != nil || done || !strings.HasPrefix(string(ch), "<") {
		return fmt.Errorf("challenge %q, %v, %w", ch, done, err)
	}
	h := hmac.New(md5.New, []byte(pass))
	h.Write(ch)
	_, done, err = x.Next(ctx, []byte(user+" "+hex.EncodeToString(h.Sum(nil))))
	if err == nil && (!done || x.User() != user) {
		return fmt.Errorf("done %v, user %q", done, x.User())
	}
	return err
}

// TestDovecotClientAgainstDovecot authenticates through a real Dovecot's
// auth-client socket with DovecotClient.
func TestDovecotClientAgainstDovecot(t *testing.T) {
	t.Parallel()
	dv := startDovecot(t, "plain login cram-md5 scram-sha-256 apop")
	ctx := context.Background()
	cl, err := DialDovecot(ctx, "unix", dv.Socket, &DovecotClientOptions{Logger: dvQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// Private mechanisms (APOP) are not for users.
	if got, want := cl.Mechanisms(SecurityOptions{}), []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"}; !slices.Equal(got, want) {
		t.Errorf("Mechanisms = %q, want %q", got, want)
	}
	wantMechs := []DovecotMech{{"PLAIN", []string{"plaintext"}}, {"LOGIN", []string{"plaintext"}},
		{"CRAM-MD5", []string{"dictionary", "active"}}, {"SCRAM-SHA-256", []string{"mutual-auth"}},
		{"APOP", []string{"private", "dictionary", "active"}}}
	gotMechs := cl.DovecotMechanisms()
	if len(gotMechs) != len(wantMechs) {
		t.Errorf("DovecotMechanisms = %v, want %v", gotMechs, wantMechs)
	}
	for i := range min(len(gotMechs), len(wantMechs)) {
		if gotMechs[i].Name != wantMechs[i].Name || !slices.Equal(gotMechs[i].Flags, wantMechs[i].Flags) {
			t.Errorf("DovecotMechanisms[%d] = %v, want %v", i, gotMechs[i], wantMechs[i])
		}
	}

	// Every request says no-penalty: Dovecot would otherwise delay the
	// requests after a failure from the same address by seconds.
	req := DovecotRequest{ClientInfo: ClientInfo{Service: "smtp"}, NoPenalty: true}

	t.Run("plain", func(t *testing.T) {
		if user, err := cl.Verify(ctx, req, "alice", "secret"); err != nil || user != "alice" {
			t.Errorf("good password: %q, %v", user, err)
		}
		_, err := cl.Verify(ctx, req, "alice", "wrong")
		var de *DovecotError
		if !errors.As(err, &de) || !errors.Is(err, ErrBadPassword) || de.User != "alice" || de.Temporary {
			t.Errorf("bad password: %v", err)
		}
		_, err = cl.Verify(ctx, req, "nobody", "x")
		if !errors.As(err, &de) || !errors.Is(err, ErrBadPassword) || de.User != "nobody" {
			t.Errorf("unknown user: %v", err)
		}
	})
	t.Run("temporary failure", func(t *testing.T) {
		_, err := cl.Verify(ctx, req, "tempuser", "x")
		var de *DovecotError
		if !errors.As(err, &de) || !errors.Is(err, ErrTemporary) || de.Code != "temp_fail" || de.User != "tempuser" {
			t.Errorf("tempuser: %v", err)
		}
	})
	t.Run("nologin", func(t *testing.T) {
		// Dovecot answers OK with nologin: the password was right, but
		// the user must not get in.
		_, err := cl.Verify(ctx, req, "carol", "pw")
		var de *DovecotError
		if !errors.As(err, &de) || !errors.Is(err, ErrBadPassword) || de.Reason != `Go\taway` {
			t.Errorf("carol: %v", err)
		}
		_, err = cl.Verify(ctx, req, "dave", "pw")
		if !errors.As(err, &de) || de.Fields["host"] != "imap.example.com" {
			t.Errorf("dave: %v", err)
		}
	})
	t.Run("escaped user name", func(t *testing.T) {
		// Dovecot refuses the TAB (auth_username_chars) and names the
		// user tab-escaped.
		_, err := cl.Verify(ctx, req, "al\tice", "x")
		var de *DovecotError
		if !errors.As(err, &de) || de.User != "al\tice" {
			t.Errorf("al\\tice: %v", err)
		}
	})
	t.Run("login", func(t *testing.T) {
		for _, c := range []struct {
			pass string
			ok   bool
		}{{"secret", true}, {"wrong", false}} {
			x, err := cl.Start("LOGIN", req)
			if err != nil {
				t.Fatal(err)
			}
			ch, done, err := x.Next(ctx, nil)
			if err != nil || done || string(ch) != "Username:" {
				t.Fatalf("LOGIN start: %q, %v, %v", ch, done, err)
			}
			ch, done, err = x.Next(ctx, []byte("alice"))
			if err != nil || done || string(ch) != "Password:" {
				t.Fatalf("LOGIN user: %q, %v, %v", ch, done, err)
			}
			_, done, err = x.Next(ctx, []byte(c.pass))
			if done != c.ok || (err == nil) != c.ok || x.User() != "alice" {
				t.Errorf("LOGIN with %q: done %v, err %v, user %q", c.pass, done, err, x.User())
			}
		}
	})
	t.Run("cram-md5", func(t *testing.T) {
		for _, pass := range []string{"secret", "wrong"} {
			if err := dvCRAM(cl, "alice", pass); (err == nil) != (pass == "secret") {
				t.Errorf("CRAM-MD5 with %q: %v", pass, err)
			}
		}
	})
	t.Run("cancel", func(t *testing.T) {
		x, _ := cl.Start("LOGIN", req)
		if _, _, err := x.Next(ctx, nil); err != nil {
			t.Fatal(err)
		}
		x.Cancel()
		// The connection stays usable.
		if _, err := cl.Verify(ctx, req, "alice", "secret"); err != nil {
			t.Errorf("after CANCEL: %v", err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				for j := range 8 {
					pass := "secret"
					if (i+j)%3 == 0 {
						pass = "wrong"
					}
					user, err := cl.Verify(ctx, req, "alice", pass)
					if ok := pass == "secret"; ok != (err == nil) || ok && user != "alice" {
						t.Errorf("Verify(alice, %s) = %q, %v", pass, user, err)
					}
				}
			})
		}
		wg.Wait()
	})
	t.Run("connection details", func(t *testing.T) {
		r := DovecotRequest{ClientInfo: ClientInfo{Service: "imap", LocalAddr: netip.MustParseAddrPort("192.0.2.1:143"),
			RemoteAddr: netip.MustParseAddrPort("[2001:db8::7]:50123"), Session: "sess1", Secured: true},
			NoPenalty: true}
		if _, err := cl.Verify(ctx, r, "alice", "wrong"); err == nil {
			t.Fatal("wrong password accepted")
		}
		// Dovecot names the client address and session in its log.
		if log := dv.Log(t); !strings.Contains(log, "passwd-file(alice,2001:db8::7,<sess1>): Password mismatch") {
			t.Errorf("Dovecot's log does not show the request's rip and session:\n%s", log)
		}
	})
	t.Run("dovecot restarts", func(t *testing.T) {
		// A connection Dovecot closed is dialled again.
		cl.mu.Lock()
		cl.conn.nc.Close()
		cl.mu.Unlock()
		if _, err := cl.Verify(ctx, req, "alice", "secret"); err != nil {
			t.Errorf("after the connection was lost: %v", err)
		}
	})
}

// dvPenaltyFree relays to a DovecotClient with the no-penalty flag set, so
// that a test's deliberate failures do not slow down its next requests.
type dvPenaltyFree struct{ *DovecotClient }

func (p dvPenaltyFree) StartMech(ctx context.Context, mech string, req *DovecotRequest) (ServerMech, error) {
	r := *req
	r.NoPenalty = true
	return p.DovecotClient.StartMech(ctx, mech, &r)
}

// dvSASLCase is one SMTP AUTH attempt made with swaks.
type dvSASLCase struct {
	mech, user, pass string
}

var postfixSASLCases = []dvSASLCase{
	{"PLAIN", "alice", "secret"},
	{"PLAIN", "alice", "wrong"},
	{"PLAIN", "nobody", "x"},
	{"PLAIN", "tempuser", "x"},
	{"LOGIN", "alice", "secret"},
	{"LOGIN", "alice", "wrong"},
}

// dvSwaksAuth runs swaks against addr up to AUTH and returns the server's
// replies from AUTH on. Each case poses as its own client address
// (XCLIENT) so that Dovecot's per-address failure penalty never delays
// another case.
func dvSwaksAuth(t *testing.T, addr string, c dvSASLCase, clientIP string) []string {
	t.Helper()
	swaks := oracle.Require(t, "swaks")
	host, port, _ := net.SplitHostPort(addr)
	out, _ := exec.Command(swaks, "--server", host, "--port", port, "--xclient", "ADDR="+clientIP+" NAME=client.example",
		"--auth", c.mech, "--auth-user", c.user, "--auth-password", c.pass,
		"--quit-after", "AUTH", "--timeout", "20").CombinedOutput()
	var replies []string
	after := false
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, " -> AUTH") {
			after = true
		}
		if strings.HasPrefix(line, " -> QUIT") {
			break
		}
		if !after {
			continue
		}
		// "<- " a reply, "<** " an error reply.
		if r, ok := strings.CutPrefix(line, "<-  "); ok {
			replies = append(replies, r)
		} else if r, ok := strings.CutPrefix(line, "<** "); ok {
			replies = append(replies, r)
		}
	}
	if len(replies) == 0 {
		t.Fatalf("swaks %v printed no AUTH reply:\n%s", c, out)
	}
	return replies
}

// dvEHLOAuth returns the mechanisms a Postfix instance offers in EHLO.
func dvEHLOAuth(t *testing.T, p *oracle.Postfix) string {
	c := p.Session(t)
	defer c.Close()
	r := c.Cmd("EHLO client.example")
	for _, l := range r.Lines {
		if m, ok := strings.CutPrefix(l, "AUTH "); ok {
			return m
		}
	}
	t.Fatalf("EHLO offers no AUTH: %s", r)
	return ""
}

const postfixSASLMain = "" +
	"smtpd_sasl_auth_enable = yes\n" +
	"smtpd_sasl_type = dovecot\n" +
	"smtpd_sasl_path = %s\n"

// TestPostfixThroughDovecotServer checks what an SMTP client of a real
// Postfix sees when Postfix authenticates through DovecotServer: the same
// mechanisms and the same replies as when it authenticates through a real
// Dovecot with the same users, both with the test backend and with the
// server relaying to that Dovecot.
func TestPostfixThroughDovecotServer(t *testing.T) {
	t.Parallel()
	oracle.Require(t, "swaks")
	dv := startDovecot(t, "plain login cram-md5")
	ctx := context.Background()
	cl, err := DialDovecot(ctx, "unix", dv.Socket, &DovecotClientOptions{Logger: dvQuietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() }) // not defer: the subtests run in parallel, after this function
	direct := startDvTestServer(t, &DovecotServer{Backend: dvAuthenticator(t, dv, "PLAIN", "LOGIN", "CRAM-MD5")})
	// The relay listens on TCP: Postfix's smtpd_sasl_path also takes
	// inet:host:port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relaySrv := &DovecotServer{Backend: dvPenaltyFree{cl}, Logger: dvQuietLog}
	go relaySrv.Serve(ctx, ln)
	t.Cleanup(func() { relaySrv.Close() })
	relay := "inet:" + ln.Addr().String()

	// Three instances started side by side: Postfix takes seconds to
	// start. TryStartPostfix, as t.Fatal belongs to the test goroutine.
	paths := []string{dv.Socket, direct, relay}
	instances := make([]*oracle.Postfix, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, path := range paths {
		wg.Go(func() {
			instances[i], errs[i] = oracle.TryStartPostfix(t, oracle.PostfixOptions{Main: fmt.Sprintf(postfixSASLMain, path)})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	pDovecot, pOurs, pRelay := instances[0], instances[1], instances[2]

	want := dvEHLOAuth(t, pDovecot)
	if want != "PLAIN LOGIN CRAM-MD5" {
		t.Errorf("Postfix with Dovecot offers AUTH %q", want)
	}
	for name, p := range map[string]*oracle.Postfix{"server": pOurs, "relay": pRelay} {
		if got := dvEHLOAuth(t, p); got != want {
			t.Errorf("%s: Postfix offers AUTH %q, with Dovecot %q", name, got, want)
		}
	}

	for i, c := range postfixSASLCases {
		t.Run(fmt.Sprintf("%s %s %s", c.mech, c.user, c.pass), func(t *testing.T) {
			t.Parallel()
			want := dvSwaksAuth(t, pDovecot.Addr, c, fmt.Sprintf("192.0.2.%d", i+1))
			got := dvSwaksAuth(t, pOurs.Addr, c, fmt.Sprintf("192.0.2.%d", i+1))
			relayed := dvSwaksAuth(t, pRelay.Addr, c, fmt.Sprintf("192.0.2.%d", i+1))
			t.Logf("through Dovecot: %q", want)
			if !slices.Equal(got, want) {
				t.Errorf("Postfix through DovecotServer:\n %q\nthrough Dovecot:\n %q", got, want)
			}
			if !slices.Equal(relayed, want) {
				t.Errorf("Postfix through DovecotServer relaying to Dovecot:\n %q\nthrough Dovecot:\n %q", relayed, want)
			}
			// The case must mean something: success or refusal as
			// the password says.
			last := want[len(want)-1]
			if ok := c.pass == "secret"; ok != strings.HasPrefix(last, "235 ") {
				t.Errorf("Dovecot's verdict %q for %v", last, c)
			}
		})
	}
	t.Run("CRAM-MD5", func(t *testing.T) {
		t.Parallel()
		for i, pass := range []string{"secret", "wrong"} {
			c := dvSASLCase{"CRAM-MD5", "alice", pass}
			ip := fmt.Sprintf("198.51.100.%d", i+1)
			want := dvSwaksAuth(t, pDovecot.Addr, c, ip)
			// The challenge differs each time; compare the verdicts.
			for name, p := range map[string]*oracle.Postfix{"server": pOurs, "relay": pRelay} {
				got := dvSwaksAuth(t, p.Addr, c, ip)
				if got[len(got)-1] != want[len(want)-1] || len(got) != len(want) {
					t.Errorf("%s: CRAM-MD5 %s: %q, through Dovecot %q", name, pass, got, want)
				}
			}
		}
	})
	t.Run("nologin", func(t *testing.T) {
		t.Parallel()
		// Dovecot answers OK with nologin for carol, and Postfix, which
		// only reads user= from an OK, lets her in. postkit's server
		// refuses (auth_protocol: OK with nologin is a refusal), and
		// so does the relay, whose client reads the nologin.
		c := dvSASLCase{"PLAIN", "carol", "pw"}
		t.Logf("through Dovecot: %q", dvSwaksAuth(t, pDovecot.Addr, c, "203.0.113.1"))
		for name, p := range map[string]*oracle.Postfix{"server": pOurs, "relay": pRelay} {
			got := dvSwaksAuth(t, p.Addr, c, "203.0.113.1")
			if len(got) != 1 || !strings.HasPrefix(got[0], "535 5.7.8 ") {
				t.Errorf("%s: carol with nologin: %q, want 535", name, got)
			}
		}
	})

	// Python's smtplib, a second real client: login succeeds with the
	// right password and is refused with 535 otherwise.
	t.Run("smtplib", func(t *testing.T) {
		t.Parallel()
		python := oracle.Require(t, "python3")
		script := `
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
for mech, user, pw in [("PLAIN", "alice", "secret"), ("LOGIN", "alice", "secret"), ("PLAIN", "alice", "bad"), ("LOGIN", "alice", "bad")]:
    s = smtplib.SMTP(host, int(port))
    s.ehlo("client.example")
    s.user, s.password = user, pw
    try:
        code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower()), initial_response_ok=(mech == "PLAIN"))
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
    print(mech, pw, code)
    s.quit()
`
		for name, p := range map[string]*oracle.Postfix{"server": pOurs, "relay": pRelay} {
			out, err := exec.Command(python, "-c", script, p.Addr).CombinedOutput()
			want := "PLAIN secret 235\nLOGIN secret 235\nPLAIN bad 535\nLOGIN bad 535\n"
			if err != nil || string(out) != want {
				t.Errorf("%s: smtplib: %v\n%s\nwant\n%s", name, err, out, want)
			}
		}
	})
}
