package smtpserver_test

// A differential test of the Received: header with
// smtpd_tls_received_header = yes and smtpd_sasl_authenticated_header =
// yes: the same sessions (real STARTTLS, real SMTP AUTH) are played against
// a private Postfix 3.7, which keeps the message on hold
// (smtpd_data_restrictions = check_client_access static:HOLD) so that
// "postcat -hq ID" shows the header it wrote, and against postkit, whose
// hand-off records the message. The headers must be the same byte for
// byte but for the queue ID and the date.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// rcCert is a certificate and key in PEM, signed by parent (self-signed
// when parent is nil).
type rcCert struct {
	cert *x509.Certificate
	key  any
	pair tls.Certificate
	pem  string // certificate
	kpem string // key
}

func rcNewCert(t *testing.T, cn string, key any, parent *rcCert, ca bool) *rcCert {
	t.Helper()
	pub := key.(crypto.Signer).Public()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: ca, DNSNames: []string{cn}}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, pub, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &rcCert{key: key}
	c.cert, _ = x509.ParseCertificate(der)
	c.pem = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	c.kpem = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	if c.pair, err = tls.X509KeyPair([]byte(c.pem), []byte(c.kpem)); err != nil {
		t.Fatal(err)
	}
	return c
}

// rcSession is one client session: how it speaks TLS and whether it
// logs in.
type rcSession struct {
	name string
	// tls is nil for a plaintext session.
	tls  *tls.Config
	auth bool
	// want are texts Postfix's header must hold, so that the comparison
	// means something.
	want []string
}

// rcReceived plays s on addr and returns the queue ID from "250 ... queued
// as ID".
func rcPlay(t *testing.T, addr string, s rcSession) string {
	t.Helper()
	c := smtptest.Dial(t, addr)
	defer c.Close()
	c.Cmd("EHLO client.example")
	if s.tls != nil {
		if r := c.Cmd("STARTTLS"); r.Code != 220 {
			t.Fatalf("STARTTLS: %s", r)
		}
		tc := tls.Client(c.NetConn(), s.tls.Clone())
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake with %s: %v", addr, err)
		}
		c.Reset(tc)
		c.Cmd("EHLO client.example")
	}
	if s.auth {
		if r := c.Cmd("AUTH PLAIN " + aoPlain(aoCarol, aoCarolPass)); r.Code != 235 {
			t.Fatalf("AUTH: %s", r)
		}
	}
	for _, l := range []string{"MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "DATA"} {
		if r := c.Cmd(l); r.Code >= 400 {
			t.Fatalf("%s: %s", l, r)
		}
	}
	r := c.Data("Subject: received test\r\n\r\nhello\r\n")
	m := regexp.MustCompile(`queued as (\w+)`).FindStringSubmatch(r.String())
	if m == nil {
		t.Fatalf("end of data: %s", r)
	}
	return m[1]
}

var (
	rcIDRe   = regexp.MustCompile(` id \w+`)
	rcDateRe = regexp.MustCompile(`; [A-Z][a-z]{2}, .*$`)
)

// rcHeader returns the first Received: header of a message, lines
// joined with "\n", with the queue ID and the date masked.
func rcHeader(msg string) string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	var out []string
	for l := range strings.SplitSeq(msg, "\n") {
		if len(out) == 0 {
			if strings.HasPrefix(l, "Received:") {
				out = append(out, l)
			}
			continue
		}
		if l == "" || l[0] != ' ' && l[0] != '\t' {
			break
		}
		out = append(out, l)
	}
	h := rcIDRe.ReplaceAllString(strings.Join(out, "\n"), " id QUEUEID")
	return rcDateRe.ReplaceAllString(h, "; DATE")
}

func TestReceivedHeaderAgainstPostfix(t *testing.T) {
	oracle.Require(t, "postfix")
	t.Parallel()
	postcat := oracle.Require(t, "postcat")
	dir, err := os.MkdirTemp("", "rcvd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	clKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec := rcNewCert(t, "mx.oracle.test", ecKey, nil, false)
	rs := rcNewCert(t, "mx.oracle.test", rsaKey, nil, false)
	ca := rcNewCert(t, "Test CA", caKey, nil, true)
	client := rcNewCert(t, "client.example", clKey, ca, false)
	selfClient := rcNewCert(t, "self.example", clKey, nil, false)
	for name, data := range map[string]string{"ec.crt": ec.pem, "ec.key": ec.kpem, "rsa.crt": rs.pem,
		"rsa.key": rs.kpem, "ca.crt": ca.pem} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := aoAuthenticator(t, slog.New(slog.DiscardHandler))
	sock := aoServeDovecot(t, a)
	base := fmt.Sprintf(`smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_sasl_authenticated_header = yes
smtpd_data_restrictions = check_client_access static:HOLD
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = %s
smtpd_tls_cert_file = %s/CERT.crt
smtpd_tls_key_file = %s/CERT.key
`, sock, dir, dir)
	x25519 := []tls.CurveID{tls.X25519}
	tls13 := func(curves []tls.CurveID, certs ...tls.Certificate) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, CurvePreferences: curves, Certificates: certs}
	}
	tls12 := func(certs ...tls.Certificate) *tls.Config {
		// An ECDSA P-256 server certificate needs P-256 in the client's
		// groups under TLS 1.2 (OpenSSL checks).
		return &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}, Certificates: certs}
	}
	resumable := tls13(x25519)
	resumable.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	resumableCert := tls13(x25519, client.pair)
	resumableCert.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	servers := []struct {
		name, cert, main string
		sessions         []rcSession
	}{
		{"ecdsa", "ec", "", []rcSession{
			{"TLS 1.3 X25519", tls13(x25519), false, []string{"key-exchange X25519 server-signature ECDSA (prime256v1)", "(No client certificate requested)"}},
			{"TLS 1.3 P-256", tls13([]tls.CurveID{tls.CurveP256}), false, []string{"key-exchange ECDHE (prime256v1)"}},
			{"TLS 1.3 P-384", tls13([]tls.CurveID{tls.CurveP384}), false, []string{"key-exchange ECDHE (secp384r1)"}},
			{"TLS 1.2", tls12(), false, []string{"(using TLSv1.2 with cipher ECDHE-ECDSA-AES128-GCM-SHA256 (128/128 bits))"}},
			{"TLS 1.3 client certificate not asked", tls13(x25519, client.pair), false, []string{"(No client certificate requested)"}},
			{"TLS 1.3 AUTH", tls13(x25519), true, []string{"(Authenticated sender: " + aoCarol + ")", "with ESMTPSA"}},
			{"plaintext AUTH", nil, true, []string{"(Authenticated sender: " + aoCarol + ")", "with ESMTPA"}},
			{"plaintext", nil, false, []string{"with ESMTP id"}},
			// The second session resumes the first from its ticket.
			{"TLS 1.3 before resumption", resumable, false, []string{"server-signature"}},
			{"TLS 1.3 resumed", resumable, false, []string{"server-signature ECDSA (prime256v1))"}},
		}},
		{"rsa", "rsa", "", []rcSession{
			{"TLS 1.3", tls13(x25519), false, []string{"server-signature RSA-PSS (2048 bits) server-digest SHA256"}},
			{"TLS 1.2", tls12(), true, []string{"(using TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits))"}},
		}},
		{"ask ccert", "ec", "smtpd_tls_ask_ccert = yes\nsmtpd_tls_CAfile = " + dir + "/ca.crt\n", []rcSession{
			{"no certificate", tls13(x25519), false, []string{"(Client did not present a certificate)"}},
			{"trusted certificate", tls13(x25519, client.pair), false, []string{"client-signature ECDSA (prime256v1) client-digest SHA256", `(Client CN "client.example", Issuer "Test CA" (verified OK))`}},
			// Both servers name Test CA in the certificate request, so
			// Go's client withholds a certificate of another issuer.
			{"certificate of another issuer", tls13(x25519, selfClient.pair), true, []string{"(Client did not present a certificate)"}},
			{"TLS 1.2 trusted certificate", tls12(client.pair), false, []string{`Issuer "Test CA" (verified OK)`}},
			{"trusted certificate before resumption", resumableCert, false, []string{"client-digest"}},
			{"trusted certificate resumed", resumableCert, false, []string{"client-signature ECDSA (prime256v1))", `(Client CN "client.example", Issuer "Test CA" (verified OK))`}},
		}},
		{"ask ccert without CAs", "rsa", "smtpd_tls_ask_ccert = yes\n", []rcSession{
			{"untrusted certificate", tls13(x25519, selfClient.pair), true, []string{`(Client CN "self.example", Issuer "self.example" (not verified))`,
				"server-signature RSA-PSS (2048 bits) server-digest SHA256\n\t client-signature ECDSA (prime256v1) client-digest SHA256)"}},
		}},
	}
	compared := 0
	for _, sv := range servers {
		t.Run(sv.name, func(t *testing.T) {
			main := strings.ReplaceAll(base, "CERT", sv.cert) + sv.main
			pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main})
			c, err := config.Parse("main.cf", strings.NewReader(pf.MainCF()))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := smtpserver.ConfigFrom(context.Background(), c, smtpserver.RoleSMTP, restrictions.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Auth, err = smtpserver.SASLFrom(c, a); err != nil {
				t.Fatal(err)
			}
			h := &smtptest.Handoff{}
			cfg.Handoff = h
			srv, err := smtpserver.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })

			for _, s := range sv.sessions {
				id := rcPlay(t, pf.Addr, s)
				out, err := exec.Command(postcat, "-c", pf.ConfigDir, "-hq", id).Output()
				if err != nil {
					t.Fatalf("%s: postcat -hq %s: %v", s.name, id, err)
				}
				want := rcHeader(string(out))
				for _, w := range s.want {
					if !strings.Contains(want, w) {
						t.Errorf("%s: Postfix's header lacks %q:\n%s", s.name, w, want)
					}
				}
				id = rcPlay(t, ln.Addr().String(), s)
				var got string
				for _, m := range h.Messages() {
					if m.ID() == id {
						got = rcHeader(string(m.Data))
					}
				}
				if got != want {
					t.Errorf("%s: Received: differs\n--- Postfix:\n%s\n--- postkit:\n%s", s.name, want, got)
				}
				compared++
			}
		})
	}
	t.Logf("%d Received: headers compared", compared)
}
