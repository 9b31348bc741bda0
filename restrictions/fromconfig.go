package restrictions

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/resolver"
)

// Options are what FromConfig cannot read from main.cf.
type Options struct {
	// Registry opens tables; nil means maps.Default().
	Registry *maps.Registry
	// Resolver answers DNS queries; nil leaves the DNS restrictions
	// without DNS (they answer as for a temporary DNS failure).
	Resolver resolver.Resolver
	// Logger receives warnings and restriction events.
	Logger *slog.Logger
	// Funcs are restrictions written in Go (Config.Funcs).
	Funcs map[string]Func
	// Tables are tables by spec (Config.Tables).
	Tables map[string]maps.Map
}

// FromConfig builds a Checker from main.cf parameters: every
// smtpd_*_restrictions list, smtpd_restriction_classes and the parameters
// the restrictions read (reply codes, mynetworks, the recipient tables,
// the DNSBL reply templates, smtpd_policy_service_*). Errors name the
// parameter and, when set in main.cf, the file and line.
func FromConfig(ctx context.Context, c *config.Config, opts Options) (*Checker, error) {
	cfg, err := ConfigFrom(c)
	if err != nil {
		return nil, err
	}
	cfg.Registry = opts.Registry
	cfg.DNS.Resolver = opts.Resolver
	cfg.Logger = opts.Logger
	cfg.Funcs = opts.Funcs
	cfg.Tables = opts.Tables
	return New(ctx, cfg)
}

// ConfigFrom translates main.cf parameters into a Config.
func ConfigFrom(c *config.Config) (Config, error) {
	p := &params{c: c}
	cfg := Config{
		ClientRestrictions:             p.str("smtpd_client_restrictions"),
		HeloRestrictions:               p.str("smtpd_helo_restrictions"),
		SenderRestrictions:             p.str("smtpd_sender_restrictions"),
		RelayRestrictions:              p.str("smtpd_relay_restrictions"),
		RecipientRestrictions:          p.str("smtpd_recipient_restrictions"),
		DataRestrictions:               p.str("smtpd_data_restrictions"),
		EndOfDataRestrictions:          p.str("smtpd_end_of_data_restrictions"),
		ETRNRestrictions:               p.str("smtpd_etrn_restrictions"),
		DelayReject:                    p.bool("smtpd_delay_reject"),
		RelayBeforeRecipient:           p.bool("smtpd_relay_before_recipient_restrictions"),
		RejectUnlistedSender:           p.bool("smtpd_reject_unlisted_sender"),
		RejectUnlistedRecipient:        p.bool("smtpd_reject_unlisted_recipient"),
		HeloRequired:                   p.bool("smtpd_helo_required"),
		SoftBounce:                     p.bool("soft_bounce"),
		SASLEnabled:                    p.bool("smtpd_sasl_auth_enable"),
		StrictRFC821Envelopes:          p.bool("strict_rfc821_envelopes"),
		AccessMapRejectCode:            p.int("access_map_reject_code"),
		AccessMapDeferCode:             p.int("access_map_defer_code"),
		RejectCode:                     p.int("reject_code"),
		DeferCode:                      p.int("defer_code"),
		PlaintextRejectCode:            p.int("plaintext_reject_code"),
		MultiRecipientBounceRejectCode: p.int("multi_recipient_bounce_reject_code"),
		InvalidHostnameRejectCode:      p.int("invalid_hostname_reject_code"),
		NonFQDNRejectCode:              p.int("non_fqdn_reject_code"),
		UnknownClientRejectCode:        p.int("unknown_client_reject_code"),
		NullAccessKey:                  p.str("smtpd_null_access_lookup_key"),
		AccessParentStyle:              p.parentStyle("smtpd_access_maps"),
		AllowUntrustedRouting:          p.bool("allow_untrusted_routing"),
		Mynetworks:                     p.list("mynetworks"),
		RelayClientcerts:               p.list("relay_clientcerts"),
		PermitLog:                      p.list("smtpd_log_access_permit_actions"),
	}
	if classes := p.list("smtpd_restriction_classes"); len(classes) > 0 {
		cfg.Classes = map[string]string{}
		for _, name := range classes {
			v := p.str(name)
			if strings.TrimSpace(v) == "" && p.err == nil {
				p.err = &ConfigError{Param: "smtpd_restriction_classes",
					Err: fmt.Errorf("restriction class `%s' needs a definition", name)}
			}
			cfg.Classes[name] = v
		}
	}
	cfg.Addresses = addressConfigFrom(p)
	// permit_inet_interfaces compares the client with the addresses the
	// server listens on (own_inet_addr: $inet_interfaces).
	cfg.OwnAddrs = cfg.Addresses.InetInterfaces
	cfg.DNS = dnsConfigFrom(p)
	cfg.Policy = policyConfigFrom(p)
	if p.err != nil {
		return Config{}, p.err
	}
	return cfg, nil
}

// params reads main.cf parameters, keeping the first error.
type params struct {
	c   *config.Config
	err error
}

func (p *params) keep(err error) {
	if err != nil && p.err == nil {
		p.err = err
	}
}

func (p *params) str(name string) string {
	v, _, err := p.c.Lookup(name)
	p.keep(err)
	return v
}

func (p *params) bool(name string) bool {
	v, err := p.c.Bool(name)
	p.keep(err)
	return v
}

func (p *params) int(name string) int {
	v, err := p.c.Int(name)
	p.keep(err)
	return v
}

func (p *params) duration(name string) time.Duration {
	v, err := p.c.Duration(name)
	p.keep(err)
	return v
}

func (p *params) list(name string) []string {
	return config.SplitList(p.str(name))
}

// parentStyle reports whether name is listed in
// parent_domain_matches_subdomains.
func (p *params) parentStyle(name string) bool {
	for _, n := range p.list("parent_domain_matches_subdomains") {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}
