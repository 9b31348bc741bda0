package route

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
)

// Options are the Go-side settings of FromConfig.
type Options struct {
	// Logger receives warnings; nil means slog.Default().
	Logger *slog.Logger
	// Registry opens the tables; nil means maps.Default().
	Registry *maps.Registry
	// MapOptions are used to open every table.
	MapOptions maps.Options
}

// FromConfig builds a Resolver from main.cf parameters (see the package
// documentation for the list). Close releases the tables it opened.
func FromConfig(ctx context.Context, cfg *config.Config, opts Options) (*Resolver, error) {
	p := config.NewReader(cfg)
	reg := opts.Registry
	if reg == nil {
		reg = maps.Default()
	}
	c := Config{
		MyHostname:               p.Str("myhostname"),
		MyOrigin:                 p.Str("myorigin"),
		MyDomain:                 p.Str("mydomain"),
		AppendAtMyOrigin:         p.Bool("append_at_myorigin"),
		AppendDotMyDomain:        p.Bool("append_dot_mydomain"),
		SwapBangPath:             p.Bool("swap_bangpath"),
		AllowPercentHack:         p.Bool("allow_percent_hack"),
		ResolveDequoted:          p.Bool("resolve_dequoted_address"),
		ResolveNullDomain:        p.Bool("resolve_null_domain"),
		ResolveNumericDomain:     p.Bool("resolve_numeric_domain"),
		AllowMinUser:             p.Bool("allow_min_user"),
		SMTPUTF8:                 p.Bool("smtputf8_enable"),
		EmptyAddressRecipient:    p.Str("empty_address_recipient"),
		LocalTransport:           p.Str("local_transport"),
		VirtualTransport:         p.Str("virtual_transport"),
		RelayTransport:           p.Str("relay_transport"),
		DefaultTransport:         p.Str("default_transport"),
		Relayhost:                p.Str("relayhost"),
		NullRelayhostKey:         p.Str("empty_address_relayhost_maps_lookup_key"),
		NullDefaultTransportKey:  p.Str("empty_address_default_transport_maps_lookup_key"),
		TransportParentStyle:     p.ParentStyle("transport_maps"),
		ShowUserUnknownTableName: p.Bool("show_user_unknown_table_name"),
		RecipientDelimiter:       p.Str("recipient_delimiter"),
		Split: address.SplitOptions{
			NoOwnerRequestSpecial: !p.Bool("owner_request_special"),
			DoubleBounceSender:    p.Str("double_bounce_sender"),
		},
		Logger: opts.Logger,
	}
	own := append(interfaceAddrs(p.Str("inet_interfaces")), interfaceAddrs(p.Str("proxy_interfaces"))...)
	c.OwnAddrs = own
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	// Debian's Postfix reads myorigin from a file when the value is a path
	// (/etc/mailname in Debian's main.cf).
	if strings.HasPrefix(c.MyOrigin, "/") {
		data, err := os.ReadFile(c.MyOrigin)
		if err != nil {
			return nil, fmt.Errorf("route: myorigin: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		c.MyOrigin = strings.TrimSpace(line)
	}

	var closers []func() error
	fail := func(err error) (*Resolver, error) {
		for _, f := range closers {
			f()
		}
		return nil, err
	}
	open := func(param string) (maps.List, error) {
		var l maps.List
		for _, spec := range p.List(param) {
			m, err := reg.Open(ctx, spec, opts.MapOptions)
			if err != nil {
				return nil, fmt.Errorf("route: %s: %w", param, err)
			}
			closers = append(closers, func() error { return maps.Close(m) })
			l = append(l, m)
		}
		return l, nil
	}
	var err error
	for _, t := range []struct {
		param string
		dst   *maps.List
	}{
		{"transport_maps", &c.TransportMaps},
		{"sender_dependent_relayhost_maps", &c.SenderDependentRelayhostMaps},
		{"sender_dependent_default_transport_maps", &c.SenderDependentDefaultTransportMaps},
		{"relocated_maps", &c.RelocatedMaps},
	} {
		if *t.dst, err = open(t.param); err != nil {
			return fail(err)
		}
	}
	for _, l := range []struct {
		param string
		kind  maps.MatchKind
		dst   **maps.MatchList
	}{
		{"mydestination", maps.StringMatch, &c.MyDestination},
		{"virtual_alias_domains", maps.StringMatch, &c.VirtualAliasDomains},
		{"virtual_mailbox_domains", maps.StringMatch, &c.VirtualMailboxDomains},
		{"relay_domains", maps.DomainMatch, &c.RelayDomains},
	} {
		items := p.List(l.param)
		if len(items) == 0 {
			continue
		}
		if *l.dst, err = maps.NewMatchList(ctx, maps.MatchListConfig{
			Name: l.param, Kind: l.kind, ParentStyle: l.kind == maps.DomainMatch && p.ParentStyle(l.param),
			Registry: reg, Options: opts.MapOptions,
		}, items); err != nil {
			return fail(fmt.Errorf("route: %w", err))
		}
	}
	if err := p.Err(); err != nil {
		return fail(fmt.Errorf("route: %w", err))
	}
	r, err := New(c)
	if err != nil {
		return fail(err)
	}
	r.closers = closers
	return r, nil
}

// interfaceAddrs resolves an inet_interfaces-style value to addresses:
// "all" is every address of this machine, "loopback-only" its loopback
// addresses, other items addresses or host names.
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
			continue
		}
		hosts, _ := net.LookupHost(it)
		for _, h := range hosts {
			if a, err := netip.ParseAddr(h); err == nil {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}
