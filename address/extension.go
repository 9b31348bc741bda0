package address

import "strings"

// SplitOptions are the main.cf settings that change how a local part is
// split at recipient_delimiter. The zero value is Postfix's default.
type SplitOptions struct {
	// NoOwnerRequestSpecial turns off owner_request_special (default yes):
	// then owner-* and *-request local parts are split like any other.
	NoOwnerRequestSpecial bool
	// DoubleBounceSender is $double_bounce_sender; "" means "double-bounce".
	DoubleBounceSender string
}

// SplitExtension splits a local part (internal form, without '@domain') at
// the first character that belongs to the recipient_delimiter set delims,
// as Postfix's split_addr does (postconf(5) recipient_delimiter). ext
// includes the delimiter character that was found, as Postfix remembers it
// for propagate_unmatched_extensions (so "joe+x" gives "joe", "+x"); strip the
// first byte for local(8)'s ${extension}.
//
// No split happens (user == local, ext == "") when delims is empty, when no
// delimiter occurs, when the delimiter is the first character (the user part
// would be empty), or for these local parts, compared case-insensitively:
// postmaster, MAILER-DAEMON and $double_bounce_sender; and, when '-' is in
// delims and owner_request_special is on, local parts that start with
// "owner-" or end with "-request" (longer than "-request" itself).
//
// A delimiter at the very end does split, leaving ext equal to the delimiter
// alone ("joe+" gives "joe", "+"): Postfix 3.7's split_addr only refuses an
// empty user part.
func SplitExtension(local, delims string, opts SplitOptions) (user, ext string) {
	if delims == "" || local == "" {
		return local, ""
	}
	if strings.EqualFold(local, "postmaster") || strings.EqualFold(local, "MAILER-DAEMON") {
		return local, ""
	}
	dbl := opts.DoubleBounceSender
	if dbl == "" {
		dbl = "double-bounce"
	}
	if strings.EqualFold(local, dbl) {
		return local, ""
	}
	if strings.IndexByte(delims, '-') >= 0 && !opts.NoOwnerRequestSpecial {
		if len(local) >= 6 && strings.EqualFold(local[:6], "owner-") {
			return local, ""
		}
		if len(local) > 8 && strings.EqualFold(local[len(local)-8:], "-request") {
			return local, ""
		}
	}
	i := indexAnyByte(local, delims)
	if i <= 0 {
		return local, ""
	}
	return local[:i], local[i:]
}

// StripExtension removes the extension from an internal-form address
// ("user+ext@domain" → "user@domain", "+ext"), splitting the local part
// before the last '@' with SplitExtension. ok is false when nothing was
// stripped.
func StripExtension(addr, delims string, opts SplitOptions) (stripped, ext string, ok bool) {
	local, rest := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, rest = addr[:i], addr[i:]
	}
	user, ext := SplitExtension(local, delims, opts)
	if ext == "" {
		return addr, "", false
	}
	return user + rest, ext, true
}

// indexAnyByte is strings.IndexAny over bytes rather than runes: Postfix's
// delimiter set is a set of bytes (strcspn).
func indexAnyByte(s, set string) int {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) >= 0 {
			return i
		}
	}
	return -1
}
