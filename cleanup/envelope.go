package cleanup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/contentcheck"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/rewrite"
)

// envelopeRecipients builds the final recipient list (spec §6.2): each
// recipient through canonical mapping and virtual alias expansion, the
// automatic BCCs, duplicate elimination, and a REDIRECT last.
func (m *Message) envelopeRecipients(ctx context.Context, env *Envelope, v *contentcheck.Verdict) error {
	b := rcptBuilder{m: m, seen: map[string]bool{}}
	mapOK := !m.c.cfg.NoAddressMappings
	// sender_bcc_maps: looked up with the rewritten sender, extension
	// ignored; new mail only (cleanup_addr_sender).
	if mapOK && m.sender != "" && len(m.c.cfg.SenderBCCMaps) > 0 {
		if err := b.bccFrom(ctx, m.c.cfg.SenderBCCMaps, m.sender, "sender_bcc_maps"); err != nil {
			return err
		}
	}
	rcpts := m.recipients()
	if m.in.ExtractRecipients {
		// sendmail -t: the header recipients are added to those given on
		// the command line (Postfix 2.1 and later).
		for _, a := range m.hdr.extracted() {
			rcpts = append(rcpts, Recipient{Addr: a, Original: a})
		}
	}
	// The BCC action of the SMTP restrictions: Postfix's smtpd hands
	// these to cleanup as ordinary recipients after the client's.
	for _, a := range m.in.Effects.BCC {
		rcpts = append(rcpts, Recipient{Addr: a, Original: a, ORCPT: "rfc822;" + address.Quote(a)})
	}
	for _, r := range rcpts {
		if err := b.add(ctx, r, true); err != nil {
			return err
		}
	}
	if mapOK && m.c.cfg.AlwaysBCC != "" {
		if err := b.bcc(ctx, m.c.cfg.AlwaysBCC); err != nil {
			return err
		}
	}
	for _, a := range v.BCC {
		if err := b.bcc(ctx, a); err != nil {
			return err
		}
	}
	redirect := m.in.Effects.Redirect
	if v.Redirect != "" {
		redirect = v.Redirect
	}
	if redirect != "" {
		// REDIRECT: the recipients stay in the envelope as they are, and
		// the queue delivers each to this address instead (Postfix's
		// redirect_to record, which qmgr applies). The address gets the
		// canonical form only.
		if r := m.c.cfg.Rewriter; r != nil {
			redirect = r.CanonicalForm(redirect, "")
		}
		env.Redirect = redirect
	}
	env.Recipients = b.out
	return nil
}

// rcptBuilder accumulates the output recipients.
type rcptBuilder struct {
	m    *Message
	out  []Recipient
	seen map[string]bool
}

// dupKey is the duplicate elimination key (cleanup_out_recipient.c): with
// enable_original_recipient, DSN ORCPT, NOTIFY, original and final
// address, so that two originals delivered to one mailbox both stay;
// otherwise the final address alone.
func (m *Message) dupKey(r Recipient) string {
	// been_here with BH_FLAG_FOLD: case does not make a difference.
	if m.c.cfg.NoOriginalRecipient {
		return strings.ToLower(r.Addr)
	}
	return strings.ToLower(r.ORCPT + "\n" + strings.Join(r.Notify, ",") + "\n" + r.Original + "\n" + r.Addr)
}

// add runs one envelope recipient through the pipeline: Recipient()
// rewriting, virtual alias expansion, duplicate elimination, then
// recipient_bcc_maps (looked up with the rewritten, unexpanded address).
func (b *rcptBuilder) add(ctx context.Context, r Recipient, withBCC bool) error {
	m := b.m
	mapOK := !m.c.cfg.NoAddressMappings
	orig := r.Original
	if orig == "" {
		orig = r.Addr
	}
	addr := r.Addr
	expanded := []string{addr}
	if rw := m.c.cfg.Rewriter; rw != nil {
		a, err := rw.Recipient(ctx, r.Addr, !mapOK)
		if err != nil {
			return fmt.Errorf("rewriting recipient %s: %w", r.Addr, err)
		}
		addr = a
		expanded = []string{addr}
		if mapOK {
			list, err := rw.VirtualAlias(ctx, addr)
			var ee *rewrite.ExpansionError
			if errors.As(err, &ee) {
				// cleanup_map1n.c's wording.
				m.c.logf(m.id, slog.LevelWarn, "warning: %s for %s -- message not accepted, try again later", ee.Reason, ee.Addr)
				return &RejectError{Reply: replyAlias}
			}
			if err != nil {
				m.c.logf(m.id, slog.LevelWarn, "warning: virtual_alias_maps map lookup problem for %s -- message not accepted, try again later", addr)
				return &RejectError{Reply: replyWriteError}
			}
			expanded = list
		}
	}
	notify := r.Notify
	if len(expanded) > 1 && slices.ContainsFunc(notify, func(s string) bool { return strings.EqualFold(s, "SUCCESS") }) {
		// RFC 3461 "expanded": an alias with several members reports
		// success for itself, so the members do not (cleanup_out_recipient.c).
		notify = slices.DeleteFunc(slices.Clone(notify), func(s string) bool { return strings.EqualFold(s, "SUCCESS") })
		if len(notify) == 0 {
			notify = []string{"NEVER"}
		}
	}
	for _, a := range expanded {
		out := Recipient{Addr: a, Original: orig, Notify: notify, ORCPT: r.ORCPT}
		k := m.dupKey(out)
		if b.seen[k] {
			continue
		}
		b.seen[k] = true
		b.out = append(b.out, out)
	}
	if withBCC && mapOK && len(m.c.cfg.RecipientBCCMaps) > 0 {
		if err := b.bccFrom(ctx, m.c.cfg.RecipientBCCMaps, addr, "recipient_bcc_maps"); err != nil {
			return err
		}
	}
	return nil
}

// bccFrom looks addr up in a BCC table (mail_addr_find: the mapping key
// order, the extension not propagated) and adds the result.
func (b *rcptBuilder) bccFrom(ctx context.Context, l maps.List, addr, param string) error {
	var isLocal func(context.Context, string) (bool, error)
	delim := ""
	if rw := b.m.c.cfg.Rewriter; rw != nil {
		rc := rw.Config()
		isLocal, delim = rc.IsLocal, rc.RecipientDelimiter
	}
	res, ok, err := l.FindAddress(ctx, addr, maps.MappingStrategy(delim, isLocal))
	if err != nil {
		return fmt.Errorf("%s map lookup problem for %s: %w", param, addr, err)
	}
	if !ok {
		return nil
	}
	// Postfix 3.x: the result may be a list of addresses.
	for _, a := range strings.FieldsFunc(res.Value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if err := b.bcc(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// bcc adds an automatic BCC recipient: NOTIFY=NEVER, so its failures
// never bounce to the sender; the original recipient is the address
// itself.
func (b *rcptBuilder) bcc(ctx context.Context, a string) error {
	if a == "" {
		return nil
	}
	if rw := b.m.c.cfg.Rewriter; rw != nil {
		a = rw.CanonicalForm(a, "")
	}
	return b.add(ctx, Recipient{Addr: a, Original: a, Notify: []string{"NEVER"}}, false)
}
