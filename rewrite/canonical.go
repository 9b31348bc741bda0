package rewrite

import (
	"strings"

	"github.com/postkit-mail/postkit/address"
)

// The canonical form is what trivial-rewrite's "local" and "remote"
// rewriting contexts produce (spec §6.1, postconf(5) append_at_myorigin,
// append_dot_mydomain, swap_bangpath, allow_percent_hack). It works on the
// tokens of the address in external form, so quoted text ("a!b"@x) is
// never mistaken for an operator.

// CanonicalForm brings an address (internal form) to canonical form in
// the local context ($myorigin, $mydomain) when domain is "", or in the
// remote_header_rewrite_domain context with domain standing for both
// $myorigin and $mydomain otherwise. The null address stays null.
//
// The steps, in order: a lone "@" becomes null; a source route
// (@a,@b:user@c) is removed; an address without '@' gets swap_bangpath
// (site!user becomes user@site), else allow_percent_hack (user%site
// becomes user@site), else append_at_myorigin; append_dot_mydomain adds
// .$mydomain to a domain without a dot; one trailing dot is removed.
func (r *Rewriter) CanonicalForm(addr string, domain string) string {
	if addr == "" {
		return ""
	}
	origin, mydomain := r.cfg.MyOrigin, r.cfg.MyDomain
	if domain != "" {
		origin, mydomain = domain, domain
	}
	return address.Unquote(r.canonExternal(address.Quote(addr), origin, mydomain))
}

// canonLocal is the canonical form of an external-form address in the
// local context; it is what table results are given (mail_addr_crunch).
func (r *Rewriter) canonLocal(ext string) string {
	return r.canonExternal(ext, r.cfg.MyOrigin, r.cfg.MyDomain)
}

// canonExternal rewrites one external-form address, as trivial-rewrite's
// rewrite_addr does: scan, rewrite the tokens, and write the address out
// with its local part re-quoted.
func (r *Rewriter) canonExternal(ext, origin, mydomain string) string {
	if ext == "" {
		return ""
	}
	if r.alreadyCanonical(ext) {
		return ext
	}
	return r.canonSlow(ext, origin, mydomain)
}

// canonSlow is canonExternal without the shortcut.
func (r *Rewriter) canonSlow(ext, origin, mydomain string) string {
	if ext == "" {
		return ""
	}
	head, _ := scanTokens(ext, 0)
	toks := make([]*tok, 0, 8)
	for t := head; t != nil; t = t.next {
		toks = append(toks, t)
	}
	toks = r.canonTokens(toks, origin, mydomain)
	return address.Quote(internalizeList(relink(toks)))
}

// alreadyCanonical reports, without tokenizing, whether ext is a plain
// local@domain that the rewrite would give back unchanged: a dot-string
// local part, one '@', a domain of atom characters and dots that has a
// dot (or append_dot_mydomain is off) and does not end in one. Most
// addresses are like this, and the check is much cheaper than the rewrite.
func (r *Rewriter) alreadyCanonical(ext string) bool {
	at := -1
	for i := 0; i < len(ext); i++ {
		c := ext[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte("()<>,;:\\\"[]!%", c) >= 0 {
			return false
		}
		if c == '@' {
			if at >= 0 {
				return false
			}
			at = i
		}
	}
	if at <= 0 || at == len(ext)-1 || ext[len(ext)-1] == '.' || address.NeedsQuoting(ext[:at]) {
		return false
	}
	return !r.cfg.AppendDotMyDomain || strings.IndexByte(ext[at+1:], '.') >= 0
}

// relink turns a slice of tokens back into a list and returns its head.
func relink(toks []*tok) *tok {
	var prev *tok
	for _, t := range toks {
		t.prev = prev
		t.next = nil
		if prev != nil {
			prev.next = t
		}
		prev = t
	}
	if len(toks) == 0 {
		return nil
	}
	return toks[0]
}

// ownedMark stands for "belongs to an address node" on tokens that
// trivial-rewrite links under the node itself (see canonTokens).
var ownedMark = &tok{typ: tokAddr}

func findTok(toks []*tok, typ int) int {
	for i, t := range toks {
		if t.typ == typ {
			return i
		}
	}
	return -1
}

func rfindTok(toks []*tok, typ int) int {
	for i := len(toks) - 1; i >= 0; i-- {
		if toks[i].typ == typ {
			return i
		}
	}
	return -1
}

func scanSlice(s string) []*tok {
	var out []*tok
	head, _ := scanTokens(s, 0)
	for t := head; t != nil; t = t.next {
		out = append(out, t)
	}
	return out
}

// canonTokens is trivial-rewrite's rewrite_tree.
func (r *Rewriter) canonTokens(toks []*tok, origin, mydomain string) []*tok {
	if len(toks) == 0 {
		return toks
	}
	// The null address "" stays as it is; a lone '@' becomes null.
	if len(toks) == 1 && toks[0].typ == tokQString && toks[0].text == "" {
		return toks
	}
	if len(toks) == 1 && toks[0].typ == '@' {
		return []*tok{{typ: tokQString}}
	}
	// Strip a source route: @a,@b:user@c (RFC 5321 appendix C).
	if toks[0].typ == '@' {
		if c := findTok(toks, ':'); c >= 0 && c != len(toks)-1 {
			toks = toks[c+1:]
		}
	}
	if rfindTok(toks, '@') < 0 {
		if bang := findTok(toks, '!'); r.cfg.SwapBangPath && bang >= 0 {
			// site!user becomes user@site; only the first '!' counts.
			out := make([]*tok, 0, len(toks))
			out = append(out, toks[bang+1:]...)
			at := &tok{typ: '@'}
			out = append(out, at)
			out = append(out, toks[:bang]...)
			if bang == 0 {
				// With nothing before the '!', trivial-rewrite links the
				// '@' and the user part directly under the address node
				// (tok822_sub_prepend on an empty list), and tok822 then
				// writes no spaces between those tokens: "!a b" becomes
				// "ab@", not "a b@".
				for _, t := range out {
					t.owner = ownedMark
				}
			}
			toks = out
		} else if pct := rfindTok(toks, '%'); r.cfg.AllowPercentHack && pct >= 0 {
			toks[pct] = &tok{typ: '@'}
		} else if r.cfg.AppendAtMyOrigin && origin != "" {
			toks = append(toks[:len(toks):len(toks)], &tok{typ: '@'})
			toks = append(toks, scanSlice(origin)...)
		}
	}
	if at := rfindTok(toks, '@'); r.cfg.AppendDotMyDomain && mydomain != "" && at >= 0 && at != len(toks)-1 &&
		findTok(toks[at:], tokDomLit) < 0 && findTok(toks[at:], '.') < 0 {
		toks = append(toks[:len(toks):len(toks)], &tok{typ: '.'})
		toks = append(toks, scanSlice(mydomain)...)
	}
	// One trailing dot goes, but not from "x.." or "x@.".
	if n := len(toks); n >= 2 && toks[n-1].typ == '.' && toks[n-2].typ != '.' && toks[n-2].typ != '@' {
		toks = toks[:n-1]
	}
	return toks
}

// isCanonDaemon reports whether a canonical address is MAILER-DAEMON in
// canonical form (case-insensitively), which Postfix turns into the null
// sender.
func (r *Rewriter) isCanonDaemon(addr string) bool {
	const md = "mailer-daemon@"
	if len(addr) < len(md) || !strings.EqualFold(addr[:len(md)], md) {
		return false
	}
	return strings.EqualFold(addr, r.CanonicalForm("MAILER-DAEMON", ""))
}
