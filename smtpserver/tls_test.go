package smtpserver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
)

// certFiles writes a self-signed certificate for names to dir/base.crt
// and dir/base.key.
func certFiles(t testing.TB, dir, base string, names ...string) (tls.Certificate, string, string) {
	t.Helper()
	cert, err := SelfSigned(names...)
	if err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	if err := WriteCertificatePEM(cert, crt, key); err != nil {
		t.Fatal(err)
	}
	return cert, crt, key
}

func mainCF(t testing.TB, text string) *config.Config {
	t.Helper()
	c, err := config.Parse("main.cf", strings.NewReader("compatibility_level = 3.6\n"+text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseTLSProtocols(t *testing.T) {
	for _, tc := range []struct {
		in       string
		min, max uint16
		err      bool
	}{
		{">=TLSv1", tls.VersionTLS10, tls.VersionTLS13, false},
		{">=TLSv1.2", tls.VersionTLS12, tls.VersionTLS13, false},
		{"!SSLv2, !SSLv3", tls.VersionTLS10, tls.VersionTLS13, false},
		{"!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", tls.VersionTLS12, tls.VersionTLS13, false},
		{"<=TLSv1.2", tls.VersionTLS10, tls.VersionTLS12, false},
		{"!TLSv1.3", tls.VersionTLS10, tls.VersionTLS12, false},
		{"TLSv1.2 TLSv1.3", tls.VersionTLS12, tls.VersionTLS13, false},
		{"tlsv1.3", tls.VersionTLS13, tls.VersionTLS13, false},
		{"", tls.VersionTLS10, tls.VersionTLS13, false},
		{"SSLv3", 0, 0, true},
		{">=TLSv1.4", 0, 0, true},
		{">=TLSv1.3 <=TLSv1.2", 0, 0, true},
	} {
		lo, hi, err := parseTLSProtocols(tc.in)
		if (err != nil) != tc.err || lo != tc.min || hi != tc.max {
			t.Errorf("parseTLSProtocols(%q) = %x, %x, %v; want %x, %x, error %v", tc.in, lo, hi, err, tc.min, tc.max, tc.err)
		}
	}
}

func TestCipherExclusions(t *testing.T) {
	ids, err := cipherSuites("medium", []string{"AES128", "CBC", "!TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 {
		t.Fatal("everything excluded")
	}
	for _, id := range ids {
		n := tls.CipherSuiteName(id)
		if strings.Contains(n, "AES_128") || strings.Contains(n, "CBC") || n == "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" {
			t.Errorf("excluded suite %s kept", n)
		}
	}
	if ids, err := cipherSuites("high", nil); err != nil || ids != nil {
		t.Errorf("no exclusions: %v, %v; want Go's defaults (nil)", ids, err)
	}
}

func TestTLSConfigFromErrors(t *testing.T) {
	dir := t.TempDir()
	_, crt, key := certFiles(t, dir, "server", "mx.example.com")
	good := fmt.Sprintf("smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n", crt, key)
	for _, tc := range []struct{ main, param string }{
		{"smtpd_tls_security_level = maybe\n", "smtpd_tls_security_level"},
		{"smtpd_tls_security_level = encrypt\n", "smtpd_tls_cert_file"},
		{"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = /nonexistent.pem\n", "smtpd_tls_cert_file"},
		{"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = " + crt + "\n", "smtpd_tls_chain_files"},
		{"smtpd_tls_security_level = may\nsmtpd_tls_protocols = >=TLSv2\n" + good, "smtpd_tls_protocols"},
		{"smtpd_tls_security_level = encrypt\nsmtpd_tls_mandatory_protocols = SSLv3\n" + good, "smtpd_tls_mandatory_protocols"},
		{"smtpd_tls_security_level = may\nsmtpd_tls_ciphers = null\n" + good, "smtpd_tls_ciphers"},
		{"smtpd_tls_security_level = encrypt\nsmtpd_tls_req_ccert = yes\n" + good, "smtpd_tls_req_ccert"},
		{"smtpd_tls_security_level = may\nsmtpd_tls_CAfile = " + key + "\n" + good, "smtpd_tls_CAfile"},
		{"smtpd_tls_security_level = may\nsmtpd_tls_fingerprint_digest = sha3\n" + good, "smtpd_tls_fingerprint_digest"},
		{"smtpd_tls_security_level = may\nsmtpd_tls_auth_only = perhaps\n" + good, "smtpd_tls_auth_only"},
	} {
		_, _, err := TLSConfigFrom(mainCF(t, tc.main), RoleSMTP)
		if err == nil || !strings.Contains(err.Error(), tc.param) {
			t.Errorf("%q: err = %v, want one naming %s", tc.main, err, tc.param)
		}
	}
}

func TestTLSConfigFromLevels(t *testing.T) {
	dir := t.TempDir()
	_, crt, key := certFiles(t, dir, "server", "mx.example.com")
	// No certificate at level may: TLS off with a warning, as smtpd.
	cfg, pol, err := TLSConfigFrom(mainCF(t, "smtpd_tls_security_level = may\n"), RoleSMTP)
	if err != nil || cfg != nil || pol.Level != "none" || pol.Warning == "" {
		t.Errorf("may without certificate: %v, %+v, %v", cfg, pol, err)
	}
	good := fmt.Sprintf("smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n", crt, key)
	for _, tc := range []struct {
		main    string
		role    Role
		level   string
		wrapper bool
		min     uint16
	}{
		{good, RoleSMTP, "none", false, 0},
		{"smtpd_use_tls = yes\n" + good, RoleSMTP, "may", false, tls.VersionTLS10},
		{"smtpd_enforce_tls = yes\n" + good, RoleSMTP, "encrypt", false, tls.VersionTLS10},
		{"smtpd_tls_security_level = may\nsmtpd_tls_protocols = >=TLSv1.2\n" + good, RoleSMTP, "may", false, tls.VersionTLS12},
		{"smtpd_tls_security_level = may\nsmtpd_tls_mandatory_protocols = >=TLSv1.3\n" + good, RoleSubmission, "encrypt", false, tls.VersionTLS13},
		{good, RoleSubmissions, "encrypt", true, tls.VersionTLS10},
		{"smtpd_tls_security_level = encrypt\n" + good, RoleLMTP, "none", false, 0},
	} {
		cfg, pol, err := TLSConfigFrom(mainCF(t, tc.main), tc.role)
		if err != nil {
			t.Errorf("%q role %d: %v", tc.main, tc.role, err)
			continue
		}
		if pol.Level != tc.level || pol.WrapperMode != tc.wrapper || (cfg == nil) != (tc.level == "none") {
			t.Errorf("%q role %d: level %q wrapper %v cfg %v; want %q %v", tc.main, tc.role, pol.Level, pol.WrapperMode, cfg != nil, tc.level, tc.wrapper)
			continue
		}
		if cfg != nil && cfg.MinVersion != tc.min {
			t.Errorf("%q: MinVersion %x, want %x", tc.main, cfg.MinVersion, tc.min)
		}
	}
}

func TestChainFiles(t *testing.T) {
	dir := t.TempDir()
	a, err := SelfSigned("a.example")
	if err != nil {
		t.Fatal(err)
	}
	b, err := SelfSigned("b.example")
	if err != nil {
		t.Fatal(err)
	}
	fa, fb := filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.pem")
	if err := WriteCertificatePEM(a, fa, fa); err != nil {
		t.Fatal(err)
	}
	if err := WriteCertificatePEM(b, fb, fb); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := TLSConfigFrom(mainCF(t, "smtpd_tls_security_level = may\nsmtpd_tls_chain_files = "+fa+", "+fb+"\n"), RoleSMTP)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 2 || !bytes.Equal(cfg.Certificates[0].Certificate[0], a.Certificate[0]) ||
		!bytes.Equal(cfg.Certificates[1].Certificate[0], b.Certificate[0]) {
		t.Errorf("chain files gave %d certificates, want a's and b's", len(cfg.Certificates))
	}
}

// tlsServer runs tls.NewListener over a Listener (implicit TLS, the
// submissions stack) and hands out the server side of each session.
func tlsServer(t *testing.T, cfg *tls.Config) (string, <-chan *tls.Conn) {
	t.Helper()
	ln, addr := startListener(t, ListenerConfig{Limits: Limits{ConnectionCountLimit: 10}})
	tl := tls.NewListener(ln, cfg)
	ch := make(chan *tls.Conn, 4)
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					tc.Close()
					return
				}
				fmt.Fprintf(tc, "220 mx.example.com ESMTP\r\n")
				ch <- tc
				bufio.NewReader(tc).ReadString('\n')
				fmt.Fprintf(tc, "221 2.0.0 Bye\r\n")
				tc.Close()
			}()
		}
	}()
	return addr, ch
}

func TestTLSClientCertificates(t *testing.T) {
	dir := t.TempDir()
	_, crt, key := certFiles(t, dir, "server", "mx.example.com")
	trusted, trustedCrt, _ := certFiles(t, dir, "trusted", "trusted.client.example")
	stranger, strangerCrt, _ := certFiles(t, dir, "stranger", "stranger.example")
	cfg, pol, err := TLSConfigFrom(mainCF(t, fmt.Sprintf(`smtpd_tls_security_level = may
smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpd_tls_ask_ccert = yes
smtpd_tls_CAfile = %s
`, crt, key, trustedCrt)), RoleSubmissions)
	if err != nil {
		t.Fatal(err)
	}
	addr, sessions := tlsServer(t, cfg)
	for _, tc := range []struct {
		name     string
		cert     *tls.Certificate
		certFile string
		verified bool
	}{
		{"trusted", &trusted, trustedCrt, true},
		{"untrusted", &stranger, strangerCrt, false},
		{"none", nil, "", false},
	} {
		ccfg := &tls.Config{InsecureSkipVerify: true}
		if tc.cert != nil {
			// Sent whatever CAs the request names (the server names
			// those of smtpd_tls_CAfile), as openssl s_client does.
			cert := tc.cert
			ccfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		c, err := tls.Dial("tcp", addr, ccfg)
		if err != nil {
			t.Fatalf("%s: handshake: %v", tc.name, err)
		}
		banner, _ := bufio.NewReader(c).ReadString('\n')
		if banner != "220 mx.example.com ESMTP\r\n" {
			t.Errorf("%s: banner %q", tc.name, banner)
		}
		srv := <-sessions
		if _, ok := peerOf(srv); !ok {
			t.Errorf("%s: no PeerConn under the *tls.Conn", tc.name)
		}
		cs := srv.ConnectionState()
		info, err := pol.TLSInfo(&cs)
		if err != nil {
			t.Fatal(err)
		}
		if info.PeerCertVerified != tc.verified {
			t.Errorf("%s: PeerCertVerified = %v, want %v", tc.name, info.PeerCertVerified, tc.verified)
		}
		if tc.cert == nil {
			if info.CertFingerprint != "" {
				t.Errorf("%s: fingerprint %q without a certificate", tc.name, info.CertFingerprint)
			}
		} else {
			want := restrictions.Fingerprint(sha256.New, tc.cert.Leaf.Raw)
			if info.CertFingerprint != want {
				t.Errorf("%s: fingerprint %s, want %s", tc.name, info.CertFingerprint, want)
			}
			opensslFingerprints(t, tc.certFile, info)
		}
		fmt.Fprintf(c, "QUIT\r\n")
		c.Close()
	}
}

// opensslFingerprints checks the certificate and public-key fingerprints
// against openssl's, computed the way Postfix's documentation tells an
// admin to compute them for relay_clientcerts / check_ccert_access.
func opensslFingerprints(t *testing.T, certFile string, info *restrictions.TLSInfo) {
	t.Helper()
	openssl := oracle.Require(t, "openssl")
	out, err := exec.Command(openssl, "x509", "-noout", "-fingerprint", "-sha256", "-in", certFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	// "sha256 Fingerprint=AB:CD:..."
	_, fp, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
	if fp != info.CertFingerprint {
		t.Errorf("certificate fingerprint %s, openssl says %s", info.CertFingerprint, fp)
	}
	cmd := exec.Command("sh", "-c", openssl+" x509 -in "+certFile+" -noout -pubkey | "+openssl+" pkey -pubin -outform DER | "+openssl+" dgst -sha256 -c")
	out, err = cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	// "SHA2-256(stdin)= ab:cd:..."
	f := strings.Fields(string(out))
	if len(f) == 0 || strings.ToUpper(f[len(f)-1]) != info.PubkeyFingerprint {
		t.Errorf("public key fingerprint %s, openssl says %q", info.PubkeyFingerprint, out)
	}
}

// TestOpenSSLClient speaks to the implicit-TLS stack with openssl
// s_client: the protocol floor from smtpd_tls_mandatory_protocols holds.
func TestOpenSSLClient(t *testing.T) {
	openssl := oracle.Require(t, "openssl")
	dir := t.TempDir()
	_, crt, key := certFiles(t, dir, "server", "mx.example.com")
	cfg, _, err := TLSConfigFrom(mainCF(t, fmt.Sprintf(`smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpd_tls_mandatory_protocols = >=TLSv1.3
`, crt, key)), RoleSubmissions)
	if err != nil {
		t.Fatal(err)
	}
	addr, sessions := tlsServer(t, cfg)
	go func() {
		for range sessions {
		}
	}()
	run := func(version string) (string, error) {
		cmd := exec.Command(openssl, "s_client", "-connect", addr, "-servername", "mx.example.com", version, "-crlf", "-quiet")
		cmd.Stdin = strings.NewReader("QUIT\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("-tls1_3")
	if err != nil || !strings.Contains(out, "220 mx.example.com ESMTP") || !strings.Contains(out, "221 2.0.0 Bye") {
		t.Errorf("TLS 1.3 client: %v\n%s", err, out)
	}
	out, err = run("-tls1_2")
	if err == nil && strings.Contains(out, "220 ") {
		t.Errorf("TLS 1.2 client got through a >=TLSv1.3 floor:\n%s", out)
	}
}

func TestSelfSigned(t *testing.T) {
	cert, err := SelfSigned("mx.example.com", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Leaf.VerifyHostname("mx.example.com"); err != nil {
		t.Error(err)
	}
	if err := cert.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
}

// TestImplicitTLSNewSessionLimit: on port 465 the new-TLS-session rate
// limit counts full handshakes only and refuses with a 421 sent over TLS
// after the handshake; a resumed session is not counted.
func TestImplicitTLSNewSessionLimit(t *testing.T) {
	cert, err := SelfSigned("mx.test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Hostname: "mx.test", Role: RoleSubmissions, Handoff: discardHandoff{},
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	inner := listen(t)
	ln, err := NewListener(inner, ListenerConfig{Hostname: "mx.test", Service: "submissions",
		Limits: Limits{NewTLSSessionRateLimit: 1, TimeUnit: time.Minute, Hostname: "mx.test"}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cache := tls.NewLRUClientSessionCache(4)
	greet := func(cc *tls.Config) (string, bool) {
		c, err := tls.Dial("tcp", inner.Addr().String(), cc)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		resumed := c.ConnectionState().DidResume
		fmt.Fprintf(c, "QUIT\r\n")
		return strings.TrimSpace(line), resumed
	}
	withCache := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache}
	for i, want := range []struct {
		cc      *tls.Config
		greet   string
		resumed bool
	}{
		{withCache, "220 mx.test ESMTP Postfix", false},
		{withCache, "220 mx.test ESMTP Postfix", true},
		{&tls.Config{InsecureSkipVerify: true}, "421 4.7.0 mx.test Error: too many new TLS sessions from unknown[127.0.0.1]", false},
	} {
		got, resumed := greet(want.cc)
		if got != want.greet || resumed != want.resumed {
			t.Errorf("connection %d: %q (resumed %v), want %q (resumed %v)", i+1, got, resumed, want.greet, want.resumed)
		}
	}
}
