package smtpserver

import (
	"slices"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
)

// Postfix's usual submission setting: no plaintext mechanisms before TLS,
// all of them after.
func TestSASLFrom(t *testing.T) {
	c, err := config.Parse("main.cf", strings.NewReader(
		"smtpd_sasl_security_options = noanonymous, noplaintext\nsmtpd_sasl_tls_security_options = noanonymous\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := &auth.Authenticator{PassDB: auth.PassDBFunc(nil)}
	s, err := SASLFrom(c, a)
	if err != nil {
		t.Fatal(err)
	}
	var be AuthBackend = s
	plain, tls := be.Mechanisms(false), be.Mechanisms(true)
	if slices.Contains(plain, "PLAIN") || slices.Contains(plain, "LOGIN") {
		t.Errorf("plaintext mechanisms offered before TLS: %v", plain)
	}
	if !slices.Contains(tls, "PLAIN") || !slices.Contains(tls, "LOGIN") {
		t.Errorf("PLAIN/LOGIN not offered over TLS: %v", tls)
	}
	c2, _ := config.Parse("main.cf", strings.NewReader("smtpd_sasl_security_options = nonsense\n"))
	if _, err := SASLFrom(c2, a); err == nil || !strings.Contains(err.Error(), "smtpd_sasl_security_options") {
		t.Errorf("bad option: %v", err)
	}
}
