// Package address handles mail addresses the way Postfix does: SMTP paths
// (RFC 5321 section 4.1.2), header mailbox lists (RFC 5322 section 3.4),
// quoting of local parts, domain and address-literal syntax, IDNA, and the
// recipient_delimiter split of a local part into user and extension.
//
// # Internal and external form
//
// Postfix keeps addresses in two forms (see quote_822_local(3) in the Postfix
// sources and the "address quoting" notes in postconf(5)):
//
//   - the external form is what appears on the wire and in table keys:
//     a local part that is not an RFC 5322 dot-atom is quoted, as in
//     "a b"@example.com;
//   - the internal form has the quotes and backslashes removed: a b@example.com.
//     Postfix rewrites, splits and compares addresses in internal form.
//
// Quote turns internal into external form and Unquote does the reverse. The
// domain part (after the last '@') is never changed by either. Address holds
// the internal form; its String method renders the external form.
package address

import (
	"strings"
)

// Address is a mail address in internal (unquoted) form. Local is everything
// before the last '@', Domain everything after it. The null address (the
// SMTP "<>" sender) is the zero Address.
type Address struct {
	Local  string
	Domain string
}

// Split splits an internal-form address at its last '@'. An address without
// '@' has an empty Domain. Postfix splits at the last '@' because an
// internal-form local part may itself contain '@' ("a@b"@example.com).
func Split(addr string) Address {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return Address{Local: addr[:i], Domain: addr[i+1:]}
	}
	return Address{Local: addr}
}

// IsNull reports whether a is the null address (empty local part and domain).
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// Internal returns the internal (unquoted) form "local@domain", or just the
// local part when there is no domain.
func (a Address) Internal() string {
	if a.Domain == "" {
		return a.Local
	}
	return a.Local + "@" + a.Domain
}

// String returns the external form: the local part quoted when it is not a
// dot-atom (see Quote), then "@domain". The null address renders as "".
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	if a.Domain == "" {
		return QuoteLocal(a.Local)
	}
	return QuoteLocal(a.Local) + "@" + a.Domain
}
