package smtpserver

import (
	"fmt"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
)

// SASL makes an AuthBackend of an auth mechanism provider (an
// *auth.Authenticator, or an *auth.DovecotClient to authenticate against a
// real Dovecot, as Postfix's smtpd_sasl_type = dovecot does), offering the
// mechanisms Postfix's security options allow: Options before TLS
// (smtpd_sasl_security_options), TLSOptions once the session is
// encrypted (smtpd_sasl_tls_security_options).
type SASL struct {
	Provider   auth.DovecotBackend
	Options    auth.SecurityOptions
	TLSOptions auth.SecurityOptions
}

// Mechanisms implements AuthBackend.
func (s SASL) Mechanisms(tls bool) []string {
	if tls {
		return s.Provider.Mechanisms(s.TLSOptions)
	}
	return s.Provider.Mechanisms(s.Options)
}

// NewMech implements AuthBackend.
func (s SASL) NewMech(name string) (auth.ServerMech, error) {
	return s.Provider.NewMech(name)
}

// SASLFrom reads smtpd_sasl_security_options and
// smtpd_sasl_tls_security_options for p.
func SASLFrom(c *config.Config, p auth.DovecotBackend) (SASL, error) {
	s := SASL{Provider: p}
	var err error
	if s.Options, err = auth.ParseSecurityOptions(c.Get("smtpd_sasl_security_options")); err != nil {
		return SASL{}, fmt.Errorf("smtpserver: smtpd_sasl_security_options: %w", err)
	}
	if s.TLSOptions, err = auth.ParseSecurityOptions(c.Get("smtpd_sasl_tls_security_options")); err != nil {
		return SASL{}, fmt.Errorf("smtpserver: smtpd_sasl_tls_security_options: %w", err)
	}
	return s, nil
}
