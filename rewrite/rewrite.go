package rewrite

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/maps"
)

// Class says which kind of address is being rewritten. The canonical,
// masquerade and generic class parameters (canonical_classes,
// masquerade_classes, ...) are sets of these.
type Class int

// The address classes of canonical_classes and masquerade_classes.
const (
	EnvelopeSender    Class = iota // envelope_sender
	EnvelopeRecipient              // envelope_recipient
	HeaderSender                   // header_sender
	HeaderRecipient                // header_recipient
)

// String returns the class's name as main.cf writes it.
func (c Class) String() string {
	switch c {
	case EnvelopeSender:
		return "envelope_sender"
	case EnvelopeRecipient:
		return "envelope_recipient"
	case HeaderSender:
		return "header_sender"
	case HeaderRecipient:
		return "header_recipient"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Classes is a set of address classes.
type Classes uint8

// AllClasses is every class: the default of canonical_classes,
// sender_canonical_classes and recipient_canonical_classes.
const AllClasses Classes = 1<<EnvelopeSender | 1<<EnvelopeRecipient | 1<<HeaderSender | 1<<HeaderRecipient

// DefaultMasqueradeClasses is masquerade_classes' default: envelope_sender,
// header_sender, header_recipient (envelope recipients are left alone).
const DefaultMasqueradeClasses Classes = 1<<EnvelopeSender | 1<<HeaderSender | 1<<HeaderRecipient

// ClassSet makes a set of the given classes.
func ClassSet(cs ...Class) Classes {
	var s Classes
	for _, c := range cs {
		s |= 1 << c
	}
	return s
}

// Has reports whether c is in the set.
func (s Classes) Has(c Class) bool { return s&(1<<c) != 0 }

// Extensions is the set of table classes named in
// propagate_unmatched_extensions.
type Extensions uint8

// The classes of propagate_unmatched_extensions that rewrite acts on (alias,
// forward and include belong to local delivery and are kept for it).
const (
	PropagateCanonical Extensions = 1 << iota // canonical
	PropagateVirtual                          // virtual
	PropagateAlias                            // alias
	PropagateForward                          // forward
	PropagateInclude                          // include
	PropagateGeneric                          // generic
)

// DefaultPropagate is propagate_unmatched_extensions' default: canonical,
// virtual.
const DefaultPropagate = PropagateCanonical | PropagateVirtual

// Config is the typed configuration of a Rewriter. Booleans and sets that
// default to "on" in Postfix are off in the zero value; start from Defaults
// for Postfix's behaviour.
type Config struct {
	// MyOrigin ($myorigin) is appended to addresses without a domain and
	// MyDomain ($mydomain) to domains without a dot.
	MyOrigin, MyDomain string
	// append_at_myorigin, append_dot_mydomain, swap_bangpath,
	// allow_percent_hack.
	AppendAtMyOrigin, AppendDotMyDomain, SwapBangPath, AllowPercentHack bool
	// RemoteHeaderRewriteDomain is remote_header_rewrite_domain: cleanup
	// passes it as Header's domain for remote mail when it is set.
	RemoteHeaderRewriteDomain string

	// canonical_maps, sender_canonical_maps, recipient_canonical_maps.
	CanonicalMaps, SenderCanonicalMaps, RecipientCanonicalMaps maps.List
	// canonical_classes, sender_canonical_classes,
	// recipient_canonical_classes, masquerade_classes.
	CanonicalClasses, SenderCanonicalClasses, RecipientCanonicalClasses, MasqueradeClasses Classes

	// MasqueradeDomains is masquerade_domains in order, "!" prefixes kept;
	// they are compared ignoring case and written in lower case.
	MasqueradeDomains []string
	// MasqueradeExceptions is masquerade_exceptions (a string list of
	// local parts); nil means none.
	MasqueradeExceptions *maps.MatchList

	// VirtualAliasMaps is virtual_alias_maps.
	VirtualAliasMaps maps.List
	// VirtualAliasDomains is virtual_alias_domains; rewrite does not use
	// it itself, it is here for the resolver and recipient validation.
	VirtualAliasDomains *maps.MatchList
	// virtual_alias_expansion_limit, virtual_alias_recursion_limit,
	// virtual_alias_address_length_limit; zero means Postfix's default
	// (1000 each).
	VirtualAliasExpansionLimit, VirtualAliasRecursionLimit, VirtualAliasAddressLengthLimit int

	// PropagateUnmatchedExtensions is propagate_unmatched_extensions.
	PropagateUnmatchedExtensions Extensions
	// RecipientDelimiter is recipient_delimiter (a set of characters).
	RecipientDelimiter string
	// Split holds owner_request_special and double_bounce_sender.
	Split address.SplitOptions

	// GenericMaps is smtp_generic_maps or lmtp_generic_maps.
	GenericMaps maps.List

	// EmptyAddressRecipient is empty_address_recipient; "" means
	// "MAILER-DAEMON".
	EmptyAddressRecipient string
	// HeaderAddressTokenLimit is header_address_token_limit; zero means
	// 10240.
	HeaderAddressTokenLimit int

	// IsLocal says whether a domain is local ($myorigin, $mydestination,
	// [$inet_interfaces], [$proxy_interfaces]), for the user and user+ext
	// keys of the table search (spec §2.5). Nil means: only MyOrigin.
	IsLocal func(ctx context.Context, domain string) (bool, error)

	// Logger receives warnings (several results from a one-to-one table,
	// a canonical mapping loop). Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults returns Postfix 3.7's defaults (compatibility_level 3.6) for the
// given $myorigin and $mydomain.
func Defaults(myOrigin, myDomain string) Config {
	return Config{
		MyOrigin:                       myOrigin,
		MyDomain:                       myDomain,
		AppendAtMyOrigin:               true,
		SwapBangPath:                   true,
		AllowPercentHack:               true,
		CanonicalClasses:               AllClasses,
		SenderCanonicalClasses:         AllClasses,
		RecipientCanonicalClasses:      AllClasses,
		MasqueradeClasses:              DefaultMasqueradeClasses,
		VirtualAliasExpansionLimit:     1000,
		VirtualAliasRecursionLimit:     1000,
		VirtualAliasAddressLengthLimit: 1000,
		PropagateUnmatchedExtensions:   DefaultPropagate,
		EmptyAddressRecipient:          "MAILER-DAEMON",
		HeaderAddressTokenLimit:        10240,
	}
}

// Rewriter rewrites addresses. It is safe for concurrent use.
type Rewriter struct {
	cfg        Config
	log        *slog.Logger
	classSteps [4][]step // the mappings of each Class, in order
}

// New checks cfg and returns a Rewriter.
func New(cfg Config) (*Rewriter, error) {
	if cfg.VirtualAliasExpansionLimit == 0 {
		cfg.VirtualAliasExpansionLimit = 1000
	}
	if cfg.VirtualAliasRecursionLimit == 0 {
		cfg.VirtualAliasRecursionLimit = 1000
	}
	if cfg.VirtualAliasAddressLengthLimit == 0 {
		cfg.VirtualAliasAddressLengthLimit = 1000
	}
	if cfg.HeaderAddressTokenLimit == 0 {
		cfg.HeaderAddressTokenLimit = 10240
	}
	if cfg.EmptyAddressRecipient == "" {
		cfg.EmptyAddressRecipient = "MAILER-DAEMON"
	}
	for _, l := range []struct {
		name string
		v    int
	}{
		{"virtual_alias_expansion_limit", cfg.VirtualAliasExpansionLimit},
		{"virtual_alias_recursion_limit", cfg.VirtualAliasRecursionLimit},
		{"virtual_alias_address_length_limit", cfg.VirtualAliasAddressLengthLimit},
		{"header_address_token_limit", cfg.HeaderAddressTokenLimit},
	} {
		if l.v < 0 {
			return nil, fmt.Errorf("rewrite: %s must not be negative: %d", l.name, l.v)
		}
	}
	// Postfix lower-cases masquerade_domains: the domain that replaces
	// a masqueraded one is written in lower case.
	if len(cfg.MasqueradeDomains) > 0 {
		md := make([]string, len(cfg.MasqueradeDomains))
		for i, d := range cfg.MasqueradeDomains {
			md[i] = strings.ToLower(d)
		}
		cfg.MasqueradeDomains = md
	}
	r := &Rewriter{cfg: cfg, log: cfg.Logger}
	if r.log == nil {
		r.log = slog.Default()
	}
	for c := range r.classSteps {
		r.classSteps[c] = r.buildSteps(Class(c))
	}
	return r, nil
}

// Config returns the configuration the Rewriter uses (with zero limits
// replaced by their defaults).
func (r *Rewriter) Config() Config { return r.cfg }

// ExpansionError is a virtual alias expansion that went over a limit.
// Postfix defers the whole message ("4.6.0 Alias expansion error").
type ExpansionError struct {
	Addr   string // the address being expanded
	Reason string // which limit, as Postfix logs it
}

func (e *ExpansionError) Error() string {
	return "rewrite: virtual alias expansion of " + e.Addr + ": " + e.Reason
}
