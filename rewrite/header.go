package rewrite

import (
	"bytes"
	"context"
	"strings"
)

// Header address rewriting (cleanup_message.c, spec §6.2): the value of
// a sender-type or recipient-type header is parsed into addresses the way
// Postfix's tok822 parser does, each address gets the canonical form and
// the mappings of its class, and when anything changed the header is
// regenerated from the parse tree and folded: one address per line,
// joined while the line stays under 70 bytes, continuation lines starting
// with a TAB. An unchanged header is reported as unchanged so the caller
// can keep its bytes.

// headerClasses lists the headers cleanup rewrites (Postfix's
// header_opts.c: HDR_OPT_SENDER and HDR_OPT_RECIP), by lower-case name.
var headerClasses = map[string]Class{
	"from":                        HeaderSender,
	"sender":                      HeaderSender,
	"reply-to":                    HeaderSender,
	"errors-to":                   HeaderSender,
	"return-path":                 HeaderSender,
	"resent-from":                 HeaderSender,
	"resent-sender":               HeaderSender,
	"return-receipt-to":           HeaderSender,
	"mail-followup-to":            HeaderSender,
	"disposition-notification-to": HeaderSender,
	"to":                          HeaderRecipient,
	"cc":                          HeaderRecipient,
	"bcc":                         HeaderRecipient,
	"apparently-to":               HeaderRecipient,
	"resent-to":                   HeaderRecipient,
	"resent-cc":                   HeaderRecipient,
	"resent-bcc":                  HeaderRecipient,
	"resent-reply-to":             HeaderRecipient,
}

// HeaderClass says whether a header (by name, any case, without the
// colon) holds sender addresses (From, Sender, Reply-To, Errors-To,
// Return-Path, Resent-From, Resent-Sender, Return-Receipt-To,
// Mail-Followup-To, Disposition-Notification-To) or recipient addresses
// (To, Cc, Bcc, Apparently-To, Resent-To, Resent-Cc, Resent-Bcc,
// Resent-Reply-To). ok is false for every other header.
func HeaderClass(name string) (Class, bool) {
	c, ok := headerClasses[strings.ToLower(name)]
	if !ok {
		// Avoid the allocation for names already in lower case.
		return 0, false
	}
	return c, true
}

// Header rewrites every address in one header value: the text after
// "Name:", continuation lines included as received (CRLF or LF line ends
// inside). class is HeaderSender or HeaderRecipient (see HeaderClass);
// domain is "" for the local rewriting context and
// remote_header_rewrite_domain for remote mail, as in CanonicalForm.
//
// It returns the new value (starting with the space after the colon,
// folded with CRLF and TAB, or LF and TAB when value has bare LF line
// ends, and ending with a line end when value did) and whether
// anything changed; when nothing changed value is returned as it was.
// Because Postfix's folding counts the header name, Header folds as if
// the name were "To" or "From"; HeaderLine takes the name and folds
// exactly as Postfix does. An error is a table lookup failure, for which
// cleanup defers the message.
func (r *Rewriter) Header(ctx context.Context, class Class, value string, domain string) (string, bool, error) {
	name := "From"
	if class == HeaderRecipient || class == EnvelopeRecipient {
		name = "To"
	}
	return r.header(ctx, class, name, value, domain, false)
}

// HeaderLine is Header for a header given by name (which chooses the class
// through HeaderClass and sets where lines are folded), with noMappings
// for receive_override_options = no_address_mappings (the canonical form
// is still applied, the tables and masquerading are not). A header that
// is neither sender- nor recipient-type is returned unchanged.
func (r *Rewriter) HeaderLine(ctx context.Context, name, value, domain string, noMappings bool) (string, bool, error) {
	class, ok := HeaderClass(name)
	if !ok {
		return value, false, nil
	}
	return r.header(ctx, class, name, value, domain, noMappings)
}

func (r *Rewriter) header(ctx context.Context, class Class, name, value, domain string, noMappings bool) (string, bool, error) {
	origin, mydomain := r.cfg.MyOrigin, r.cfg.MyDomain
	if domain != "" {
		origin, mydomain = domain, domain
	}
	return r.regenerate(name, value, r.cfg.HeaderAddressTokenLimit, func(t *tok) (bool, error) {
		changed := false
		// cleanup_rewrite_tree: trivial-rewrite on the external form.
		ext := externalizeAddr(t.head)
		if ext != "" {
			out := r.canonExternal(ext, origin, mydomain)
			if out != ext {
				changed = true
			}
			ext = out
		}
		setAddr(t, ext)
		if noMappings {
			return changed, nil
		}
		// cleanup_map11_tree and cleanup_masquerade_tree: each step takes
		// the address in external form and leaves it scanned again, even
		// when it changed nothing (which drops empty atoms, for example
		// what a trailing backslash leaves).
		last := ext // the text the tokens were last scanned from
		for _, st := range r.steps(class) {
			in := externalizeAddr(t.head)
			out, ch, err := st(ctx, in)
			if err != nil {
				return false, err
			}
			changed = changed || ch
			// Scanning the text the tokens came from again gives the
			// same tokens; skip that.
			if in != last || out != in {
				setAddr(t, out)
				last = out
			}
		}
		return changed, nil
	})
}

// GenericHeader applies the generic table to the addresses of one
// outgoing header, as Postfix's SMTP and LMTP clients do with
// smtp_generic_maps (smtp_proto.c): only sender-type and recipient-type
// headers (see HeaderClass), one lookup per address, no canonical form,
// and the header regenerated and folded as Header does when an address
// changed. value and the result are as in Header.
func (r *Rewriter) GenericHeader(ctx context.Context, name, value string) (string, bool, error) {
	if _, ok := HeaderClass(name); !ok || len(r.cfg.GenericMaps) == 0 {
		return value, false, nil
	}
	prop := r.cfg.PropagateUnmatchedExtensions&PropagateGeneric != 0
	// The SMTP client parses without a token limit: cleanup already
	// limited what it wrote.
	return r.regenerate(name, value, 0, func(t *tok) (bool, error) {
		// smtp_map11_tree scans the address again whatever happened.
		out, ch, err := r.map11(ctx, r.cfg.GenericMaps, "generic_maps", externalizeAddr(t.head), prop, false)
		if err != nil {
			return false, err
		}
		setAddr(t, out)
		return ch, nil
	})
}

// regenerate parses a header value, calls rewrite for every address node
// and, when one reports a change, writes the header out again from the
// parse tree and folds it.
func (r *Rewriter) regenerate(name, value string, limit int, rewrite func(t *tok) (bool, error)) (string, bool, error) {
	crlf := strings.Contains(value, "\r\n")
	text := value
	if crlf {
		text = strings.ReplaceAll(value, "\r\n", "\n")
	}
	finalNL := strings.HasSuffix(text, "\n")
	text = strings.TrimSuffix(text, "\n")

	tree := parseList(text, limit)
	changed := false
	for t := tree; t != nil; t = t.next {
		if t.typ != tokAddr {
			continue
		}
		ch, err := rewrite(t)
		if err != nil {
			return value, false, err
		}
		changed = changed || ch
	}
	if !changed {
		return value, false, nil
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(": ")
	externalize(&b, tree, extLine|extTrunc)
	folded := fold(b.String())
	// Lines are folded with CRLF, as the SMTP server delivers them,
	// unless the value came with bare LF line ends.
	eol := "\r\n"
	if !crlf && strings.Contains(value, "\n") {
		eol = "\n"
	}
	out := folded[len(name)+1:]
	if eol != "\n" {
		out = strings.ReplaceAll(out, "\n", eol)
	}
	if finalNL {
		out += eol
	}
	return out, true, nil
}

// setAddr replaces the tokens of an address node with those of ext, as
// cleanup does after each rewriting step (the new tokens belong to no
// node, so tok822 writes spaces between adjacent words).
func setAddr(t *tok, ext string) {
	head, tail := scanTokens(ext, 0)
	t.head, t.tail = head, tail
}

// fold is cleanup_fold_header followed by cleanup_out_header's line
// starts: the regenerated header has one address per line; lines are
// joined with a space while the joined line stays under 70 bytes (counted
// from the start of the header), and a continuation line that does not
// start with white space gets a TAB.
func fold(h string) string {
	buf := []byte(h)
	start := 0
	for line := 0; line >= 0; {
		end := line + bytes.IndexByte(buf[line:], '\n')
		if end < line {
			end = len(buf)
		}
		if line > start {
			if end-start < 70 {
				buf[line-1] = ' '
			} else {
				start = line
			}
		}
		if end < len(buf) {
			line = end + 1
		} else {
			line = -1
		}
	}
	var b strings.Builder
	b.Grow(len(buf) + 8)
	for i, l := range strings.Split(string(buf), "\n") {
		if i > 0 {
			b.WriteByte('\n')
			if l == "" || (l[0] != ' ' && l[0] != '\t') {
				b.WriteByte('\t')
			}
		}
		b.WriteString(l)
	}
	return b.String()
}

// HeaderAddresses lists the addresses of a header value in internal form,
// as Postfix's tok822 parser finds them: what cleanup extracts from To,
// Cc and Bcc (and their Resent- forms) for "sendmail -t". Group names,
// phrases and comments are not addresses; "Name a@b" is two addresses,
// and "<>" none. Give it the value after rewriting (HeaderLine), since
// Postfix extracts the rewritten addresses.
func (r *Rewriter) HeaderAddresses(value string) []string {
	var out []string
	for t := parseList(strings.ReplaceAll(value, "\r\n", "\n"), r.cfg.HeaderAddressTokenLimit); t != nil; t = t.next {
		if t.typ == tokAddr {
			out = append(out, internalizeList(t.head))
		}
	}
	return out
}
