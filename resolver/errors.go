package resolver

import (
	"context"
	"errors"
	"net"
)

// The causes a *net.DNSError from this package unwraps to (Go 1.23's
// net.DNSError.UnwrapErr). They stay unexported: callers ask IsNotFound,
// IsTemporary and IsNXDomain, which also understand errors from the
// standard library's resolver.
var (
	errNXDomain    = errors.New("no such host")
	errNoData      = errors.New("no record of the requested type")
	errInvalidName = errors.New("invalid domain name")
	errServFail    = errors.New("server failure")
	errRefused     = errors.New("query refused")
	errTimeout     = errors.New("timed out")
	errBadReply    = errors.New("malformed reply")
	errCNAMELoop   = errors.New("CNAME chain too long")
)

// failure is a lookup error as the cache keeps it; each caller gets its own
// *net.DNSError built from it, so no caller can change another's error.
type failure struct {
	cause    error  // one of the err* values above, a network error or a context error
	text     string // net.DNSError.Err; cause.Error() when empty
	server   string // the server that answered or failed last, "" when none was asked
	notFound bool
	timeout  bool
}

func (f *failure) dnsError(name string) *net.DNSError {
	text := f.text
	if text == "" {
		text = f.cause.Error()
	}
	return &net.DNSError{
		Err:         text,
		Name:        name,
		Server:      f.server,
		IsNotFound:  f.notFound,
		IsTimeout:   f.timeout,
		IsTemporary: !f.notFound,
		UnwrapErr:   f.cause,
	}
}

// IsNotFound reports whether err says the name does not exist (NXDOMAIN) or
// has no records of the type asked (NODATA). Postfix treats both as a hard
// "not found": 5xx where a lookup decides, or "not listed" for a DNSBL.
// Malformed names (see Client.LookupA) are also "not found".
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// IsTemporary reports whether err is a failure that may pass: SERVFAIL,
// REFUSED, a timeout, a network error, a malformed reply or a cancelled
// context. Postfix answers 4xx for these (RFC 2308 section 7 lets a
// resolver remember them only briefly).
func IsTemporary(err error) bool {
	var de *net.DNSError
	if errors.As(err, &de) {
		return !de.IsNotFound && (de.IsTemporary || de.IsTimeout)
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// IsNXDomain reports whether err says the name does not exist at all
// (RCODE 3, NXDOMAIN), as opposed to existing without records of the type
// asked (NODATA), for which IsNotFound alone is true. A malformed name
// counts as NXDOMAIN, as in Postfix's dns_lookup.
func IsNXDomain(err error) bool {
	return errors.Is(err, errNXDomain) || errors.Is(err, errInvalidName)
}
