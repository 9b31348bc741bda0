package rewrite

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
)

// FromConfig builds a Rewriter from main.cf parameters (see the package
// documentation for the list). prefix names the delivery agent whose
// generic table is loaded: "smtp" for smtp_generic_maps, "lmtp" for
// lmtp_generic_maps, "" for none. Tables are opened with maps.Default().
func FromConfig(ctx context.Context, cfg *config.Config, prefix string) (*Rewriter, error) {
	p := config.NewReader(cfg)
	c := Config{
		MyOrigin:                       p.Str("myorigin"),
		MyDomain:                       p.Str("mydomain"),
		AppendAtMyOrigin:               p.Bool("append_at_myorigin"),
		AppendDotMyDomain:              p.Bool("append_dot_mydomain"),
		SwapBangPath:                   p.Bool("swap_bangpath"),
		AllowPercentHack:               p.Bool("allow_percent_hack"),
		RemoteHeaderRewriteDomain:      p.Str("remote_header_rewrite_domain"),
		MasqueradeDomains:              p.List("masquerade_domains"),
		VirtualAliasExpansionLimit:     p.Int("virtual_alias_expansion_limit"),
		VirtualAliasRecursionLimit:     p.Int("virtual_alias_recursion_limit"),
		VirtualAliasAddressLengthLimit: p.Int("virtual_alias_address_length_limit"),
		RecipientDelimiter:             p.Str("recipient_delimiter"),
		EmptyAddressRecipient:          p.Str("empty_address_recipient"),
		HeaderAddressTokenLimit:        p.Int("header_address_token_limit"),
	}
	c.Split = address.SplitOptions{
		NoOwnerRequestSpecial: !p.Bool("owner_request_special"),
		DoubleBounceSender:    p.Str("double_bounce_sender"),
	}
	// Debian's Postfix reads myorigin from a file when the value is a path
	// (/etc/mailname in Debian's main.cf).
	if strings.HasPrefix(c.MyOrigin, "/") {
		data, err := os.ReadFile(c.MyOrigin)
		if err != nil {
			return nil, fmt.Errorf("rewrite: myorigin: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		c.MyOrigin = strings.TrimSpace(line)
	}
	var err error
	if c.CanonicalClasses, err = classes("canonical_classes", p.List("canonical_classes")); err != nil {
		return nil, err
	}
	if c.SenderCanonicalClasses, err = classes("sender_canonical_classes", p.List("sender_canonical_classes")); err != nil {
		return nil, err
	}
	if c.RecipientCanonicalClasses, err = classes("recipient_canonical_classes", p.List("recipient_canonical_classes")); err != nil {
		return nil, err
	}
	if c.MasqueradeClasses, err = classes("masquerade_classes", p.List("masquerade_classes")); err != nil {
		return nil, err
	}
	for _, name := range p.List("propagate_unmatched_extensions") {
		switch strings.ToLower(name) {
		case "canonical":
			c.PropagateUnmatchedExtensions |= PropagateCanonical
		case "virtual":
			c.PropagateUnmatchedExtensions |= PropagateVirtual
		case "alias":
			c.PropagateUnmatchedExtensions |= PropagateAlias
		case "forward":
			c.PropagateUnmatchedExtensions |= PropagateForward
		case "include":
			c.PropagateUnmatchedExtensions |= PropagateInclude
		case "generic":
			c.PropagateUnmatchedExtensions |= PropagateGeneric
		default:
			return nil, fmt.Errorf("rewrite: propagate_unmatched_extensions: unknown class %q", name)
		}
	}
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}

	open := func(param string) (maps.List, error) {
		var l maps.List
		for _, spec := range p.List(param) {
			m, err := maps.Default().Open(ctx, spec, maps.Options{})
			if err != nil {
				return nil, fmt.Errorf("rewrite: %s: %w", param, err)
			}
			l = append(l, m)
		}
		return l, nil
	}
	if c.CanonicalMaps, err = open("canonical_maps"); err != nil {
		return nil, err
	}
	if c.SenderCanonicalMaps, err = open("sender_canonical_maps"); err != nil {
		return nil, err
	}
	if c.RecipientCanonicalMaps, err = open("recipient_canonical_maps"); err != nil {
		return nil, err
	}
	if c.VirtualAliasMaps, err = open("virtual_alias_maps"); err != nil {
		return nil, err
	}
	if prefix != "" {
		if c.GenericMaps, err = open(prefix + "_generic_maps"); err != nil {
			return nil, err
		}
	}
	if items := p.List("masquerade_exceptions"); len(items) > 0 {
		if c.MasqueradeExceptions, err = maps.NewMatchList(ctx, maps.MatchListConfig{
			Name: "masquerade_exceptions", Kind: maps.StringMatch,
		}, items); err != nil {
			return nil, fmt.Errorf("rewrite: %w", err)
		}
	}
	// mydestination and virtual_alias_domains are string lists in
	// Postfix (resolve_local, trivial-rewrite): exact names and table
	// keys, never a subdomain, whatever parent_domain_matches_subdomains
	// says (compared with Postfix in local_oracle_test.go).
	if items := p.List("virtual_alias_domains"); len(items) > 0 {
		if c.VirtualAliasDomains, err = maps.NewMatchList(ctx, maps.MatchListConfig{
			Name: "virtual_alias_domains", Kind: maps.StringMatch,
		}, items); err != nil {
			return nil, fmt.Errorf("rewrite: %w", err)
		}
	}
	var mydest *maps.MatchList
	if items := p.List("mydestination"); len(items) > 0 {
		if mydest, err = maps.NewMatchList(ctx, maps.MatchListConfig{
			Name: "mydestination", Kind: maps.StringMatch,
		}, items); err != nil {
			return nil, fmt.Errorf("rewrite: %w", err)
		}
	}
	own := append(interfaceAddrs(p.Str("inet_interfaces")), interfaceAddrs(p.Str("proxy_interfaces"))...)
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	c.IsLocal = func(ctx context.Context, domain string) (bool, error) {
		return resolveLocal(ctx, mydest, own, domain)
	}
	return New(c)
}

// classes parses a *_classes parameter.
func classes(param string, names []string) (Classes, error) {
	var s Classes
	for _, n := range names {
		switch strings.ToLower(n) {
		case "envelope_sender":
			s |= ClassSet(EnvelopeSender)
		case "envelope_recipient":
			s |= ClassSet(EnvelopeRecipient)
		case "header_sender":
			s |= ClassSet(HeaderSender)
		case "header_recipient":
			s |= ClassSet(HeaderRecipient)
		default:
			return 0, fmt.Errorf("rewrite: %s: unknown class %q", param, n)
		}
	}
	return s, nil
}

// resolveLocal is resolve_local(3): the domain matches $mydestination, or
// is an address literal of one of this machine's interface addresses
// (inet_interfaces, proxy_interfaces). One trailing dot is ignored.
func resolveLocal(ctx context.Context, mydest *maps.MatchList, own []netip.Addr, domain string) (bool, error) {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" || strings.HasSuffix(domain, ".") {
		return false, nil
	}
	if mydest != nil {
		ok, err := mydest.Match(ctx, domain)
		if err != nil {
			return false, fmt.Errorf("rewrite: mydestination lookup: %w", err)
		}
		if ok {
			return true, nil
		}
	}
	if len(domain) > 2 && domain[0] == '[' && domain[len(domain)-1] == ']' {
		if a, err := address.ParseLiteral(domain); err == nil {
			for _, o := range own {
				if o == a.Unmap() {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// interfaceAddrs resolves an inet_interfaces-style value to addresses:
// "all" is every address of this machine, "loopback-only" its loopback
// addresses; host names are not resolved.
func interfaceAddrs(v string) []netip.Addr {
	var out []netip.Addr
	for _, it := range config.SplitList(strings.ToLower(v)) {
		switch it {
		case "all", "loopback-only":
			for _, p := range config.SystemHost().Interfaces {
				if it == "all" || p.Addr().IsLoopback() {
					out = append(out, p.Addr().Unmap())
				}
			}
			continue
		}
		if a, err := netip.ParseAddr(strings.Trim(it, "[]")); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}
