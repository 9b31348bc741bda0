package smtp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/resolver"
	"github.com/postkit-mail/postkit/rewrite"
	"github.com/postkit-mail/postkit/smtpclient"
)

// Config is the typed configuration of an Agent: the smtp_* (or lmtp_*)
// parameters of postconf(5). FromConfig fills it from main.cf; the zero
// value of a field means Postfix's default where noted.
type Config struct {
	// LMTP makes the agent Postfix's lmtp(8): LHLO, one reply per
	// recipient, destinations unix:/path and inet:host[:port], no MX
	// lookups.
	LMTP bool
	// HeloName is smtp_helo_name / lmtp_lhlo_name ($myhostname).
	HeloName string
	// MyHostname is $myhostname: an EHLO reply with this name is a mail
	// loop, and it names the host of a unix-socket LMTP relay.
	MyHostname string
	// Port is smtp_tcp_port (25) or lmtp_tcp_port (24): the port of
	// destinations that name none.
	Port int
	// Timeouts are the smtp_*_timeout parameters.
	Timeouts smtpclient.Timeouts
	// NeverEHLO is smtp_never_send_ehlo.
	NeverEHLO bool
	// WaitQuitReply is smtp_skip_quit_response = no (lmtp's default): wait
	// for the reply to QUIT before closing. By default the SMTP agent
	// closes right after sending QUIT, as Postfix does.
	WaitQuitReply bool
	// LineLengthLimit is smtp_line_length_limit (998).
	LineLengthLimit int
	// DisableMIMEConversion is disable_mime_output_conversion.
	DisableMIMEConversion bool

	// MXAddressLimit is smtp_mx_address_limit (5; 0 means 5, negative no
	// limit); MXSessionLimit is smtp_mx_session_limit (2).
	MXAddressLimit int
	MXSessionLimit int
	// Bounce5xxGreeting is smtp_skip_5xx_greeting = no: a 5xx greeting
	// bounces the mail when no other server accepts it. By default (yes)
	// a 5xx greeting only moves on to the next server and defers.
	Bounce5xxGreeting bool
	// DeferIfNoMXAddress is smtp_defer_if_no_mx_address_found.
	DeferIfNoMXAddress bool
	// IgnoreMXLookupError is ignore_mx_lookup_error: a failed MX lookup
	// falls back to the A/AAAA records.
	IgnoreMXLookupError bool
	// NoRandomize turns smtp_randomize_addresses off (it is on by
	// default): equal-preference MX hosts and addresses keep DNS order.
	NoRandomize bool
	// IPv4 and IPv6 are inet_protocols; both false means ipv4 only.
	IPv4, IPv6 bool
	// OwnAddrs are inet_interfaces and proxy_interfaces: an MX host with
	// one of these addresses is this host (loop detection). Empty means
	// no loop detection by address.
	OwnAddrs []netip.Addr
	// FallbackRelay is smtp_fallback_relay: destinations tried after the
	// nexthop's.
	FallbackRelay []string
	// AddressPreference is smtp_address_preference: "ipv4" or "ipv6" tries
	// that family first among equal MX preferences; "" or "any" does not.
	AddressPreference string
	// BindAddress and BindAddress6 are smtp_bind_address and
	// smtp_bind_address6: the local address of outgoing connections.
	BindAddress, BindAddress6 netip.Addr

	// TLSLevel is smtp_tls_security_level ("", none, may, encrypt,
	// verify, secure, dane, dane-only); "" means none.
	TLSLevel string
	// TLSPolicy is smtp_tls_policy_maps.
	TLSPolicy maps.List
	// TLSRoots are the trust anchors for verify and secure (from
	// smtp_tls_CAfile); nil means the system's.
	TLSRoots *x509.CertPool
	// TLSVerifyMatch and TLSSecureMatch are smtp_tls_verify_cert_match
	// (hostname) and smtp_tls_secure_cert_match (nexthop, dot-nexthop).
	TLSVerifyMatch []string
	TLSSecureMatch []string
	// TLSCertificate is smtp_tls_cert_file/smtp_tls_key_file, a client
	// certificate offered when the server asks for one.
	TLSCertificate *tls.Certificate
	// TLSMinVersion and TLSMandatoryMinVersion are the lowest protocol
	// versions smtp_tls_protocols (levels may, dane) and
	// smtp_tls_mandatory_protocols (encrypt and up) allow; 0 means TLS 1.0,
	// Postfix's ">=TLSv1".
	TLSMinVersion, TLSMandatoryMinVersion uint16
	// TLSServerName is smtp_tls_servername: the SNI name sent, "hostname"
	// (the server's name), "nexthop" (the destination's), a literal name,
	// or "" for none.
	TLSServerName string

	// SASLEnable is smtp_sasl_auth_enable; SASLPasswords is
	// smtp_sasl_password_maps ("user:password" values).
	SASLEnable    bool
	SASLPasswords maps.List
	// SASLSecurity and SASLTLSSecurity are smtp_sasl_security_options
	// and smtp_sasl_tls_security_options.
	SASLSecurity, SASLTLSSecurity auth.SecurityOptions
	// SASLMechanismFilter is smtp_sasl_mechanism_filter: when not empty,
	// only these mechanisms (case-insensitive) are used.
	SASLMechanismFilter []string
	// SenderDependentAuth is smtp_sender_dependent_authentication.
	SenderDependentAuth bool

	// CacheTimeLimit is smtp_connection_cache_time_limit (2s): how long an
	// idle session waits in the cache; negative turns caching off.
	// ReuseTimeLimit is smtp_connection_reuse_time_limit (300s).
	CacheTimeLimit, ReuseTimeLimit time.Duration

	// MinBackoff is minimal_backoff_time (300s). At TLS level may, a
	// failed handshake is retried in plaintext only for a message that
	// waited at least this long before this attempt, and only to a server
	// we have no SASL credentials for (Postfix's rule: a first attempt
	// defers, and a password never travels in the clear because an
	// attacker broke the handshake).
	MinBackoff time.Duration

	// Generic, when set, applies smtp_generic_maps to the envelope sender
	// and recipients.
	Generic *rewrite.Rewriter
}

// Options are the parts an Agent uses that are not main.cf parameters.
type Options struct {
	// Resolver answers the MX and address lookups; nil means
	// resolver.NewFromResolvConf.
	Resolver resolver.Resolver
	// LMTP selects lmtp(8) behaviour in FromConfig (also chosen by the
	// transport name "lmtp").
	LMTP bool
	// Logger gets the agent's own lines (warnings, failed attempts before
	// the last); nil discards them.
	Logger *slog.Logger
	// TLSConfig is the base of every client TLS configuration; its RootCAs
	// (when set) replace smtp_tls_CAfile, which is how tests trust a
	// generated certificate.
	TLSConfig *tls.Config
	// Dialer opens connections; nil means a net.Dialer with
	// smtp_connect_timeout.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// param returns the lmtp_ name of an smtp_ parameter for an LMTP agent.
func param(lmtp bool, name string) string {
	if !lmtp {
		return name
	}
	n := "lmtp_" + strings.TrimPrefix(name, "smtp_")
	switch name {
	case "smtp_helo_name":
		n = "lmtp_lhlo_name"
	case "smtp_helo_timeout":
		n = "lmtp_lhlo_timeout"
	}
	if config.IsKnown(n) {
		return n
	}
	return name
}

// FromConfig builds an Agent from main.cf. transport is the master.cf
// service name ("smtp", "relay", "lmtp"); Postfix's smtp(8) reads smtp_*
// parameters for every service it runs as, and lmtp_* when it runs as
// lmtp, so only the LMTP choice depends on it (per-service -o overrides
// are the caller's to apply to cfg first).
func FromConfig(ctx context.Context, cfg *config.Config, transport string, opts Options) (*Agent, error) {
	lmtp := opts.LMTP || transport == "lmtp"
	r := config.NewReader(cfg)
	p := func(name string) string { return param(lmtp, name) }
	c := Config{
		LMTP:                  lmtp,
		HeloName:              r.Str(p("smtp_helo_name")),
		MyHostname:            r.Str("myhostname"),
		NeverEHLO:             r.Bool(p("smtp_never_send_ehlo")),
		WaitQuitReply:         !r.Bool(p("smtp_skip_quit_response")),
		LineLengthLimit:       r.Int(p("smtp_line_length_limit")),
		DisableMIMEConversion: r.Bool("disable_mime_output_conversion"),
		MXAddressLimit:        r.Int(p("smtp_mx_address_limit")),
		MXSessionLimit:        r.Int(p("smtp_mx_session_limit")),
		Bounce5xxGreeting:     !r.Bool(p("smtp_skip_5xx_greeting")),
		DeferIfNoMXAddress:    r.Bool(p("smtp_defer_if_no_mx_address_found")),
		IgnoreMXLookupError:   r.Bool("ignore_mx_lookup_error"),
		NoRandomize:           !r.Bool(p("smtp_randomize_addresses")),
		FallbackRelay:         r.List(p("smtp_fallback_relay")),
		TLSLevel:              strings.ToLower(r.Str(p("smtp_tls_security_level"))),
		TLSServerName:         r.Str(p("smtp_tls_servername")),
		AddressPreference:     strings.ToLower(r.Str(p("smtp_address_preference"))),
		TLSVerifyMatch:        r.List(p("smtp_tls_verify_cert_match")),
		TLSSecureMatch:        r.List(p("smtp_tls_secure_cert_match")),
		SASLEnable:            r.Bool(p("smtp_sasl_auth_enable")),
		SASLMechanismFilter:   r.List(p("smtp_sasl_mechanism_filter")),
		SenderDependentAuth:   r.Bool(p("smtp_sender_dependent_authentication")),
		CacheTimeLimit:        r.Duration(p("smtp_connection_cache_time_limit")),
		ReuseTimeLimit:        r.Duration(p("smtp_connection_reuse_time_limit")),
		MinBackoff:            r.Duration("minimal_backoff_time"),
	}
	if lmtp {
		c.FallbackRelay = nil
	}
	c.Timeouts = smtpclient.Timeouts{
		Connect:  r.Duration(p("smtp_connect_timeout")),
		Greeting: r.Duration(p("smtp_helo_timeout")),
		Helo:     r.Duration(p("smtp_helo_timeout")),
		StartTLS: r.Duration(p("smtp_starttls_timeout")),
		Auth:     r.Duration(p("smtp_helo_timeout")),
		Mail:     r.Duration(p("smtp_mail_timeout")),
		Rcpt:     r.Duration(p("smtp_rcpt_timeout")),
		DataInit: r.Duration(p("smtp_data_init_timeout")),
		DataXfer: r.Duration(p("smtp_data_xfer_timeout")),
		DataDone: r.Duration(p("smtp_data_done_timeout")),
		Rset:     r.Duration(p("smtp_rset_timeout")),
		Quit:     r.Duration(p("smtp_quit_timeout")),
	}
	portName := "smtp_tcp_port"
	if lmtp {
		portName = "lmtp_tcp_port"
	}
	port, err := servicePort(r.Str(portName))
	if err != nil {
		return nil, fmt.Errorf("mda/smtp: %s: %w", portName, err)
	}
	c.Port = port
	for _, proto := range r.List("inet_protocols") {
		switch strings.ToLower(proto) {
		case "all":
			c.IPv4, c.IPv6 = true, true
		case "ipv4":
			c.IPv4 = true
		case "ipv6":
			c.IPv6 = true
		}
	}
	c.OwnAddrs = ownAddrs(append(r.List("inet_interfaces"), r.List("proxy_interfaces")...))
	for _, b := range []struct {
		name string
		dst  *netip.Addr
	}{{p("smtp_bind_address"), &c.BindAddress}, {p("smtp_bind_address6"), &c.BindAddress6}} {
		if v := r.Str(b.name); v != "" {
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, fmt.Errorf("mda/smtp: %s: %w", b.name, err)
			}
			*b.dst = a
		}
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("mda/smtp: %w", err)
	}
	for _, v := range []struct {
		name string
		dst  *uint16
	}{{p("smtp_tls_protocols"), &c.TLSMinVersion}, {p("smtp_tls_mandatory_protocols"), &c.TLSMandatoryMinVersion}} {
		if *v.dst, err = tlsMinVersion(cfg.Get(v.name)); err != nil {
			return nil, fmt.Errorf("mda/smtp: %s: %w", v.name, err)
		}
	}
	if c.SASLSecurity, err = auth.ParseSecurityOptions(cfg.Get(p("smtp_sasl_security_options"))); err != nil {
		return nil, fmt.Errorf("mda/smtp: %s: %w", p("smtp_sasl_security_options"), err)
	}
	if c.SASLTLSSecurity, err = auth.ParseSecurityOptions(cfg.Get(p("smtp_sasl_tls_security_options"))); err != nil {
		return nil, fmt.Errorf("mda/smtp: %s: %w", p("smtp_sasl_tls_security_options"), err)
	}
	if c.TLSPolicy, err = openList(ctx, p("smtp_tls_policy_maps"), cfg.List(p("smtp_tls_policy_maps"))); err != nil {
		return nil, err
	}
	if c.SASLPasswords, err = openList(ctx, p("smtp_sasl_password_maps"), cfg.List(p("smtp_sasl_password_maps"))); err != nil {
		return nil, err
	}
	if ca := cfg.Get(p("smtp_tls_CAfile")); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("mda/smtp: %s: %w", p("smtp_tls_CAfile"), err)
		}
		c.TLSRoots = x509.NewCertPool()
		if !c.TLSRoots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mda/smtp: %s: no certificate in %s", p("smtp_tls_CAfile"), ca)
		}
	}
	if certFile := cfg.Get(p("smtp_tls_cert_file")); certFile != "" {
		keyFile := cfg.Get(p("smtp_tls_key_file"))
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("mda/smtp: %s: %w", p("smtp_tls_cert_file"), err)
		}
		c.TLSCertificate = &cert
	}
	if len(cfg.List(p("smtp_generic_maps"))) > 0 {
		prefix := "smtp"
		if lmtp {
			prefix = "lmtp"
		}
		if c.Generic, err = rewrite.FromConfig(ctx, cfg, prefix); err != nil {
			return nil, fmt.Errorf("mda/smtp: %w", err)
		}
	}
	return New(c, opts)
}

func openList(ctx context.Context, param string, specs []string) (maps.List, error) {
	var l maps.List
	for _, s := range specs {
		m, err := maps.Open(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("mda/smtp: %s: %w", param, err)
		}
		l = append(l, m)
	}
	return l, nil
}

// servicePort reads a port number or the service names Postfix's defaults
// use.
func servicePort(s string) (int, error) {
	switch strings.ToLower(s) {
	case "smtp":
		return 25, nil
	case "lmtp":
		return 24, nil
	case "submission":
		return 587, nil
	case "smtps", "submissions":
		return 465, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 65535 {
		if p, lerr := net.LookupPort("tcp", s); lerr == nil && p > 0 {
			return p, nil
		}
		return 0, fmt.Errorf("bad port %q", s)
	}
	return n, nil
}

// ownAddrs turns inet_interfaces/proxy_interfaces into addresses: "all"
// is every address of the machine's interfaces, "loopback-only" the
// loopback ones; host names are not resolved (Postfix resolves them once
// at start-up; give addresses).
func ownAddrs(items []string) []netip.Addr {
	var out []netip.Addr
	for _, it := range items {
		switch strings.ToLower(it) {
		case "all", "loopback-only":
			ifAddrs, _ := net.InterfaceAddrs()
			for _, a := range ifAddrs {
				if pfx, err := netip.ParsePrefix(a.String()); err == nil {
					addr := pfx.Addr().Unmap()
					if it == "all" || addr.IsLoopback() {
						out = append(out, addr)
					}
				}
			}
		default:
			s := strings.Trim(it, "[]")
			if a, err := netip.ParseAddr(s); err == nil {
				out = append(out, a.Unmap())
			} else if addrs, err := net.LookupHost(s); err == nil {
				for _, x := range addrs {
					if a, err := netip.ParseAddr(x); err == nil {
						out = append(out, a.Unmap())
					}
				}
			}
		}
	}
	return out
}

// tlsVersions are Postfix's protocol names in order.
var tlsVersions = []struct {
	name string
	v    uint16
}{{"sslv2", 0}, {"sslv3", 0}, {"tlsv1", tls.VersionTLS10}, {"tlsv1.1", tls.VersionTLS11}, {"tlsv1.2", tls.VersionTLS12}, {"tlsv1.3", tls.VersionTLS13}}

// tlsMinVersion reads a smtp_tls_protocols value: ">=TLSv1.2" (Postfix
// 3.6+), or an exclusion list "!SSLv2, !SSLv3, !TLSv1" whose lowest
// remaining version is the minimum; "" means TLS 1.0. A maximum ("<=") and
// exclusions above the minimum are not supported (Go cannot skip a version
// in the middle) and give an error.
func tlsMinVersion(s string) (uint16, error) {
	minIdx := 0
	excluded := map[int]bool{}
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ',' || r == ':' || r == ' ' || r == '\t' }) {
		idx := func(name string) (int, error) {
			for i, v := range tlsVersions {
				if v.name == name {
					return i, nil
				}
			}
			return 0, fmt.Errorf("unknown protocol %q", name)
		}
		switch {
		case strings.HasPrefix(w, ">="):
			i, err := idx(w[2:])
			if err != nil {
				return 0, err
			}
			minIdx = max(minIdx, i)
		case strings.HasPrefix(w, "!"):
			i, err := idx(w[1:])
			if err != nil {
				return 0, err
			}
			excluded[i] = true
		default:
			return 0, fmt.Errorf("unsupported protocol setting %q (use >=TLSvN or !TLSvN)", w)
		}
	}
	for minIdx < len(tlsVersions) && (excluded[minIdx] || tlsVersions[minIdx].v == 0) {
		minIdx++
	}
	if minIdx == len(tlsVersions) {
		return 0, fmt.Errorf("every protocol is excluded in %q", s)
	}
	for i := minIdx + 1; i < len(tlsVersions); i++ {
		if excluded[i] {
			return 0, fmt.Errorf("excluding %s above the minimum %s is not supported", tlsVersions[i].name, tlsVersions[minIdx].name)
		}
	}
	return tlsVersions[minIdx].v, nil
}
