package restrictions

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/resolver"
)

// ClientNames are the host names of an SMTP client as Postfix's smtpd
// finds them when the client connects (smtpd_peer.c): the unverified
// name its address points to, and that name again when it points back to
// the address.
type ClientNames struct {
	// Name is the verified name, or "unknown" with NameStatus saying why:
	// the PTR lookup failed (NameTempFail, NamePermFail), or the name's
	// A (for an IPv4 client) or AAAA (IPv6) records do not include the
	// address (NameForged; NameTempFail when that lookup failed
	// temporarily).
	Name       string
	NameStatus NameStatus
	// ReverseName is the name the PTR record gives, or "unknown".
	ReverseName       string
	ReverseNameStatus NameStatus
	// Warnings are what Postfix logs as warnings on the way ("hostname
	// x does not resolve to address y").
	Warnings []string
}

// LookupClient finds the names of the client at addr, as smtpd does at
// connect, for Snapshot.ClientName, ClientNameStatus, ReverseName and
// ReverseNameStatus (see Apply): the PTR records of the address, of which
// the first valid host name is taken (a numeric or malformed name counts
// as none, as in Postfix's sockaddr_to_hostname); then the forward lookup
// of that name, which must list the address. An IPv4-mapped IPv6 address
// is treated as IPv4. With a nil resolver the names are "unknown", as
// with smtpd_peername_lookup = no.
func LookupClient(ctx context.Context, r resolver.Resolver, addr netip.Addr) ClientNames {
	n := ClientNames{Name: "unknown", NameStatus: NamePermFail,
		ReverseName: "unknown", ReverseNameStatus: NamePermFail}
	addr = addr.Unmap().WithZone("")
	if r == nil || !addr.IsValid() {
		return n
	}
	names, err := r.LookupPTR(ctx, addr)
	if err != nil {
		if !resolver.IsNotFound(err) {
			n.NameStatus, n.ReverseNameStatus = NameTempFail, NameTempFail
		}
		return n
	}
	name := ""
	for _, p := range names {
		switch {
		case validHostaddr(p):
			n.Warnings = append(n.Warnings, "numeric hostname: "+p)
		case address.ValidHostname(p) != nil:
			n.Warnings = append(n.Warnings, fmt.Sprintf("%s: malformed hostname in PTR record: %.100s", addr, p))
		default:
			name = p
		}
		if name != "" {
			break
		}
	}
	if name == "" {
		return n
	}
	n.ReverseName, n.ReverseNameStatus = name, NameOK

	// The name must resolve back to the address, in the address's own
	// family (hostname_to_sockaddr_pf).
	var fwd []netip.Addr
	if addr.Is4() {
		fwd, err = r.LookupA(ctx, name)
	} else {
		fwd, err = r.LookupAAAA(ctx, name)
	}
	if err != nil {
		n.Warnings = append(n.Warnings, fmt.Sprintf("hostname %s does not resolve to address %s: %s", name, addr, addrErrText(err)))
		if resolver.IsNotFound(err) {
			n.NameStatus = NameForged
		} else {
			n.NameStatus = NameTempFail
		}
		return n
	}
	for _, a := range fwd {
		if a.Unmap() == addr {
			n.Name, n.NameStatus = name, NameOK
			return n
		}
	}
	n.Warnings = append(n.Warnings, fmt.Sprintf("hostname %s does not resolve to address %s", name, addr))
	n.NameStatus = NameForged
	return n
}

// Apply copies the names into s.
func (n ClientNames) Apply(s *Snapshot) {
	s.ClientName, s.ClientNameStatus = n.Name, n.NameStatus
	s.ReverseName, s.ReverseNameStatus = n.ReverseName, n.ReverseNameStatus
}
