package restrictions

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

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
	p := config.NewReader(c)
	cfg := Config{
		ClientRestrictions:             p.Str("smtpd_client_restrictions"),
		HeloRestrictions:               p.Str("smtpd_helo_restrictions"),
		SenderRestrictions:             p.Str("smtpd_sender_restrictions"),
		RelayRestrictions:              p.Str("smtpd_relay_restrictions"),
		RecipientRestrictions:          p.Str("smtpd_recipient_restrictions"),
		DataRestrictions:               p.Str("smtpd_data_restrictions"),
		EndOfDataRestrictions:          p.Str("smtpd_end_of_data_restrictions"),
		ETRNRestrictions:               p.Str("smtpd_etrn_restrictions"),
		DelayReject:                    p.Bool("smtpd_delay_reject"),
		RelayBeforeRecipient:           p.Bool("smtpd_relay_before_recipient_restrictions"),
		RejectUnlistedSender:           p.Bool("smtpd_reject_unlisted_sender"),
		RejectUnlistedRecipient:        p.Bool("smtpd_reject_unlisted_recipient"),
		HeloRequired:                   p.Bool("smtpd_helo_required"),
		SoftBounce:                     p.Bool("soft_bounce"),
		SASLEnabled:                    p.Bool("smtpd_sasl_auth_enable"),
		StrictRFC821Envelopes:          p.Bool("strict_rfc821_envelopes"),
		AccessMapRejectCode:            p.Int("access_map_reject_code"),
		AccessMapDeferCode:             p.Int("access_map_defer_code"),
		RejectCode:                     p.Int("reject_code"),
		DeferCode:                      p.Int("defer_code"),
		PlaintextRejectCode:            p.Int("plaintext_reject_code"),
		MultiRecipientBounceRejectCode: p.Int("multi_recipient_bounce_reject_code"),
		InvalidHostnameRejectCode:      p.Int("invalid_hostname_reject_code"),
		NonFQDNRejectCode:              p.Int("non_fqdn_reject_code"),
		UnknownClientRejectCode:        p.Int("unknown_client_reject_code"),
		NullAccessKey:                  p.Str("smtpd_null_access_lookup_key"),
		AccessParentStyle:              p.ParentStyle("smtpd_access_maps"),
		AllowUntrustedRouting:          p.Bool("allow_untrusted_routing"),
		Mynetworks:                     p.List("mynetworks"),
		RelayClientcerts:               p.List("relay_clientcerts"),
		PermitLog:                      p.List("smtpd_log_access_permit_actions"),
	}
	if classes := p.List("smtpd_restriction_classes"); len(classes) > 0 {
		cfg.Classes = map[string]string{}
		for _, name := range classes {
			v := p.Str(name)
			if strings.TrimSpace(v) == "" {
				p.Keep(&ConfigError{Param: "smtpd_restriction_classes",
					Err: fmt.Errorf("restriction class `%s' needs a definition", name)})
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
	if p.Err() != nil {
		return Config{}, p.Err()
	}
	return cfg, nil
}

// params reads main.cf parameters, keeping the first error.
type params = config.Reader
