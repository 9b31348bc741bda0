package smtpserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// The TLS details Postfix writes into Received: with
// smtpd_tls_received_header = yes. Observed with Postfix 3.7.11 and
// OpenSSL 3.0 (received_oracle_test.go):
//
//	(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)
//	 key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256
//	 client-signature ECDSA (prime256v1) client-digest SHA256)
//	(Client CN "c.example", Issuer "c.example" (not verified))
//
// The key-exchange line exists only for TLS 1.3; TLS 1.2 sessions get the
// cipher alone (its name already says the key exchange). A resumed TLS 1.3
// session names the keys without digests. The last line is
// "(No client certificate requested)" without smtpd_tls_ask_ccert and
// "(Client did not present a certificate)" with it.
//
// Go's tls.ConnectionState does not say which of the server's
// certificates the handshake used, so the server hands the handshake a
// configuration whose GetCertificate records the choice (certRecorder).

// tlsReceivedLines returns the TLS part of Received:, CRLF-terminated.
func (s *session) tlsReceivedLines() string {
	cs := s.tlsState
	var b strings.Builder
	bits := cipherBits(cs.CipherSuite)
	fmt.Fprintf(&b, "\t(using %s with cipher %s (%d/%d bits)",
		tlsVersionName(cs.Version), opensslCipherName(cs.CipherSuite), bits, bits)
	if cs.Version >= tls.VersionTLS13 {
		if kex := kexName(cs.CurveID); kex != "" {
			b.WriteString("\r\n\t key-exchange " + kex)
		}
		// A resumed session signs nothing: the keys are named, the
		// digests are not (seen with Postfix 3.7.11).
		cert := s.tlsCert
		if cert == nil && cs.DidResume && s.cfg.TLS != nil && len(s.cfg.TLS.Certificates) > 0 {
			// crypto/tls picks no certificate when it resumes.
			cert = &s.cfg.TLS.Certificates[0]
		}
		if cert != nil {
			if sig, dig := signatureName(certPublicKey(cert)); sig != "" {
				b.WriteString(" server-signature " + sig)
				if dig != "" && !cs.DidResume {
					b.WriteString(" server-digest " + dig)
				}
			}
		}
		if len(cs.PeerCertificates) > 0 {
			if sig, dig := signatureName(cs.PeerCertificates[0].PublicKey); sig != "" {
				b.WriteString("\r\n\t client-signature " + sig)
				if dig != "" && !cs.DidResume {
					b.WriteString(" client-digest " + dig)
				}
			}
		}
	}
	b.WriteString(")\r\n")
	switch {
	case len(cs.PeerCertificates) > 0:
		subject, issuer, verified := "", "", false
		if ti := s.snap.TLS; ti != nil {
			subject, issuer, verified = ti.SubjectCN, ti.IssuerCN, ti.PeerCertVerified
		} else {
			subject, issuer = cs.PeerCertificates[0].Subject.CommonName, cs.PeerCertificates[0].Issuer.CommonName
		}
		status := "not verified"
		if verified {
			status = "verified OK"
		}
		fmt.Fprintf(&b, "\t(Client CN %q, Issuer %q (%s))\r\n", printable(subject), printable(issuer), status)
	case s.cfg.TLS != nil && s.cfg.TLS.ClientAuth != tls.NoClientCert:
		b.WriteString("\t(Client did not present a certificate)\r\n")
	default:
		b.WriteString("\t(No client certificate requested)\r\n")
	}
	return b.String()
}

// kexName is OpenSSL's name for the TLS 1.3 key exchange as Postfix logs
// it: "X25519", or "ECDHE (curve)" for the NIST curves.
func kexName(id tls.CurveID) string {
	switch id {
	case 0:
		return ""
	case tls.X25519:
		return "X25519"
	case tls.CurveP256:
		return "ECDHE (prime256v1)"
	case tls.CurveP384:
		return "ECDHE (secp384r1)"
	case tls.CurveP521:
		return "ECDHE (secp521r1)"
	}
	// The hybrid groups (X25519MLKEM768): OpenSSL 3.5 uses the same
	// names as Go.
	return id.String()
}

// signatureName describes a TLS 1.3 handshake signature made with pub
// and its digest, in OpenSSL's words.
func signatureName(pub crypto.PublicKey) (sig, digest string) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		// TLS 1.3 ties each ECDSA curve to one hash (RFC 8446 §4.2.3).
		switch k.Curve.Params().Name {
		case "P-256":
			return "ECDSA (prime256v1)", "SHA256"
		case "P-384":
			return "ECDSA (secp384r1)", "SHA384"
		case "P-521":
			return "ECDSA (secp521r1)", "SHA512"
		}
		return "ECDSA", ""
	case *rsa.PublicKey:
		// TLS 1.3 signs with RSA-PSS only; SHA-256 is the first choice
		// of every common client's list.
		return fmt.Sprintf("RSA-PSS (%d bits)", k.N.BitLen()), "SHA256"
	case ed25519.PublicKey:
		return "ED25519", ""
	}
	return "", ""
}

func certPublicKey(c *tls.Certificate) crypto.PublicKey {
	if c.Leaf != nil {
		return c.Leaf.PublicKey
	}
	if sg, ok := c.PrivateKey.(crypto.Signer); ok {
		return sg.Public()
	}
	return nil
}

// certRecorder returns base with a GetCertificate that picks a
// certificate as crypto/tls would (the first the client supports) and
// records the choice for the session being handshaken. A configuration
// with GetConfigForClient is left alone: the session then does not know
// its certificate and Received: leaves out the server signature.
func (srv *Server) certRecorder(base *tls.Config) *tls.Config {
	if base == nil || base.GetConfigForClient != nil {
		return base
	}
	certs, get := base.Certificates, base.GetCertificate
	if len(certs) == 0 && get == nil {
		return base
	}
	c := base.Clone()
	c.Certificates = nil
	c.GetCertificate = func(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		cert, err := chooseCertificate(chi, certs, get)
		if cert != nil {
			if v, ok := srv.handshakes.Load(chi.Conn); ok {
				v.(*session).tlsCert = cert
			}
		}
		return cert, err
	}
	return c
}

var errNoCertificate = errors.New("smtpserver: no TLS certificate configured")

// chooseCertificate is crypto/tls's choice among Config.Certificates and
// Config.GetCertificate.
func chooseCertificate(chi *tls.ClientHelloInfo, certs []tls.Certificate, get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Certificate, error) {
	if get != nil && (len(certs) == 0 || chi.ServerName != "") {
		cert, err := get(chi)
		if cert != nil || err != nil {
			return cert, err
		}
	}
	switch len(certs) {
	case 0:
		return nil, errNoCertificate
	case 1:
		return &certs[0], nil
	}
	for i := range certs {
		if chi.SupportsCertificate(&certs[i]) == nil {
			return &certs[i], nil
		}
	}
	return &certs[0], nil
}

// handshake runs the server side of a TLS handshake on s.conn (STARTTLS
// or implicit TLS) within smtpd_timeout and switches the session to it.
// tc is a connection the caller's listener already wrapped, or nil.
func (s *session) handshake(tc *tls.Conn) error {
	raw := s.conn
	if tc == nil {
		tc = tls.Server(raw, s.srv.tlsConf)
		s.srv.handshakes.Store(net.Conn(raw), s)
		defer s.srv.handshakes.Delete(net.Conn(raw))
	}
	tc.SetDeadline(time.Now().Add(s.cfg.Timeout))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		return err
	}
	tc.SetDeadline(time.Time{})
	s.conn = tc
	s.br.Reset(timedIO{s})
	s.bw.Reset(timedIO{s})
	cs := tc.ConnectionState()
	s.setTLS(&cs)
	return nil
}

// handshakeError words a failed handshake for the "SSL_accept error"
// line: a client that went away is "lost connection", as Postfix logs it;
// other errors keep crypto/tls's words.
func handshakeError(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return "lost connection"
	}
	return err.Error()
}
