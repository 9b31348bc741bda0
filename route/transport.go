package route

import (
	"errors"
	"fmt"
	"strings"
)

// ParseTransport splits a transport value, as transport_maps tables,
// local_transport, default_transport and the other *_transport parameters
// write it, into the transport (a master.cf service name) and the next
// hop (transport(5)): "smtp:[mx.example.com]:587" is "smtp" and
// "[mx.example.com]:587", "lmtp:unix:/run/lmtp" is "lmtp" and
// "unix:/run/lmtp", "error:5.1.1 no such user" is "error" and the text,
// "relay:" is "relay" and "", ":example.net" is "" and "example.net", and a
// value without ':' is all transport. Only the first ':' separates.
//
// An empty part means "keep what the address class gave" (see
// Resolver.Resolve). A value with a line break, a NUL or another control
// character in the transport name, or white space in the transport name,
// is an error: Postfix would pass it on and fail later with "mail
// transport unavailable", postkit says so at once.
func ParseTransport(value string) (transport, nexthop string, err error) {
	transport, nexthop, _ = strings.Cut(value, ":")
	for i := 0; i < len(transport); i++ {
		if c := transport[i]; c <= ' ' || c == 0x7f {
			return "", "", fmt.Errorf("route: transport %q: bad character %q in transport name", value, c)
		}
	}
	for i := 0; i < len(nexthop); i++ {
		if c := nexthop[i]; c == '\r' || c == '\n' || c == 0 {
			return "", "", fmt.Errorf("route: transport %q: line break or NUL in next hop", value)
		}
	}
	return transport, nexthop, nil
}

// Nexthop is one destination of the SMTP or LMTP client, parsed from a
// next hop (smtp(8) and lmtp(8) "DESCRIPTION"):
//
//	example.com             MX lookup for example.com, port 25 (smtp) or 24 (lmtp)
//	example.com:2525        MX lookup, port 2525
//	[mx.example.com]        no MX lookup: the host's addresses
//	[192.0.2.1]:587         an address, port 587
//	[ipv6:2001:db8::1]      an IPv6 address
//	inet:host:port          explicit TCP (lmtp's syntax; smtp accepts it too)
//	unix:/path/name         a UNIX-domain socket (lmtp)
type Nexthop struct {
	// Network is "inet" or "unix".
	Network string
	// Host is the domain or host name, or the IP address without
	// brackets and without an "ipv6:" prefix; empty for unix.
	Host string
	// Port is the port number or service name; "" means the transport's
	// default.
	Port string
	// NoMX: the host was in brackets, so no MX lookup is done.
	NoMX bool
	// Path is the socket path for unix.
	Path string
}

// String writes the next hop back in its canonical form.
func (n Nexthop) String() string {
	if n.Network == "unix" {
		return "unix:" + n.Path
	}
	h := n.Host
	if strings.Contains(h, ":") {
		h = "ipv6:" + h
	}
	if n.NoMX {
		h = "[" + h + "]"
	}
	if n.Port != "" {
		h += ":" + n.Port
	}
	return h
}

var errEmptyNexthop = errors.New("empty next hop")

// ParseNexthop parses one SMTP or LMTP next hop (see Nexthop).
func ParseNexthop(s string) (Nexthop, error) {
	orig := s
	bad := func(why string) (Nexthop, error) {
		return Nexthop{}, fmt.Errorf("route: next hop %q: %s", orig, why)
	}
	if s == "" {
		return Nexthop{}, fmt.Errorf("route: %w", errEmptyNexthop)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == ',' {
			return bad(fmt.Sprintf("bad character %q", c))
		}
	}
	n := Nexthop{Network: "inet"}
	switch {
	case strings.HasPrefix(s, "unix:"):
		n.Network, n.Path = "unix", s[len("unix:"):]
		if n.Path == "" {
			return bad("no socket path")
		}
		return n, nil
	case strings.HasPrefix(s, "inet:"):
		s = s[len("inet:"):]
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad("missing ']'")
		}
		n.Host, n.NoMX = s[1:end], true
		rest := s[end+1:]
		switch {
		case rest == "":
		case rest[0] == ':':
			n.Port = rest[1:]
		default:
			return bad("text after ']'")
		}
		if len(n.Host) > 5 && strings.EqualFold(n.Host[:5], "ipv6:") {
			n.Host = n.Host[5:]
		}
	} else {
		if strings.ContainsAny(s, "[]") {
			return bad("misplaced bracket")
		}
		host, port, ok := strings.Cut(s, ":")
		n.Host = host
		if ok {
			n.Port = port
		}
	}
	if n.Host == "" {
		return bad("no host")
	}
	if strings.ContainsAny(n.Host, "[]") {
		return bad("bracket inside host")
	}
	if n.Port != "" || strings.HasSuffix(s, ":") {
		if n.Port == "" {
			return bad("empty port")
		}
		for i := 0; i < len(n.Port); i++ {
			c := n.Port[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
				return bad(fmt.Sprintf("bad port %q", n.Port))
			}
		}
	}
	return n, nil
}

// ParseNexthops parses a next hop that may list several destinations
// separated by commas or white space, as smtp(8) allows since Postfix 3.5
// ("[mx1.example.com], [mx2.example.com]:2525"). Each is tried in turn.
func ParseNexthops(s string) ([]Nexthop, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("route: %w", errEmptyNexthop)
	}
	out := make([]Nexthop, 0, len(fields))
	for _, f := range fields {
		n, err := ParseNexthop(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
