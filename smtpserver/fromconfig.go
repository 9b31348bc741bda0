package smtpserver

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/restrictions"
)

// ConfigFrom builds a Config for role from main.cf parameters: the
// names, banner and limits, the XCLIENT/XFORWARD host lists, the TLS
// policy words, and a Checker built with restrictions.FromConfig(c, opts).
// Handoff, Auth, TLS (the certificate) and Logger are left to the caller.
// RoleLMTP does not use smtpd_banner: its greeting is
// "$myhostname LMTP $mail_name".
// The submission roles get Debian master.cf's overrides:
// smtpd_tls_security_level=encrypt for submission, smtpd_tls_wrappermode
// for submissions, smtpd_tls_auth_only=yes for submission, and for both
// smtpd_sasl_auth_enable=yes and
// smtpd_client_restrictions=permit_sasl_authenticated,reject.
func ConfigFrom(ctx context.Context, c *config.Config, role Role, opts restrictions.Options) (Config, error) {
	cfg := Config{Role: role, Logger: opts.Logger}
	r := config.NewReader(c)
	b, n := r.Bool, r.Int
	cfg.Hostname = c.Get("myhostname")
	cfg.MailName = c.Get("mail_name")
	if role != RoleLMTP {
		cfg.Banner = c.Get("smtpd_banner")
	}
	// else New's default, "$myhostname LMTP $mail_name": smtpd_banner
	// belongs to Postfix's smtpd, whose default says ESMTP, and an LMTP
	// server announces LMTP (RFC 2033 §4.1 leaves the text free; Cyrus
	// says "HOST LMTP Cyrus vX ready", Dovecot "HOST Dovecot ready").
	cfg.MessageSizeLimit = r.Size("message_size_limit")
	if cfg.MessageSizeLimit == 0 {
		cfg.MessageSizeLimit = -1
	}
	cfg.RecipientLimit = n("smtpd_recipient_limit")
	cfg.HardErrorLimit = n("smtpd_hard_error_limit")
	cfg.SoftErrorLimit = n("smtpd_soft_error_limit")
	cfg.LineLengthLimit = n("line_length_limit")
	cfg.BareNewlineRejectCode = n("smtpd_forbid_bare_newline_reject_code")
	cfg.Timeout = r.Duration("smtpd_timeout")
	cfg.ErrorSleepTime = r.Duration("smtpd_error_sleep_time")
	if cfg.ErrorSleepTime == 0 {
		cfg.ErrorSleepTime = -1
	}
	cfg.DisableVRFY = b("disable_vrfy_command")
	cfg.SMTPUTF8Enable = b("smtputf8_enable")
	cfg.HeloRequired = b("smtpd_helo_required")
	cfg.DelayReject = b("smtpd_delay_reject")
	cfg.TLSAuthOnly = b("smtpd_tls_auth_only")
	cfg.TLSReceivedHeader = b("smtpd_tls_received_header")
	cfg.SASLAuthenticatedHeader = b("smtpd_sasl_authenticated_header")
	cfg.ForbidUnauthPipelining = b("smtpd_forbid_unauth_pipelining")
	cfg.BrokenSASLAuthClients = b("broken_sasl_auth_clients")
	cfg.SASLService = c.Get("smtpd_sasl_service")
	cfg.TLSFingerprintDigest = c.Get("smtpd_tls_fingerprint_digest")
	cfg.InetProtocols = config.SplitList(c.Get("inet_protocols"))
	cfg.DiscardEHLOKeywords = config.SplitList(c.Get("smtpd_discard_ehlo_keywords"))
	switch strings.ToLower(c.Get("smtpd_forbid_bare_newline")) {
	case "reject":
		cfg.ForbidBareNewline = BareNewlineReject
	case "yes", "normalize":
		// Postfix 3.7.11 treats yes as normalize (seen with the live
		// instance: a bare LF is accepted, never ends DATA).
		cfg.ForbidBareNewline = BareNewlineNormalize
	}
	list := func(name string, kind maps.MatchKind) *maps.MatchList {
		items := config.SplitList(c.Get(name))
		if len(items) == 0 {
			return nil
		}
		l, err := maps.NewMatchList(ctx, maps.MatchListConfig{Name: name, Kind: kind, Registry: opts.Registry,
			ParentStyle: r.ParentStyle(name)}, items)
		r.Keep(err)
		return l
	}
	cfg.XClientHosts = list("smtpd_authorized_xclient_hosts", maps.HostMatch)
	cfg.XForwardHosts = list("smtpd_authorized_xforward_hosts", maps.HostMatch)
	cfg.BareNewlineExclusions = list("smtpd_forbid_bare_newline_exclusions", maps.HostMatch)
	cfg.FastFlushDomains = list("fast_flush_domains", maps.DomainMatch)
	if cfg.ForbiddenCommands = list("smtpd_forbidden_commands", maps.StringMatch); cfg.ForbiddenCommands == nil {
		cfg.ForbiddenCommands = new(maps.MatchList)
	}
	if err := r.Err(); err != nil {
		return cfg, fmt.Errorf("smtpserver: %w", err)
	}
	tc, pol, err := TLSConfigFrom(c, role)
	if err != nil {
		return cfg, fmt.Errorf("smtpserver: %w", err)
	}
	cfg.TLS = tc
	if tc != nil {
		cfg.TLSPolicy = &pol
		cfg.TLSAuthOnly = pol.AuthOnly || role == RoleSubmission
		cfg.TLSFingerprintDigest = pol.FingerprintDigest
		switch pol.Level {
		case "encrypt":
			cfg.TLSLevel = TLSEncrypt
		case "may":
			cfg.TLSLevel = TLSMay
		default:
			cfg.TLSLevel = TLSNone
		}
	} else {
		cfg.TLSLevel = TLSNone
		if pol.Warning != "" && opts.Logger != nil {
			opts.Logger.Warn(pol.Warning)
		}
	}
	rc, err := restrictions.ConfigFrom(c)
	if err != nil {
		return cfg, fmt.Errorf("smtpserver: reading the restrictions: %w", err)
	}
	rc.Registry, rc.DNS.Resolver, rc.Logger = opts.Registry, opts.Resolver, opts.Logger
	rc.Funcs, rc.Tables = opts.Funcs, opts.Tables
	if role == RoleSubmission || role == RoleSubmissions {
		// Debian's master.cf submission/submissions entries: SASL on,
		// and only authenticated clients get past the client stage.
		rc.SASLEnabled = true
		rc.ClientRestrictions = "permit_sasl_authenticated, reject"
	}
	// smtpd_peername_lookup: the client's names come from DNS at connect
	// (PTR, then the forward check), when a resolver is given.
	if opts.Resolver != nil && b("smtpd_peername_lookup") {
		r := opts.Resolver
		cfg.ClientNameLookup = func(ctx context.Context, addr netip.Addr) restrictions.ClientNames {
			return restrictions.LookupClient(ctx, r, addr)
		}
	}
	chk, err := restrictions.New(ctx, rc)
	if err != nil {
		return cfg, fmt.Errorf("smtpserver: building the restrictions: %w", err)
	}
	cfg.Checker = chk
	return cfg, nil
}
