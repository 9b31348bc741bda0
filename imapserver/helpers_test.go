package imapserver

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mailbox"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	dir  string
	home string
	hub  *mailbox.Hub
	auth *auth.Authenticator
	log  *syncBuf
}

// newEnv makes a passwd-file user alice (password "secret", home in a
// temporary directory) and a hub of its own.
func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home", "alice")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 { // passwd-file users need a uid above 0; root reads anyway
		uid, gid = 65534, 65534
	}
	pw := fmt.Sprintf("alice:{PLAIN}secret:%d:%d::%s::\n", uid, gid, home)
	path := filepath.Join(dir, "passwd")
	if err := os.WriteFile(path, []byte(pw), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := auth.OpenPasswdFile(path, auth.PasswdFileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hub := mailbox.NewHub(mailbox.HubOptions{})
	t.Cleanup(func() { hub.Close() })
	lb := &syncBuf{}
	a := &auth.Authenticator{PassDB: db, UserDB: db, FailureDelay: -1, Logger: slog.New(slog.NewTextHandler(lb, nil))}
	return &env{dir: dir, home: home, hub: hub, auth: a, log: lb}
}

func (e *env) options() Options {
	return Options{
		Auth:               e.auth,
		Hub:                e.hub,
		AllowPlaintextAuth: true,
		Logger:             slog.New(slog.NewTextHandler(e.log, nil)),
		Hostname:           "test.example",
	}
}

// start runs a server on a loopback port until the test ends.
func (e *env) start(t testing.TB, opts Options) (*Server, string) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s, ln.Addr().String()
}

// runClient runs testdata/client.py; each output line "KEY VALUE" goes
// to onLine (which may act, e.g. deliver mail) and into the result.
func runClient(t testing.TB, addr, scenario string, onLine func(key, val string)) map[string][]string {
	t.Helper()
	py := oracle.Require(t, "python3")
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(py, "testdata/client.py", host, port, "alice", "secret", scenario)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	res := map[string][]string{}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		res[k] = append(res[k], v)
		if onLine != nil {
			onLine(k, v)
		}
	}
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client.py %s: %v\n%s\nresult so far: %v", scenario, err, stderr.String(), res)
	}
	return res
}

func one(t testing.TB, res map[string][]string, k string) string {
	t.Helper()
	if len(res[k]) != 1 {
		t.Fatalf("%s: got %q, want one line (all: %v)", k, res[k], res)
	}
	return res[k][0]
}

func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imap.test"},
		DNSNames:     []string{"imap.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

type plainSASL struct{ user, pass string }

func plainClient(user, pass string) *plainSASL { return &plainSASL{user, pass} }

func (p *plainSASL) Start() (string, []byte, error) {
	return "PLAIN", []byte("\x00" + p.user + "\x00" + p.pass), nil
}

func (p *plainSASL) Next(challenge []byte) ([]byte, error) { return nil, nil }
