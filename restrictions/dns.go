package restrictions

// STUB owned by the DNS helper: replace freely, keeping the names the core
// uses (DNSConfig, defaultDNSConfig, dnsState, newDNSState, dnsBuiltins).

import (
	"context"

	"github.com/postkit-mail/postkit/resolver"
)

// DNSConfig configures the restrictions that ask DNS.
type DNSConfig struct {
	// Resolver answers the queries; nil disables the DNS restrictions
	// (they answer as for a DNS failure).
	Resolver resolver.Resolver
}

func defaultDNSConfig() DNSConfig { return DNSConfig{} }

type dnsState struct{}

func newDNSState(ctx context.Context, c *Checker) (*dnsState, error) { return &dnsState{}, nil }

var dnsBuiltins = map[string]*builtin{}

func dnsConfigFrom(p *params) DNSConfig { return defaultDNSConfig() }
