package restrictions

// STUB owned by the address helper: replace freely, keeping the names the
// core uses (AddressConfig, defaultAddressConfig, destState, newDestState,
// Resolved, (*destState).resolve, (*eval).checkSenderMaps,
// (*eval).checkRecipientMaps, destBuiltins).

import (
	"context"
	"strings"
)

// AddressConfig configures address classes and recipient validation.
type AddressConfig struct {
	// RecipientDelimiter is recipient_delimiter.
	RecipientDelimiter string
	// Myorigin is $myorigin, appended to addresses without a domain.
	Myorigin string
}

func defaultAddressConfig() AddressConfig { return AddressConfig{} }

// Resolved is what the address resolver says about an envelope address.
type Resolved struct {
	Address string // the address in canonical form, user@domain
	Routed  bool   // the address is source-routed (user@a@b, user%a@b, a!user@b)
}

type destState struct{ c *Checker }

func newDestState(ctx context.Context, c *Checker) (*destState, error) { return &destState{c: c}, nil }

// resolve brings addr to canonical form and classifies it.
func (d *destState) resolve(ctx context.Context, e *eval, addr string, sender bool) (Resolved, error) {
	if !strings.Contains(addr, "@") && d.c.cfg.Addresses.Myorigin != "" {
		addr += "@" + d.c.cfg.Addresses.Myorigin
	}
	return Resolved{Address: addr}, nil
}

// checkSenderMaps is the implicit reject_unlisted_sender.
func (e *eval) checkSenderMaps(ctx context.Context, sender string) (status, error) {
	return statusDunno, nil
}

// checkRecipientMaps is the implicit reject_unlisted_recipient.
func (e *eval) checkRecipientMaps(ctx context.Context, rcpt string) (status, error) {
	return statusDunno, nil
}

var destBuiltins = map[string]*builtin{}

func addressConfigFrom(p *params) AddressConfig {
	return AddressConfig{RecipientDelimiter: p.str("recipient_delimiter"), Myorigin: p.str("myorigin")}
}
