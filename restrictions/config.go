package restrictions

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/postkit-mail/postkit/maps"
)

// Func is a restriction written in Go. It is used by name in a restriction
// list, like a built-in (Config.Funcs). The returned action is interpreted
// as an access(5) table value: "" or "DUNNO" continues with the next
// restriction, "OK" permits, "REJECT text", "450 text", "HOLD", "PREPEND
// X-Tag: 1", a restriction list, and so on. An error is a lookup failure
// (451 4.3.0 when maps.IsTemporary says so, else 451 4.3.5).
type Func func(ctx context.Context, stage Stage, s *Snapshot) (action string, err error)

// Config is a Checker's configuration in Go values. Start from
// DefaultConfig, which holds Postfix 3.7's defaults; FromConfig fills one
// from a main.cf. Restriction lists use main.cf syntax: names separated by
// commas or whitespace, with the table or domain a restriction takes
// following it ("check_client_access cidr:/etc/postfix/clients").
type Config struct {
	ClientRestrictions    string // smtpd_client_restrictions
	HeloRestrictions      string // smtpd_helo_restrictions
	SenderRestrictions    string // smtpd_sender_restrictions
	RelayRestrictions     string // smtpd_relay_restrictions
	RecipientRestrictions string // smtpd_recipient_restrictions
	DataRestrictions      string // smtpd_data_restrictions
	EndOfDataRestrictions string // smtpd_end_of_data_restrictions
	ETRNRestrictions      string // smtpd_etrn_restrictions
	// Classes are smtpd_restriction_classes: name -> restriction list.
	Classes map[string]string

	DelayReject             bool // smtpd_delay_reject
	RelayBeforeRecipient    bool // smtpd_relay_before_recipient_restrictions
	RejectUnlistedSender    bool // smtpd_reject_unlisted_sender
	RejectUnlistedRecipient bool // smtpd_reject_unlisted_recipient
	HeloRequired            bool // smtpd_helo_required
	SoftBounce              bool // soft_bounce
	SASLEnabled             bool // smtpd_sasl_auth_enable
	StrictRFC821Envelopes   bool // strict_rfc821_envelopes (ParseEnvelope)

	// Reply codes.
	AccessMapRejectCode            int // access_map_reject_code (554)
	AccessMapDeferCode             int // access_map_defer_code (450)
	RejectCode                     int // reject_code (554)
	DeferCode                      int // defer_code (450)
	PlaintextRejectCode            int // plaintext_reject_code (450)
	MultiRecipientBounceRejectCode int // multi_recipient_bounce_reject_code (550)
	InvalidHostnameRejectCode      int // invalid_hostname_reject_code (501)
	NonFQDNRejectCode              int // non_fqdn_reject_code (504)
	UnknownClientRejectCode        int // unknown_client_reject_code (450)

	// NullAccessKey is smtpd_null_access_lookup_key ("<>"): the key
	// check_sender_access looks up for the null sender.
	NullAccessKey string
	// AccessParentStyle: smtpd_access_maps is listed in
	// parent_domain_matches_subdomains (the default), so "example.com" in
	// an access table also matches its subdomains.
	AccessParentStyle bool
	// AllowUntrustedRouting is allow_untrusted_routing.
	AllowUntrustedRouting bool

	// Mynetworks is $mynetworks (patterns of a host match list); nil or
	// empty matches nothing.
	Mynetworks []string
	// OwnAddrs are the server's own addresses ($inet_interfaces,
	// $proxy_interfaces resolved), for permit_inet_interfaces and
	// permit_mx_backup.
	OwnAddrs []netip.Addr
	// RelayClientcerts is relay_clientcerts: table specs whose keys are
	// client certificate (or public key) fingerprints.
	RelayClientcerts []string
	// PermitLog is smtpd_log_access_permit_actions: names of permit
	// actions to log as "permit" events ("static:all" logs all).
	PermitLog []string

	// Addresses configures address classes and recipient validation
	// (permit_auth_destination, reject_unauth_destination,
	// reject_unlisted_*, the login-mismatch checks).
	Addresses AddressConfig
	// DNS configures the restrictions that ask DNS (reject_unknown_*,
	// DNSBLs, check_*_mx/ns/a_access, permit_mx_backup).
	DNS DNSConfig
	// Policy holds the smtpd_policy_service_* defaults for
	// check_policy_service.
	Policy PolicyConfig

	// Funcs are restrictions written in Go, by (case-insensitive) name.
	// They take precedence over restriction classes but not built-ins.
	Funcs map[string]Func
	// Tables are tables by exact "type:name" spec; a restriction naming
	// one of them uses it rather than opening the spec. This is how an
	// application hands its own maps.Map to check_*_access.
	Tables map[string]maps.Map
	// Registry opens the other table specs; nil means maps.Default().
	Registry *maps.Registry
	// MapOptions are used to open tables.
	MapOptions maps.Options

	// Logger receives warnings and the restriction events; nil discards.
	Logger *slog.Logger
	// Sleep implements the "sleep N" restriction; nil waits on a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultConfig returns Postfix 3.7's defaults at compatibility_level 3.6:
// empty lists except smtpd_relay_restrictions = permit_mynetworks,
// permit_sasl_authenticated, defer_unauth_destination.
func DefaultConfig() Config {
	return Config{
		RelayRestrictions:              "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
		DelayReject:                    true,
		RelayBeforeRecipient:           true,
		RejectUnlistedRecipient:        true,
		AccessMapRejectCode:            554,
		AccessMapDeferCode:             450,
		RejectCode:                     554,
		DeferCode:                      450,
		PlaintextRejectCode:            450,
		MultiRecipientBounceRejectCode: 550,
		InvalidHostnameRejectCode:      501,
		NonFQDNRejectCode:              504,
		UnknownClientRejectCode:        450,
		NullAccessKey:                  "<>",
		AccessParentStyle:              true,
		Mynetworks:                     []string{"127.0.0.0/8", "[::1]/128"},
		Addresses:                      defaultAddressConfig(),
		DNS:                            defaultDNSConfig(),
		Policy:                         defaultPolicyConfig(),
	}
}

// Checker evaluates restrictions. It is safe for concurrent use; Close
// releases the tables and policy connections it opened.
type Checker struct {
	cfg    Config
	lists  [numLists]rlist
	class  map[string]rlist // lower-cased names
	funcs  map[string]Func
	tables map[string]maps.Map // every table spec used, opened once
	opened []maps.Map          // tables this Checker opened and must close
	log    *slog.Logger

	builtins     map[string]*builtin // built once in New, read-only after
	runtimeLists sync.Map            // access-table values parsed as restriction lists

	mynetworks *maps.MatchList
	ccerts     maps.List
	permitLog  *maps.MatchList

	dns    *dnsState
	dest   *destState
	policy *policyState
}

// The restriction lists of a Checker.
const (
	listClient = iota
	listHelo
	listSender
	listRelay
	listRecipient
	listData
	listEOD
	listETRN
	numLists
)

var listParams = [numLists]string{
	"smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
	"smtpd_relay_restrictions", "smtpd_recipient_restrictions", "smtpd_data_restrictions",
	"smtpd_end_of_data_restrictions", "smtpd_etrn_restrictions",
}

// ConfigError is a configuration that cannot work; Param names the
// parameter.
type ConfigError struct {
	Param string
	Err   error
}

func (e *ConfigError) Error() string {
	return "restrictions: " + e.Param + ": " + e.Err.Error()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// New builds a Checker. It opens every table the lists name, as Postfix
// does at start-up, and fails when neither smtpd_relay_restrictions nor
// smtpd_recipient_restrictions holds a working reject_unauth_destination,
// defer_unauth_destination, reject, defer or defer_if_permit. A table that
// cannot be opened is not an error here: like Postfix, the restriction
// using it answers 451 4.3.5 and logs why.
func New(ctx context.Context, cfg Config) (*Checker, error) {
	c := &Checker{
		cfg:    cfg,
		class:  map[string]rlist{},
		funcs:  map[string]Func{},
		tables: map[string]maps.Map{},
		log:    cfg.Logger,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.cfg.MapOptions.Logger == nil && c.cfg.MapOptions.Warn == nil {
		// Table warnings go where the Checker's warnings go.
		c.cfg.MapOptions.Logger = c.log
	}
	c.fillDefaults()
	c.builtins = allBuiltins()
	for name, f := range cfg.Funcs {
		c.funcs[strings.ToLower(name)] = f
	}
	var err error
	c.mynetworks, err = maps.NewMatchList(ctx, maps.MatchListConfig{
		Name: "mynetworks", Kind: maps.HostMatch, ParentStyle: true,
		Registry: cfg.Registry, Options: cfg.MapOptions,
	}, cfg.Mynetworks)
	if err != nil {
		return nil, &ConfigError{Param: "mynetworks", Err: err}
	}
	if len(cfg.PermitLog) > 0 {
		c.permitLog, err = maps.NewMatchList(ctx, maps.MatchListConfig{
			Name: "smtpd_log_access_permit_actions", Kind: maps.StringMatch,
			Registry: cfg.Registry, Options: cfg.MapOptions,
		}, cfg.PermitLog)
		if err != nil {
			return nil, &ConfigError{Param: "smtpd_log_access_permit_actions", Err: err}
		}
	}
	for _, spec := range cfg.RelayClientcerts {
		c.ccerts = append(c.ccerts, c.table(ctx, spec))
	}
	texts := [numLists]string{cfg.ClientRestrictions, cfg.HeloRestrictions, cfg.SenderRestrictions,
		cfg.RelayRestrictions, cfg.RecipientRestrictions, cfg.DataRestrictions,
		cfg.EndOfDataRestrictions, cfg.ETRNRestrictions}
	for i, text := range texts {
		c.lists[i] = c.parseList(ctx, text)
	}
	for name, text := range cfg.Classes {
		if strings.TrimSpace(text) == "" {
			return nil, &ConfigError{Param: "smtpd_restriction_classes",
				Err: fmt.Errorf("restriction class %q needs a definition", name)}
		}
		c.class[strings.ToLower(name)] = c.parseList(ctx, text)
	}
	// reject_sender_login_mismatch is a built-in class (smtpd_check_init).
	if _, ok := c.class["reject_sender_login_mismatch"]; !ok {
		c.class["reject_sender_login_mismatch"] = c.parseList(ctx,
			"reject_authenticated_sender_login_mismatch reject_unauthenticated_sender_login_mismatch")
	}
	if !c.hasRequired(c.lists[listRecipient], 0) && !c.hasRequired(c.lists[listRelay], 0) {
		return nil, &ConfigError{Param: "smtpd_relay_restrictions or smtpd_recipient_restrictions",
			Err: fmt.Errorf("specify at least one working instance of: %s", strings.Join(relayRequired, ", "))}
	}
	if c.dns, err = newDNSState(ctx, c); err == nil {
		if c.dest, err = newDestState(ctx, c); err == nil {
			c.policy, err = newPolicyState(ctx, c)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Checker) fillDefaults() {
	d := DefaultConfig()
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.cfg.AccessMapRejectCode, d.AccessMapRejectCode)
	def(&c.cfg.AccessMapDeferCode, d.AccessMapDeferCode)
	def(&c.cfg.RejectCode, d.RejectCode)
	def(&c.cfg.DeferCode, d.DeferCode)
	def(&c.cfg.PlaintextRejectCode, d.PlaintextRejectCode)
	def(&c.cfg.MultiRecipientBounceRejectCode, d.MultiRecipientBounceRejectCode)
	def(&c.cfg.InvalidHostnameRejectCode, d.InvalidHostnameRejectCode)
	def(&c.cfg.NonFQDNRejectCode, d.NonFQDNRejectCode)
	def(&c.cfg.UnknownClientRejectCode, d.UnknownClientRejectCode)
	if c.cfg.NullAccessKey == "" {
		c.cfg.NullAccessKey = d.NullAccessKey
	}
}

// relayRequired lists the restrictions of which smtpd requires at least
// one in the relay or recipient list.
var relayRequired = []string{"reject_unauth_destination", "defer_unauth_destination",
	"reject", "defer", "defer_if_permit", "check_relay_domains"}

// hasRequired is Postfix's has_required: a list counts when one of
// relayRequired appears before any "permit", directly or in a class.
func (c *Checker) hasRequired(l rlist, depth int) bool {
	if depth > maxRecursion {
		return false
	}
	for i := 0; i < len(l); i++ {
		name := l[i].name
		if name == "warn_if_reject" && i+1 < len(l) {
			i++
			continue
		}
		if name == "permit" {
			return false
		}
		for _, r := range relayRequired {
			if name == r {
				return true
			}
		}
		if cl, ok := c.class[name]; ok && c.hasRequired(cl, depth+1) {
			return true
		}
	}
	return false
}

// table returns the table for spec, opening it once. A table that cannot
// be opened becomes one whose every lookup fails, so the restriction
// using it answers 451 4.3.5 (Postfix's dict_surrogate).
func (c *Checker) table(ctx context.Context, spec string) maps.Map {
	if m, ok := c.tables[spec]; ok {
		return m
	}
	if m, ok := c.cfg.Tables[spec]; ok {
		c.tables[spec] = m
		return m
	}
	reg := c.cfg.Registry
	if reg == nil {
		reg = maps.Default()
	}
	m, err := reg.Open(ctx, spec, c.cfg.MapOptions)
	if err != nil {
		c.log.Warn("cannot open table", "table", spec, "error", err)
		openErr := err
		m = maps.FuncMap(func(context.Context, string) (string, bool, error) {
			// Like Postfix's dict_surrogate: every lookup is a
			// temporary failure, logged, until the table is fixed.
			return "", false, &maps.Error{Map: spec, Err: openErr, Temporary: true}
		})
	} else {
		c.opened = append(c.opened, m)
	}
	c.tables[spec] = m
	return m
}

// Close releases the tables and connections the Checker opened.
func (c *Checker) Close() error {
	var first error
	for _, m := range c.opened {
		if err := maps.Close(m); err != nil && first == nil {
			first = err
		}
	}
	if c.policy != nil {
		if err := c.policy.close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Config returns the configuration the Checker was built with (defaults
// filled in).
func (c *Checker) Config() Config { return c.cfg }
