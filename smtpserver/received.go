package smtpserver

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/postkit-mail/postkit/internal/maildate"
)

// receivedHeader builds smtpd's Received: header (spec §4.7), CRLF
// terminated:
//
//	Received: from HELO (NAME [ADDR])
//		(using TLSv1.3 with cipher X (256/256 bits) ...)   (tlsdetails.go)
//		(Authenticated sender: USER)
//		by HOSTNAME (MAILNAME) with PROTO id QUEUEID
//		for <rcpt>; DATE
//
// The "for" clause appears only with exactly one recipient. Without a
// HELO the client name stands in for it, as in Postfix.
func (s *session) receivedHeader() string {
	var b strings.Builder
	helo := s.snap.Helo
	if helo == "" {
		helo = s.snap.ClientName
	}
	addr := "unknown"
	if a := s.snap.ClientAddr; a.IsValid() {
		addr = a.String()
		if a.Is6() && !a.Is4In6() {
			addr = "IPv6:" + addr
		}
	}
	fmt.Fprintf(&b, "Received: from %s (%s [%s])\r\n", helo, s.snap.ClientName, addr)
	if s.tlsState != nil && s.cfg.TLSReceivedHeader {
		b.WriteString(s.tlsReceivedLines())
	}
	if s.authed && s.cfg.SASLAuthenticatedHeader && s.snap.SASLUsername != "" {
		fmt.Fprintf(&b, "\t(Authenticated sender: %s)\r\n", printable(s.snap.SASLUsername))
	}
	id := s.msg.ID()
	date := s.cfg.Now().In(s.cfg.Location)
	if len(s.env.Recipients) == 1 {
		fmt.Fprintf(&b, "\tby %s (%s) with %s id %s\r\n\tfor <%s>; %s\r\n",
			s.cfg.Hostname, s.cfg.MailName, s.protocol(), id, s.env.Recipients[0].Addr, maildate.Format(date))
	} else {
		fmt.Fprintf(&b, "\tby %s (%s) with %s id %s;\r\n\t%s\r\n",
			s.cfg.Hostname, s.cfg.MailName, s.protocol(), id, maildate.Format(date))
	}
	return b.String()
}

// opensslCipherName gives the name OpenSSL (and so Postfix) logs for a
// cipher suite: TLS 1.3 suites keep their IANA names, the others use
// OpenSSL's names.
func opensslCipherName(id uint16) string {
	switch id {
	case tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:
		return "ECDHE-RSA-AES128-GCM-SHA256"
	case tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return "ECDHE-RSA-AES256-GCM-SHA384"
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:
		return "ECDHE-ECDSA-AES128-GCM-SHA256"
	case tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:
		return "ECDHE-ECDSA-AES256-GCM-SHA384"
	case tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return "ECDHE-RSA-CHACHA20-POLY1305"
	case tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:
		return "ECDHE-ECDSA-CHACHA20-POLY1305"
	}
	return tls.CipherSuiteName(id)
}

func cipherBits(id uint16) int {
	name := tls.CipherSuiteName(id)
	switch {
	case strings.Contains(name, "AES_128"):
		return 128
	case strings.Contains(name, "3DES"):
		return 112
	}
	return 256
}
