package rewrite

import (
	"context"
	"fmt"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/maps"
)

// canonicalLimit is how often a canonical mapping result is looked up
// again (cleanup_map11.c: ten times, then a warning).
const canonicalLimit = 10

// isLocal is the test of the user and user+ext keys (spec §2.5): the
// domain is $myorigin, or Config.IsLocal says it is local.
func (r *Rewriter) isLocal(ctx context.Context, domain string) (bool, error) {
	if r.cfg.MyOrigin != "" && strings.EqualFold(domain, r.cfg.MyOrigin) {
		return true, nil
	}
	if r.cfg.IsLocal != nil {
		return r.cfg.IsLocal(ctx, domain)
	}
	return false, nil
}

// strategy is MA_FIND_DEFAULT with the given query form.
func (r *Rewriter) strategy(form maps.QueryForm) maps.AddressStrategy {
	s := maps.MappingStrategy(r.cfg.RecipientDelimiter, r.isLocal)
	s.Form = form
	s.Split = r.cfg.Split
	return s
}

// mapOnce looks ext (external form) up in l as Postfix's mail_addr_map
// does and returns the result addresses in external form, canonicalised in
// the local context, with unmatched extensions propagated when propagate.
func (r *Rewriter) mapOnce(ctx context.Context, l maps.List, ext string, form maps.QueryForm, propagate bool) ([]string, bool, error) {
	internal := address.Unquote(ext)
	if internal == "" {
		return nil, false, nil
	}
	res, ok, err := l.FindAddress(ctx, internal, r.strategy(form))
	if err != nil || !ok {
		return nil, false, err
	}
	out, err := maps.MapAddressResult(res, internal, maps.AddressResultOptions{
		Canonicalize: r.canonLocal,
		Propagate:    propagate,
	})
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// map11 is a one-to-one mapping of an external-form address through l
// (canonical_maps and friends, cleanup_map11.c): the first result is
// used (with a warning when there are more), and looked up again until
// there is no match, the result equals its input (ignoring case), or
// recursive is false (generic maps) or the limit is reached.
func (r *Rewriter) map11(ctx context.Context, l maps.List, param, ext string, propagate, recursive bool) (string, bool, error) {
	changed := false
	for count := 0; count < canonicalLimit; count++ {
		res, ok, err := r.mapOnce(ctx, l, ext, maps.External, propagate)
		if err != nil {
			return ext, changed, fmt.Errorf("rewrite: %s lookup for %s: %w", param, ext, err)
		}
		if !ok {
			return ext, changed, nil
		}
		if len(res) > 1 {
			r.log.Warn("multi-valued table entry", "table", param, "address", ext)
		}
		if res[0] != ext {
			changed = true
		}
		self := strings.EqualFold(res[0], ext)
		ext = res[0]
		if self || !recursive {
			return ext, changed, nil
		}
	}
	r.log.Warn("unreasonable map nesting", "table", param, "address", ext)
	return ext, changed, nil
}

// masquerade applies masquerade_domains to an external-form address
// (cleanup_masquerade.c, spec §6.3): a local part listed in
// masquerade_exceptions is left alone; otherwise the first entry that
// equals the domain (no change) or is a parent of it ends the scan, and a
// parent not negated with '!' replaces the domain.
func (r *Rewriter) masquerade(ctx context.Context, ext string) (string, bool, error) {
	at := strings.LastIndexByte(ext, '@')
	if at < 0 || len(r.cfg.MasqueradeDomains) == 0 {
		return ext, false, nil
	}
	domain := ext[at+1:]
	if r.cfg.MasqueradeExceptions != nil {
		excluded, err := r.cfg.MasqueradeExceptions.Match(ctx, strings.ToLower(ext[:at]))
		if err != nil {
			return ext, false, fmt.Errorf("rewrite: masquerade_exceptions lookup for %s: %w", ext, err)
		}
		if excluded {
			return ext, false, nil
		}
	}
	for _, m := range r.cfg.MasqueradeDomains {
		truncate := true
		for strings.HasPrefix(m, "!") {
			truncate = !truncate
			m = m[1:]
		}
		switch {
		case m == "":
			continue
		case len(m) == len(domain):
			if strings.EqualFold(m, domain) {
				return ext, false, nil
			}
		case len(m) < len(domain):
			parent := domain[len(domain)-len(m):]
			if domain[len(domain)-len(m)-1] == '.' && strings.EqualFold(m, parent) {
				if truncate {
					return ext[:at+1] + m, true, nil
				}
				return ext, false, nil
			}
		}
	}
	return ext, false, nil
}

// step is one mapping of an external-form address: it returns the new
// address and whether it changed.
type step func(ctx context.Context, ext string) (string, bool, error)

// steps returns the mappings of class c, built once by New.
func (r *Rewriter) steps(c Class) []step {
	if c < 0 || int(c) >= len(r.classSteps) {
		return nil
	}
	return r.classSteps[c]
}

// buildSteps lists the mappings cleanup applies to an address of class c, in
// order: sender_canonical_maps or recipient_canonical_maps, then
// canonical_maps, then masquerading, each only when configured and when c
// is in its class parameter (cleanup_addr.c, cleanup_message.c).
func (r *Rewriter) buildSteps(c Class) []step {
	prop := r.cfg.PropagateUnmatchedExtensions&PropagateCanonical != 0
	table := func(l maps.List, param string) step {
		return func(ctx context.Context, ext string) (string, bool, error) {
			return r.map11(ctx, l, param, ext, prop, true)
		}
	}
	var out []step
	if c == EnvelopeSender || c == HeaderSender {
		if len(r.cfg.SenderCanonicalMaps) > 0 && r.cfg.SenderCanonicalClasses.Has(c) {
			out = append(out, table(r.cfg.SenderCanonicalMaps, "sender_canonical_maps"))
		}
	} else if len(r.cfg.RecipientCanonicalMaps) > 0 && r.cfg.RecipientCanonicalClasses.Has(c) {
		out = append(out, table(r.cfg.RecipientCanonicalMaps, "recipient_canonical_maps"))
	}
	if len(r.cfg.CanonicalMaps) > 0 && r.cfg.CanonicalClasses.Has(c) {
		out = append(out, table(r.cfg.CanonicalMaps, "canonical_maps"))
	}
	if len(r.cfg.MasqueradeDomains) > 0 && r.cfg.MasqueradeClasses.Has(c) {
		out = append(out, r.masquerade)
	}
	return out
}

// mapClass runs the steps of class c on an external-form address.
func (r *Rewriter) mapClass(ctx context.Context, c Class, ext string) (string, bool, error) {
	changed := false
	for _, st := range r.steps(c) {
		out, ch, err := st(ctx, ext)
		if err != nil {
			return ext, changed, err
		}
		ext = out
		changed = changed || ch
	}
	return ext, changed, nil
}

// Sender rewrites the envelope sender as cleanup does (spec §6.2): the
// canonical form in the local context, MAILER-DAEMON@$myorigin (in any
// case) to the null sender, then, unless noMappings
// (receive_override_options = no_address_mappings),
// sender_canonical_maps, canonical_maps and masquerading, each only when
// envelope_sender is in its class parameter. The null sender is never
// rewritten. An error is a table lookup failure: cleanup defers the
// message.
func (r *Rewriter) Sender(ctx context.Context, addr string, noMappings bool) (string, error) {
	if addr == "" {
		return "", nil
	}
	a := r.CanonicalForm(addr, "")
	if r.isCanonDaemon(a) {
		return "", nil
	}
	if noMappings || a == "" {
		return a, nil
	}
	ext, _, err := r.mapClass(ctx, EnvelopeSender, address.Quote(a))
	if err != nil {
		return a, err
	}
	return address.Unquote(ext), nil
}

// Recipient rewrites one envelope recipient as cleanup does before virtual
// alias expansion (spec §6.2): the null recipient becomes
// empty_address_recipient; the canonical form in the local context; then,
// unless noMappings, recipient_canonical_maps, canonical_maps and
// masquerading (masquerade_classes does not hold envelope_recipient by
// default), each only when envelope_recipient is in its class parameter.
func (r *Rewriter) Recipient(ctx context.Context, addr string, noMappings bool) (string, error) {
	if addr == "" {
		addr = r.cfg.EmptyAddressRecipient
	}
	a := r.CanonicalForm(addr, "")
	if noMappings || a == "" {
		return a, nil
	}
	ext, _, err := r.mapClass(ctx, EnvelopeRecipient, address.Quote(a))
	if err != nil {
		return a, err
	}
	return address.Unquote(ext), nil
}

// Generic applies smtp_generic_maps or lmtp_generic_maps (whichever prefix
// FromConfig was given) to an address, as the SMTP and LMTP clients do to
// the envelope sender, the recipients and header addresses of outgoing
// mail (smtp_map11.c): one lookup, not recursive, the first of several
// results with a warning, extensions propagated only when generic is in
// propagate_unmatched_extensions. A lookup error is returned; the delivery
// agent defers the mail.
func (r *Rewriter) Generic(ctx context.Context, addr string) (string, error) {
	if len(r.cfg.GenericMaps) == 0 || addr == "" {
		return addr, nil
	}
	prop := r.cfg.PropagateUnmatchedExtensions&PropagateGeneric != 0
	ext, _, err := r.map11(ctx, r.cfg.GenericMaps, "generic_maps", address.Quote(addr), prop, false)
	if err != nil {
		return addr, err
	}
	return address.Unquote(ext), nil
}
