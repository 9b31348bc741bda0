package route

import (
	"context"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/internal/tok822"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/restrictions"
)

// SMTPD returns r as the address resolver of the SMTP server's
// restrictions (restrictions.AddressConfig.Resolver), which is what
// Postfix's smtpd asks trivial-rewrite: the address is first brought to
// canonical form in the local context (smtpd's rewrite request), then
// resolved with the whole configuration, transport_maps, relocated_maps
// and the sender-dependent tables included. With it,
// reject_unlisted_recipient rejects a recipient that transport_maps sends
// to error: or relocated_maps lists, at RCPT time, as Postfix does
// ("550 5.1.6 <joe@example.com>: Recipient address rejected: User has
// moved to joe@example.net"); the restrictions' built-in resolver has no
// tables.
func (r *Resolver) SMTPD() restrictions.AddressResolver { return smtpdResolver{r} }

type smtpdResolver struct{ r *Resolver }

// Resolve implements restrictions.AddressResolver.
func (s smtpdResolver) Resolve(ctx context.Context, sender, addr string) (restrictions.Resolved, error) {
	res, err := s.r.resolveCanonical(ctx, sender, addr)
	if err != nil {
		return restrictions.Resolved{}, err
	}
	out := restrictions.Resolved{
		Address: maps.FoldKey(res.Recipient),
		Routed:  res.Routed,
		Invalid: res.Invalid,
	}
	switch res.Class {
	case Local:
		out.Class = restrictions.ClassLocal
	case VirtualAlias:
		out.Class = restrictions.ClassVirtualAlias
	case VirtualMailbox:
		out.Class = restrictions.ClassVirtualMailbox
	case Relay:
		out.Class = restrictions.ClassRelay
	default:
		out.Class = restrictions.ClassDefault
	}
	out.Final = out.Class.Final()
	out.Transport, out.Nexthop = res.Transport, res.Nexthop
	return out, nil
}

// resolveCanonical is Resolve after trivial-rewrite's rewrite request in
// the local context (spec §6.1), as smtpd and the sendmail command do
// before they resolve.
func (r *Resolver) resolveCanonical(ctx context.Context, sender, addr string) (Result, error) {
	if addr != "" {
		addr = tok822.Internalize(r.strip.Rewrite(tok822.Scan(address.Quote(addr))))
	}
	return r.Resolve(ctx, sender, addr)
}
