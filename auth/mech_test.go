package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/smtp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// testAuth is an Authenticator over a map of users (name → stored
// password), recording its failure delays and logs.
type testAuth struct {
	*Authenticator
	mu     sync.Mutex
	delays []time.Duration
	logs   bytes.Buffer
}

func newTestAuth(users map[string]Credentials) *testAuth {
	ta := &testAuth{}
	ta.Authenticator = &Authenticator{
		PassDB: PassDBFunc(func(ctx context.Context, user string) (Credentials, error) {
			if user == "tempfail" {
				return Credentials{}, fmt.Errorf("database down: %w", ErrTemporary)
			}
			c, ok := users[user]
			if !ok {
				return Credentials{}, fmt.Errorf("%q: %w", user, ErrUnknownUser)
			}
			if c.User == "" {
				c.User = user
			}
			return c, nil
		}),
		AuthMechanisms: []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"},
		Hostname:       "mx.example.org",
		Sleep: func(ctx context.Context, d time.Duration) error {
			ta.mu.Lock()
			ta.delays = append(ta.delays, d)
			ta.mu.Unlock()
			return nil
		},
	}
	ta.Logger = slog.New(slog.NewTextHandler(&ta.logs, nil))
	return ta
}

func (ta *testAuth) delayCount() int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return len(ta.delays)
}

var discardLog = slog.New(slog.DiscardHandler)

func plainUsers() map[string]Credentials {
	return map[string]Credentials{
		"alice@example.org": {Password: "{PLAIN}wonderland"},
		"bob@example.org":   {Password: "{SHA512-CRYPT}" + mustCrypt("builder", "$6$bobsalt")},
		"carol@example.org": {Password: "{PLAIN}x", Extra: map[string]string{"nologin": "", "reason": "moved to mx2"}},
		"dave@example.org":  {Password: "{PLAIN}d", Extra: map[string]string{"allow_nets": "192.0.2.0/24, 2001:db8::1"}},
		"erin@example.org":  {Extra: map[string]string{"nopassword": "y"}},
		"frank@example.org": {Password: "{PLAIN}f", Extra: map[string]string{"nodelay": ""}},
		"gina@example.org":  {Password: "{PLAIN}g", User: "Gina@Example.org"},
	}
}

func mustCrypt(plain, setting string) string {
	s, err := cryptCompute([]byte(plain), setting)
	if err != nil {
		panic(err)
	}
	return s
}

// run feeds the responses to a mechanism and returns its challenges and
// the final result.
func run(ctx context.Context, m ServerMech, responses ...[]byte) (challenges []string, done bool, err error) {
	for _, r := range responses {
		var ch []byte
		ch, done, err = m.Next(ctx, r)
		if err != nil || done {
			return challenges, done, err
		}
		challenges = append(challenges, string(ch))
	}
	return challenges, done, err
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, user, pass string
		info             *ClientInfo
		want             error
		canonical        string
		delayed          bool
	}{
		{name: "plain", user: "alice@example.org", pass: "wonderland", canonical: "alice@example.org"},
		{name: "lower-cased by %Lu", user: "Alice@EXAMPLE.org", pass: "wonderland", canonical: "alice@example.org"},
		{name: "crypt", user: "bob@example.org", pass: "builder", canonical: "bob@example.org"},
		{name: "wrong", user: "alice@example.org", pass: "Wonderland", want: ErrBadPassword, delayed: true},
		{name: "unknown", user: "nobody@example.org", pass: "x", want: ErrUnknownUser, delayed: true},
		{name: "bad char", user: "al ice@example.org", pass: "x", want: ErrUnknownUser, delayed: true},
		{name: "nul in password", user: "alice@example.org", pass: "wonderland\x00", want: ErrBadPassword, delayed: true},
		{name: "temporary", user: "tempfail", pass: "x", want: ErrTemporary},
		{name: "nologin", user: "carol@example.org", pass: "x", want: ErrBadPassword, delayed: true},
		{name: "allow_nets miss", user: "dave@example.org", pass: "d", info: &ClientInfo{RemoteAddr: netip.MustParseAddrPort("198.51.100.1:25")}, want: ErrBadPassword, delayed: true},
		{name: "allow_nets v4", user: "dave@example.org", pass: "d", info: &ClientInfo{RemoteAddr: netip.MustParseAddrPort("192.0.2.77:25")}, canonical: "dave@example.org"},
		{name: "allow_nets v6", user: "dave@example.org", pass: "d", info: &ClientInfo{RemoteAddr: netip.MustParseAddrPort("[2001:db8::1]:25")}, canonical: "dave@example.org"},
		{name: "allow_nets unknown address", user: "dave@example.org", pass: "d", want: ErrBadPassword, delayed: true},
		{name: "nopassword", user: "erin@example.org", pass: "anything", canonical: "erin@example.org"},
		{name: "nodelay", user: "frank@example.org", pass: "wrong", want: ErrBadPassword},
		{name: "canonical name", user: "gina@example.org", pass: "g", canonical: "Gina@Example.org"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ta := newTestAuth(plainUsers())
			cx := ctx
			if c.info != nil {
				cx = WithClientInfo(ctx, *c.info)
			}
			u, err := ta.Verify(cx, c.user, c.pass)
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("Verify = %v, want %v", err, c.want)
				}
			} else if err != nil || u.Name != c.canonical {
				t.Fatalf("Verify = %+v, %v; want user %q", u, err, c.canonical)
			}
			if got := ta.delayCount(); (got == 1) != c.delayed || got > 1 {
				t.Errorf("%d failure delays, want delayed=%v", got, c.delayed)
			}
			if c.delayed && ta.delays[0] != 2*time.Second {
				t.Errorf("delay %v, want Dovecot's 2s default", ta.delays[0])
			}
			if len(c.pass) >= 5 && strings.Contains(ta.logs.String(), c.pass) {
				t.Errorf("the log holds the password: %s", ta.logs.String())
			}
		})
	}
}

func TestVerifyNologinReason(t *testing.T) {
	ta := newTestAuth(plainUsers())
	_, err := ta.Verify(context.Background(), "carol@example.org", "x")
	if err == nil || !strings.Contains(err.Error(), "moved to mx2") {
		t.Errorf("nologin error %v does not carry the reason", err)
	}
}

func TestFailureDelaySettings(t *testing.T) {
	ta := newTestAuth(plainUsers())
	ta.FailureDelay = -1
	ta.Verify(context.Background(), "alice@example.org", "nope")
	if ta.delayCount() != 0 {
		t.Errorf("negative FailureDelay still delayed: %v", ta.delays)
	}
	ta = newTestAuth(plainUsers())
	ta.FailureDelay = 300 * time.Millisecond
	ta.Verify(context.Background(), "alice@example.org", "nope")
	if !slices.Equal(ta.delays, []time.Duration{300 * time.Millisecond}) {
		t.Errorf("delays %v, want [300ms]", ta.delays)
	}
	// The default sleeper gives up with the context.
	a := &Authenticator{PassDB: PassDBFunc(func(ctx context.Context, u string) (Credentials, error) {
		return Credentials{Password: "{PLAIN}a"}, nil
	}), FailureDelay: time.Hour, Logger: discardLog}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Verify(ctx, "x", "b"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("Verify with a cancelled context = %v", err)
	}
}

func TestUsernameNormalization(t *testing.T) {
	var seen []string
	db := PassDBFunc(func(ctx context.Context, u string) (Credentials, error) {
		seen = append(seen, u)
		return Credentials{Password: "{PLAIN}p"}, nil
	})
	type cfg struct{ format, realm, chars string }
	for _, c := range []struct {
		cfg  cfg
		user string
		want string // "" = refused
	}{
		{cfg{}, "Joe@Example.ORG", "joe@example.org"},
		{cfg{format: "%u"}, "Joe@Example.ORG", "Joe@Example.ORG"},
		{cfg{format: "%Ln"}, "Joe@Example.ORG", "joe"},
		{cfg{realm: "example.net"}, "joe", "joe@example.net"},
		{cfg{realm: "example.net"}, "joe@x.org", "joe@x.org"},
		{cfg{}, "jö@x.org", ""},
		{cfg{chars: AnyUsernameChars}, "jö@x.org", "jö@x.org"},
		{cfg{chars: AnyUsernameChars}, "j\no", ""},
		{cfg{chars: "abc"}, "abd", ""},
		{cfg{}, "", ""},
		{cfg{}, strings.Repeat("a", 600), ""},
		{cfg{}, "\xff", ""},
	} {
		seen = nil
		a := &Authenticator{PassDB: db, FailureDelay: -1, Logger: discardLog, UsernameFormat: c.cfg.format, DefaultRealm: c.cfg.realm, UsernameChars: c.cfg.chars}
		u, err := a.Verify(context.Background(), c.user, "p")
		if c.want == "" {
			if err == nil || len(seen) != 0 {
				t.Errorf("%+v: %q accepted (looked up %q)", c.cfg, c.user, seen)
			}
			continue
		}
		if err != nil || u.Name != c.want || !slices.Equal(seen, []string{c.want}) {
			t.Errorf("%+v: %q → %q, %v (looked up %q); want %q", c.cfg, c.user, u.Name, err, seen, c.want)
		}
	}
}

// ---- PLAIN and LOGIN ------------------------------------------------------

func TestPLAIN(t *testing.T) {
	ctx := context.Background()
	// A real client's message: net/smtp's PLAIN.
	_, ir, err := smtp.PlainAuth("", "alice@example.org", "wonderland", "mx.example.org").
		Start(&smtp.ServerInfo{Name: "mx.example.org", TLS: true, Auth: []string{"PLAIN"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		responses [][]byte
		auth      func(ctx context.Context, authcid, authzid string) error
		want      error
		user      string
		chal      []string
	}{
		{name: "net/smtp initial response", responses: [][]byte{ir}, user: "alice@example.org"},
		{name: "no initial response", responses: [][]byte{nil, []byte("\x00alice@example.org\x00wonderland")}, chal: []string{""}, user: "alice@example.org"},
		{name: "authzid = authcid", responses: [][]byte{[]byte("Alice@example.org\x00alice@example.org\x00wonderland")}, user: "alice@example.org"},
		{name: "authzid refused", responses: [][]byte{[]byte("bob@example.org\x00alice@example.org\x00wonderland")}, want: ErrBadPassword},
		{name: "authzid allowed", responses: [][]byte{[]byte("bob@example.org\x00alice@example.org\x00wonderland")},
			auth: func(ctx context.Context, a, z string) error {
				if a == "alice@example.org" && z == "bob@example.org" {
					return nil
				}
				return errors.New("no")
			}, user: "bob@example.org"},
		{name: "wrong password", responses: [][]byte{[]byte("\x00alice@example.org\x00wonder")}, want: ErrBadPassword},
		{name: "unknown user", responses: [][]byte{[]byte("\x00zed@example.org\x00x")}, want: ErrUnknownUser},
		{name: "one NUL", responses: [][]byte{[]byte("alice@example.org\x00wonderland")}, want: ErrMechanism},
		{name: "three NULs", responses: [][]byte{[]byte("\x00alice@example.org\x00wonderland\x00")}, want: ErrMechanism},
		{name: "empty authcid", responses: [][]byte{[]byte("\x00\x00wonderland")}, want: ErrMechanism},
		{name: "empty response", responses: [][]byte{nil, {}}, chal: []string{""}, want: ErrMechanism},
		{name: "huge", responses: [][]byte{bytes.Repeat([]byte{'a'}, 9000)}, want: ErrMechanism},
	} {
		t.Run(c.name, func(t *testing.T) {
			ta := newTestAuth(plainUsers())
			ta.Authorize = c.auth
			m, err := ta.NewMech("plain")
			if err != nil {
				t.Fatal(err)
			}
			chal, done, err := run(ctx, m, c.responses...)
			if c.want != nil {
				if !errors.Is(err, c.want) || done {
					t.Fatalf("got done=%v %v, want %v", done, err, c.want)
				}
				if ta.delayCount() != 1 {
					t.Errorf("%d failure delays, want 1", ta.delayCount())
				}
			} else if err != nil || !done || m.User() != c.user {
				t.Fatalf("got done=%v user %q %v, want %q", done, m.User(), err, c.user)
			}
			if !slices.Equal(chal, c.chal) {
				t.Errorf("challenges %q, want %q", chal, c.chal)
			}
			if _, _, err := m.Next(ctx, []byte("more")); !errors.Is(err, ErrMechanism) {
				t.Errorf("Next after the end = %v", err)
			}
			if strings.Contains(ta.logs.String(), "wonder") {
				t.Errorf("the log holds the password: %s", ta.logs.String())
			}
		})
	}
}

func TestLOGIN(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		responses [][]byte
		want      error
		chal      []string
	}{
		{"two steps", [][]byte{nil, []byte("alice@example.org"), []byte("wonderland")}, nil, []string{"Username:", "Password:"}},
		{"empty initial response", [][]byte{{}, []byte("alice@example.org"), []byte("wonderland")}, nil, []string{"Username:", "Password:"}},
		{"initial response", [][]byte{[]byte("alice@example.org"), []byte("wonderland")}, nil, []string{"Password:"}},
		{"wrong", [][]byte{[]byte("alice@example.org"), []byte("x")}, ErrBadPassword, []string{"Password:"}},
		{"empty user", [][]byte{nil, {}}, ErrMechanism, []string{"Username:"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ta := newTestAuth(plainUsers())
			m, _ := ta.NewMech("LOGIN")
			chal, done, err := run(ctx, m, c.responses...)
			if !slices.Equal(chal, c.chal) {
				t.Errorf("challenges %q, want %q", chal, c.chal)
			}
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("got %v, want %v", err, c.want)
				}
				return
			}
			if err != nil || !done || m.User() != "alice@example.org" {
				t.Fatalf("done=%v user %q %v", done, m.User(), err)
			}
		})
	}
}

// ---- CRAM-MD5 -------------------------------------------------------------

// pythonCRAM answers a CRAM-MD5 challenge with Python's hmac module.
func pythonCRAM(t *testing.T, user, secret, challenge string) []byte {
	t.Helper()
	py := oracle.Require(t, "python3")
	res, err := oracle.Exec(py, nil, "-c",
		`import hmac,hashlib,sys; u,p,c=sys.argv[1:]; sys.stdout.write(u+" "+hmac.new(p.encode(),c.encode(),hashlib.md5).hexdigest())`,
		user, secret, challenge)
	if err != nil || res.Code != 0 {
		t.Fatalf("python3: %v %s", err, res.Stderr)
	}
	return res.Stdout
}

func TestCRAMMD5(t *testing.T) {
	oracle.Require(t, "doveadm")
	ctx := context.Background()
	long := strings.Repeat("0123456789", 8) // longer than HMAC's block
	stored := func(scheme, pw string) string {
		res := doveadmPw(t, "-s", scheme, "-p", pw)
		if res.Code != 0 {
			t.Fatalf("doveadm pw -s %s: %s", scheme, res.Stderr)
		}
		return strings.TrimSpace(string(res.Stdout))
	}
	users := map[string]Credentials{
		"plain@x":   {Password: "{PLAIN}tanstaaftanstaaf"},
		"cram@x":    {Password: stored("CRAM-MD5", "tanstaaftanstaaf")},
		"hmac@x":    {Password: stored("HMAC-MD5", long)},
		"b64@x":     {Password: stored("PLAIN.B64", "tanstaaftanstaaf")},
		"crypted@x": {Password: stored("SHA512-CRYPT", "tanstaaftanstaaf")},
		"nologin@x": {Password: "{PLAIN}tanstaaftanstaaf", Extra: map[string]string{"nologin": ""}},
	}
	for _, c := range []struct {
		user, secret string
		client       string // "go" (net/smtp) or "python"
		want         error
	}{
		{"plain@x", "tanstaaftanstaaf", "go", nil},
		{"cram@x", "tanstaaftanstaaf", "python", nil},
		{"cram@x", "tanstaaftanstaaf", "go", nil},
		{"hmac@x", long, "python", nil},
		{"b64@x", "tanstaaftanstaaf", "go", nil},
		{"plain@x", "tanstaaf", "go", ErrBadPassword},
		{"cram@x", "wrong", "python", ErrBadPassword},
		{"crypted@x", "tanstaaftanstaaf", "go", ErrMechanism},
		{"nologin@x", "tanstaaftanstaaf", "go", ErrBadPassword},
		{"nobody@x", "x", "go", ErrUnknownUser},
	} {
		t.Run(c.user+"/"+c.client, func(t *testing.T) {
			ta := newTestAuth(users)
			m, err := ta.NewMech("CRAM-MD5")
			if err != nil {
				t.Fatal(err)
			}
			chal, done, err := m.Next(ctx, nil)
			if err != nil || done || !strings.HasPrefix(string(chal), "<") || !strings.HasSuffix(string(chal), "@mx.example.org>") {
				t.Fatalf("challenge %q, %v", chal, err)
			}
			var resp []byte
			if c.client == "python" {
				resp = pythonCRAM(t, c.user, c.secret, string(chal))
			} else if resp, err = smtp.CRAMMD5Auth(c.user, c.secret).Next(chal, true); err != nil {
				t.Fatal(err)
			}
			_, done, err = m.Next(ctx, resp)
			if c.want != nil {
				if !errors.Is(err, c.want) || done {
					t.Fatalf("got done=%v %v, want %v", done, err, c.want)
				}
				if ta.delayCount() != 1 {
					t.Errorf("%d delays, want 1", ta.delayCount())
				}
				return
			}
			if err != nil || !done || m.User() != c.user {
				t.Fatalf("done=%v user %q %v", done, m.User(), err)
			}
		})
	}
	// Malformed responses.
	for _, resp := range []string{"", "user", "user 123", "user " + strings.Repeat("z", 32), " " + strings.Repeat("0", 32)} {
		ta := newTestAuth(users)
		m, _ := ta.NewMech("CRAM-MD5")
		m.Next(ctx, nil)
		if _, _, err := m.Next(ctx, []byte(resp)); !errors.Is(err, ErrMechanism) {
			t.Errorf("response %q: %v, want ErrMechanism", resp, err)
		}
	}
	// No initial response allowed.
	ta := newTestAuth(users)
	m, _ := ta.NewMech("CRAM-MD5")
	if _, _, err := m.Next(ctx, []byte("x")); !errors.Is(err, ErrMechanism) {
		t.Errorf("initial response accepted: %v", err)
	}
	// Two challenges differ.
	m1, _ := ta.NewMech("CRAM-MD5")
	m2, _ := ta.NewMech("CRAM-MD5")
	c1, _, _ := m1.Next(ctx, nil)
	c2, _, _ := m2.Next(ctx, nil)
	if bytes.Equal(c1, c2) {
		t.Errorf("two challenges are the same: %q", c1)
	}
}

// ---- SCRAM-SHA-256 --------------------------------------------------------

// scramClient is a SCRAM-SHA-256 client written from RFC 5802 section 3,
// with the standard library only.
type scramClient struct {
	user, pass, authzid, cnonce string
	gs2, first                  string
	serverSig                   []byte
}

func hmac256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func saslName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

func (c *scramClient) clientFirst() []byte {
	c.gs2 = "n,,"
	if c.authzid != "" {
		c.gs2 = "n,a=" + saslName(c.authzid) + ","
	}
	c.first = "n=" + saslName(c.user) + ",r=" + c.cnonce
	return []byte(c.gs2 + c.first)
}

func (c *scramClient) clientFinal(serverFirst string) ([]byte, error) {
	var nonce, salt string
	iter := 0
	for _, f := range strings.Split(serverFirst, ",") {
		switch {
		case strings.HasPrefix(f, "r="):
			nonce = f[2:]
		case strings.HasPrefix(f, "s="):
			salt = f[2:]
		case strings.HasPrefix(f, "i="):
			iter, _ = strconv.Atoi(f[2:])
		}
	}
	if !strings.HasPrefix(nonce, c.cnonce) || len(nonce) == len(c.cnonce) || iter < 4096 {
		return nil, fmt.Errorf("bad server-first-message %q", serverFirst)
	}
	s, err := base64.StdEncoding.DecodeString(salt)
	if err != nil {
		return nil, err
	}
	salted, err := pbkdf2.Key(sha256.New, c.pass, s, iter, 32)
	if err != nil {
		return nil, err
	}
	clientKey := hmac256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(c.gs2)) + ",r=" + nonce
	authMessage := c.first + "," + serverFirst + "," + withoutProof
	sig := hmac256(storedKey[:], authMessage)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}
	c.serverSig = hmac256(hmac256(salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func (c *scramClient) checkServerFinal(msg string) error {
	if msg != "v="+base64.StdEncoding.EncodeToString(c.serverSig) {
		return fmt.Errorf("server signature %q does not prove the server", msg)
	}
	return nil
}

// scramStored makes "{SCRAM-SHA-256}iter,salt,StoredKey,ServerKey" the way
// the RFC defines the keys (independently of scheme.go).
func scramStored(pass string, salt []byte, iter int) string {
	salted, _ := pbkdf2.Key(sha256.New, pass, salt, iter, 32)
	stored := sha256.Sum256(hmac256(salted, "Client Key"))
	e := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("{SCRAM-SHA-256}%d,%s,%s,%s", iter, e(salt), e(stored[:]), e(hmac256(salted, "Server Key")))
}

// TestSCRAMRFC7677Vector replays RFC 7677 section 3's exchange and checks
// the server's messages byte for byte.
func TestSCRAMRFC7677Vector(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	ta := newTestAuth(map[string]Credentials{"user": {Password: scramStored("pencil", salt, 4096)}})
	ta.scramNonc = func() string { return "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" }
	m, err := ta.NewMech("SCRAM-SHA-256")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ch, done, err := m.Next(ctx, []byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
	if want := "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"; string(ch) != want || done || err != nil {
		t.Fatalf("server-first %q, %v, %v; want %q", ch, done, err, want)
	}
	ch, done, err = m.Next(ctx, []byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if want := "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; string(ch) != want || done || err != nil {
		t.Fatalf("server-final %q, %v, %v; want %q", ch, done, err, want)
	}
	if _, done, err = m.Next(ctx, []byte{}); !done || err != nil || m.User() != "user" {
		t.Fatalf("end: done=%v %v user %q", done, err, m.User())
	}
}

func TestSCRAM(t *testing.T) {
	oracle.Require(t, "doveadm")
	ctx := context.Background()
	res := doveadmPw(t, "-s", "SCRAM-SHA-256", "-p", "pencil")
	if res.Code != 0 {
		t.Fatalf("doveadm pw: %s", res.Stderr)
	}
	users := map[string]Credentials{
		"dove@x":    {Password: strings.TrimSpace(string(res.Stdout))},
		"plain@x":   {Password: "{PLAIN}pencil"},
		"crypted@x": {Password: "{SHA512-CRYPT}" + mustCrypt("pencil", "$6$abc")},
		"a,b=c@x":   {Password: "{PLAIN}pencil"},
	}
	for _, c := range []struct {
		name                string
		user, pass, authzid string
		want                error
		auth                func(ctx context.Context, a, z string) error
		identity            string
	}{
		{name: "doveadm keys", user: "dove@x", pass: "pencil"},
		{name: "from plaintext", user: "plain@x", pass: "pencil"},
		{name: "escaped name", user: "a,b=c@x", pass: "pencil"},
		{name: "authzid same", user: "plain@x", pass: "pencil", authzid: "plain@x"},
		{name: "authzid other refused", user: "plain@x", pass: "pencil", authzid: "dove@x", want: ErrBadPassword},
		{name: "authzid other allowed", user: "plain@x", pass: "pencil", authzid: "dove@x", identity: "dove@x",
			auth: func(ctx context.Context, a, z string) error { return nil }},
		{name: "wrong password", user: "dove@x", pass: "pen", want: ErrBadPassword},
		{name: "wrong password plaintext", user: "plain@x", pass: "pen", want: ErrBadPassword},
		{name: "unknown user", user: "nobody@x", pass: "pencil", want: ErrUnknownUser},
		{name: "no usable secret", user: "crypted@x", pass: "pencil", want: ErrMechanism},
	} {
		t.Run(c.name, func(t *testing.T) {
			ta := newTestAuth(users)
			ta.Authorize = c.auth
			ta.UsernameChars = AnyUsernameChars // for "a,b=c@x"
			m, _ := ta.NewMech("SCRAM-SHA-256")
			cl := &scramClient{user: c.user, pass: c.pass, authzid: c.authzid, cnonce: "fyko+d2lbbFgONRv9qkxdawL"}
			ch, done, err := m.Next(ctx, cl.clientFirst())
			if err != nil || done {
				// Unknown users and missing secrets fail at the end, not here.
				t.Fatalf("client-first: %v", err)
			}
			final, err := cl.clientFinal(string(ch))
			if err != nil {
				t.Fatal(err)
			}
			ch, done, err = m.Next(ctx, final)
			if c.want != nil {
				if !errors.Is(err, c.want) || done {
					t.Fatalf("got done=%v %v, want %v", done, err, c.want)
				}
				if ta.delayCount() != 1 {
					t.Errorf("%d delays, want 1", ta.delayCount())
				}
				return
			}
			if err != nil || done {
				t.Fatalf("client-final: done=%v %v", done, err)
			}
			if err := cl.checkServerFinal(string(ch)); err != nil {
				t.Fatal(err)
			}
			if _, done, err = m.Next(ctx, nil); !done || err != nil {
				t.Fatalf("end: done=%v %v", done, err)
			}
			want := c.identity
			if want == "" {
				want = c.user
			}
			if m.User() != want {
				t.Errorf("user %q, want %q", m.User(), want)
			}
		})
	}
}

// TestSCRAMUnknownUserLooksAlike: the server-first message for an unknown
// user has the same form as for a known one, and the same salt each time.
func TestSCRAMUnknownUserLooksAlike(t *testing.T) {
	ta := newTestAuth(map[string]Credentials{"plain@x": {Password: "{PLAIN}p"}})
	ctx := context.Background()
	first := func(user string) string {
		m, _ := ta.NewMech("SCRAM-SHA-256")
		ch, _, err := m.Next(ctx, []byte("n,,n="+user+",r=abc"))
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(ch), ",")
		return rest
	}
	a, b := first("ghost@x"), first("ghost@x")
	if a != b || !strings.HasPrefix(a, "s=") || !strings.HasSuffix(a, ",i=4096") {
		t.Errorf("unknown user's salt/iterations %q then %q", a, b)
	}
	if len(first("plain@x")) != len(a) {
		t.Errorf("known and unknown users' server-first messages differ in shape")
	}
}

func TestSCRAMMalformed(t *testing.T) {
	ctx := context.Background()
	ta := newTestAuth(map[string]Credentials{"u": {Password: "{PLAIN}p"}})
	for _, first := range []string{
		"p=tls-unique,,n=u,r=abc", // channel binding not offered
		"x,,n=u,r=abc",
		"n,,m=ext,n=u,r=abc",
		"n,,n=u",
		"n,,r=abc,n=u",
		"n,,n=,r=abc",
		"n,,n=u=,r=abc",
		"n,,n=u=2X,r=abc",
		"n,,n=u,r=",
		"n,,n=u,r=a b",
		"n,b=x,n=u,r=abc",
		"n,a=,n=u,r=abc",
		"nope",
	} {
		m, _ := ta.NewMech("SCRAM-SHA-256")
		if _, _, err := m.Next(ctx, []byte(first)); !errors.Is(err, ErrMechanism) {
			t.Errorf("client-first %q: %v, want ErrMechanism", first, err)
		}
	}
	// Finals tampered with after a good first step.
	cl := &scramClient{user: "u", pass: "p", cnonce: "abc"}
	for _, tamper := range []func(string) string{
		func(s string) string { return strings.Replace(s, "c=biws", "c=eSws", 1) },        // y,, instead of n,,
		func(s string) string { return strings.Replace(s, ",r=abc", ",r=abd", 1) },        // nonce
		func(s string) string { i := strings.LastIndex(s, ",p="); return s[:i] },          // no proof
		func(s string) string { return s[:len(s)-4] + "AAA=" },                            // proof bits
		func(s string) string { i := strings.LastIndex(s, ",p="); return s[:i] + ",p=!" }, // proof base64
	} {
		m, _ := ta.NewMech("SCRAM-SHA-256")
		ch, _, err := m.Next(ctx, cl.clientFirst())
		if err != nil {
			t.Fatal(err)
		}
		final, _ := cl.clientFinal(string(ch))
		bad := tamper(string(final))
		if _, done, err := m.Next(ctx, []byte(bad)); err == nil || done {
			t.Errorf("tampered final %q accepted", bad)
		}
	}
	// Data after server-final.
	m, _ := ta.NewMech("SCRAM-SHA-256")
	ch, _, _ := m.Next(ctx, cl.clientFirst())
	final, _ := cl.clientFinal(string(ch))
	m.Next(ctx, final)
	if _, _, err := m.Next(ctx, []byte("x")); !errors.Is(err, ErrMechanism) {
		t.Errorf("data after server-final: %v", err)
	}
	// Without an initial response the server asks for it.
	m, _ = ta.NewMech("SCRAM-SHA-256")
	if ch, done, err := m.Next(ctx, nil); len(ch) != 0 || done || err != nil {
		t.Errorf("no initial response: %q %v %v", ch, done, err)
	}
}

// ---- mechanism lists ------------------------------------------------------

func TestMechanisms(t *testing.T) {
	fn := PassDBFunc(func(ctx context.Context, u string) (Credentials, error) { return Credentials{}, ErrUnknownUser })
	noPlain, _ := ParseSecurityOptions("noanonymous, noplaintext")
	for _, c := range []struct {
		name string
		a    *Authenticator
		opts SecurityOptions
		want []string
	}{
		{"func default", &Authenticator{PassDB: fn}, SecurityOptions{}, []string{"PLAIN", "LOGIN"}},
		{"func noplaintext", &Authenticator{PassDB: fn}, noPlain, nil},
		{"explicit", &Authenticator{PassDB: fn, AuthMechanisms: []string{"cram-md5", "plain", "bogus", "PLAIN"}}, SecurityOptions{}, []string{"CRAM-MD5", "PLAIN"}},
		{"explicit noplaintext", &Authenticator{PassDB: fn, AuthMechanisms: []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"}}, noPlain, []string{"CRAM-MD5", "SCRAM-SHA-256"}},
		{"nodictionary", &Authenticator{PassDB: fn, AuthMechanisms: []string{"PLAIN", "CRAM-MD5", "SCRAM-SHA-256"}}, SecurityOptions{NoDictionary: true}, []string{"PLAIN", "SCRAM-SHA-256"}},
		{"mutual_auth", &Authenticator{PassDB: fn, AuthMechanisms: []string{"PLAIN", "CRAM-MD5", "SCRAM-SHA-256"}}, SecurityOptions{MutualAuth: true}, []string{"SCRAM-SHA-256"}},
		{"forward_secrecy", &Authenticator{PassDB: fn, AuthMechanisms: []string{"PLAIN", "SCRAM-SHA-256"}}, SecurityOptions{ForwardSecrecy: true}, nil},
		{"checker", &Authenticator{PassDB: CheckPasswordFunc(func(ctx context.Context, u, p string) (Credentials, error) { return Credentials{}, nil })}, SecurityOptions{}, []string{"PLAIN", "LOGIN"}},
		{"schemes all plain", &Authenticator{PassDB: schemeList{"PLAIN", "CLEARTEXT"}}, SecurityOptions{}, []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"}},
		{"schemes cram", &Authenticator{PassDB: schemeList{"CRAM-MD5", "PLAIN"}}, SecurityOptions{}, []string{"PLAIN", "LOGIN", "CRAM-MD5"}},
		{"schemes scram", &Authenticator{PassDB: schemeList{"SCRAM-SHA-256"}}, SecurityOptions{}, []string{"PLAIN", "LOGIN", "SCRAM-SHA-256"}},
		{"schemes mixed", &Authenticator{PassDB: schemeList{"PLAIN", "SHA512-CRYPT"}}, SecurityOptions{}, []string{"PLAIN", "LOGIN"}},
		{"schemes none", &Authenticator{PassDB: schemeList{}}, SecurityOptions{}, []string{"PLAIN", "LOGIN"}},
	} {
		if got := c.a.Mechanisms(c.opts); !slices.Equal(got, c.want) {
			t.Errorf("%s: Mechanisms = %q, want %q", c.name, got, c.want)
		}
	}
	a := &Authenticator{PassDB: fn}
	if _, err := a.NewMech("CRAM-MD5"); !errors.Is(err, ErrMechanism) {
		t.Errorf("NewMech of a mechanism not enabled: %v", err)
	}
	if _, err := ParseSecurityOptions("noplaintext, nosuch"); err == nil {
		t.Errorf("ParseSecurityOptions accepted an unknown word")
	}
	if f, _ := MechanismFlags("cram-md5"); !slices.Equal(f.Names(), []string{"dictionary", "active"}) {
		t.Errorf("CRAM-MD5 flags %q", f.Names())
	}
}

type schemeList []string

func (s schemeList) LookupCredentials(ctx context.Context, u string) (Credentials, error) {
	return Credentials{}, ErrUnknownUser
}
func (s schemeList) PasswordSchemes() []string { return s }

// TestCheckPasswordFunc: a PassDB that checks passwords itself serves
// PLAIN and refuses CRAM-MD5 exchanges.
func TestCheckPasswordFunc(t *testing.T) {
	ctx := context.Background()
	db := CheckPasswordFunc(func(ctx context.Context, u, p string) (Credentials, error) {
		if u == "remote@x" && p == "pw" {
			return Credentials{User: "Remote@X"}, nil
		}
		return Credentials{}, ErrBadPassword
	})
	a := &Authenticator{PassDB: db, FailureDelay: -1, Logger: discardLog, AuthMechanisms: []string{"PLAIN", "CRAM-MD5"}}
	if u, err := a.Verify(ctx, "remote@x", "pw"); err != nil || u.Name != "Remote@X" {
		t.Errorf("Verify = %+v, %v", u, err)
	}
	if _, err := a.Verify(ctx, "remote@x", "no"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("Verify wrong = %v", err)
	}
	m, _ := a.NewMech("CRAM-MD5")
	ch, _, _ := m.Next(ctx, nil)
	resp, _ := smtp.CRAMMD5Auth("remote@x", "pw").Next(ch, true)
	if _, _, err := m.Next(ctx, resp); !errors.Is(err, ErrMechanism) {
		t.Errorf("CRAM-MD5 through a checker = %v, want ErrMechanism", err)
	}
}
