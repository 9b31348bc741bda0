package rewrite

import (
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/internal/tok822"
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

// canonSlow is canonExternal without the shortcut: trivial-rewrite's
// rewrite_tree on the tokens (internal/tok822).
func (r *Rewriter) canonSlow(ext, origin, mydomain string) string {
	if ext == "" {
		return ""
	}
	c := tok822.Context{
		Origin: origin, Domain: mydomain,
		AppendAtOrigin: r.cfg.AppendAtMyOrigin, AppendDotDomain: r.cfg.AppendDotMyDomain,
		SwapBangPath: r.cfg.SwapBangPath, AllowPercentHack: r.cfg.AllowPercentHack,
	}
	return address.Quote(tok822.Internalize(c.Rewrite(tok822.Scan(ext))))
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
