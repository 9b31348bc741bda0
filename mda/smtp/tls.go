package smtp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// tlsPolicy is the TLS security level for one destination and the names
// its certificate must match (postconf(5) smtp_tls_security_level,
// smtp_tls_policy_maps).
type tlsPolicy struct {
	level string
	match []string
}

// policyFor looks the destination up in smtp_tls_policy_maps (the
// destination as written, then, for an MX domain, its parent domains as
// ".parent"), falling back to smtp_tls_security_level.
func (a *Agent) policyFor(ctx context.Context, d dest) (tlsPolicy, *failure) {
	p := tlsPolicy{level: a.cfg.TLSLevel}
	if len(a.cfg.TLSPolicy) > 0 && d.unix == "" {
		keys := []string{d.raw}
		if d.mx {
			keys = []string{d.raw}
			if d.raw != d.host {
				keys = append(keys, d.host)
			}
			for h := d.host; ; {
				i := strings.IndexByte(h, '.')
				if i < 0 {
					break
				}
				h = h[i+1:]
				keys = append(keys, "."+h)
			}
		}
		for _, k := range keys {
			res, ok, err := a.cfg.TLSPolicy.Find(ctx, strings.ToLower(k))
			if err != nil {
				return p, &failure{dsn: "4.3.0", reason: fmt.Sprintf("TLS policy lookup for %s: %v", d.raw, err), site: false}
			}
			if ok {
				f := strings.Fields(res.Value)
				if len(f) > 0 {
					p.level = strings.ToLower(f[0])
					for _, attr := range f[1:] {
						if v, ok := strings.CutPrefix(attr, "match="); ok {
							p.match = strings.Split(v, ":")
						}
					}
				}
				break
			}
		}
	}
	switch p.level {
	case "":
		p.level = "none"
	case "verify":
		if p.match == nil {
			p.match = a.cfg.TLSVerifyMatch
		}
		if len(p.match) == 0 {
			p.match = []string{"hostname"}
		}
	case "secure":
		if p.match == nil {
			p.match = a.cfg.TLSSecureMatch
		}
		if len(p.match) == 0 {
			p.match = []string{"nexthop", "dot-nexthop"}
		}
	case "dane":
		// DANE needs DNSSEC-validated TLSA records; postkit's resolver does
		// not validate DNSSEC, and Postfix without usable TLSA records
		// falls back to opportunistic TLS.
		p.level = "may"
	case "dane-only":
		// Without DNSSEC there are never usable TLSA records, and dane-only
		// does not fall back: Postfix defers such mail.
		return p, &failure{dsn: "4.7.5", site: true, reason: fmt.Sprintf("DANE TLSA lookup problem: no DNSSEC-validated TLSA records for %s (postkit does not validate DNSSEC)", d.host)}
	case "none", "may", "encrypt":
	default:
		return p, &failure{dsn: "4.7.5", reason: fmt.Sprintf("unknown TLS security level %q for %s", p.level, d.raw)}
	}
	return p, nil
}

// mandatory reports whether the level requires TLS.
func (p tlsPolicy) mandatory() bool {
	switch p.level {
	case "encrypt", "verify", "secure", "dane-only":
		return true
	}
	return false
}

// errNotVerified is the handshake failure of a certificate that is not
// trusted or does not match.
type errNotVerified struct{ err error }

func (e *errNotVerified) Error() string { return "server certificate not verified: " + e.err.Error() }

// tlsConfig builds the client configuration for one session: no
// verification for may and encrypt (as Postfix: opportunistic and
// unauthenticated), chain and name checks for verify and secure.
func (a *Agent) tlsConfig(p tlsPolicy, d dest, t target) *tls.Config {
	var cfg *tls.Config
	if a.opts.TLSConfig != nil {
		cfg = a.opts.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	roots := cfg.RootCAs
	if roots == nil {
		roots = a.cfg.TLSRoots
	}
	if a.cfg.TLSCertificate != nil && len(cfg.Certificates) == 0 {
		cfg.Certificates = []tls.Certificate{*a.cfg.TLSCertificate}
	}
	cfg.InsecureSkipVerify = true
	if cfg.MinVersion == 0 {
		cfg.MinVersion = a.cfg.TLSMinVersion
		if p.mandatory() {
			cfg.MinVersion = a.cfg.TLSMandatoryMinVersion
		}
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS10
		}
	}
	switch sn := a.cfg.TLSServerName; strings.ToLower(sn) {
	case "":
	case "hostname":
		cfg.ServerName = t.host
	case "nexthop":
		cfg.ServerName = d.host
	default:
		cfg.ServerName = sn
	}
	if p.level != "verify" && p.level != "secure" {
		cfg.VerifyConnection = nil
		return cfg
	}
	wants := p.match
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &errNotVerified{errors.New("no certificate")}
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
			return &errNotVerified{err}
		}
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, w := range wants {
			pattern, sub := w, false
			switch strings.ToLower(w) {
			case "hostname":
				pattern = t.host
			case "nexthop":
				pattern = d.host
			case "dot-nexthop":
				pattern, sub = d.host, true
			default:
				if strings.HasPrefix(w, ".") {
					pattern, sub = w[1:], true
				}
			}
			for _, n := range names {
				if certNameMatches(strings.ToLower(n), strings.ToLower(pattern), sub) {
					return nil
				}
			}
		}
		return &errNotVerified{fmt.Errorf("certificate names %v match none of %v", names, wants)}
	}
	return cfg
}

// certNameMatches compares a certificate name (possibly "*.example.com")
// with a wanted name, or with any name below it when sub is set.
func certNameMatches(certName, want string, sub bool) bool {
	if want == "" {
		return false
	}
	if sub {
		if strings.HasSuffix(certName, "."+want) {
			return true
		}
		return strings.HasPrefix(certName, "*.") && strings.HasSuffix(certName[1:], "."+want) ||
			strings.HasPrefix(certName, "*.") && certName[2:] == want
	}
	if certName == want {
		return true
	}
	if strings.HasPrefix(certName, "*.") {
		i := strings.IndexByte(want, '.')
		return i > 0 && want[i+1:] == certName[2:]
	}
	return false
}
