package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Host is what the computed defaults need to know about the machine.
type Host struct {
	// Hostname as gethostname(2) returns it.
	Hostname string
	// Interfaces lists the addresses configured on the machine, with their
	// prefix lengths, in interface order.
	Interfaces []netip.Prefix
}

// SystemHost reads the hostname and interface addresses of this machine.
// Errors leave the fields empty.
func SystemHost() Host {
	var h Host
	h.Hostname, _ = os.Hostname()
	ifs, err := net.Interfaces()
	if err != nil {
		return h
	}
	var v4, v6 []netip.Prefix
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			ones, _ := ipn.Mask.Size()
			p := netip.PrefixFrom(ip, ones)
			if ip.Is4() {
				v4 = append(v4, p)
			} else {
				v6 = append(v6, p)
			}
		}
	}
	h.Interfaces = append(v4, v6...)
	return h
}

// derivedParams are the parameters whose defaults depend on the host or on
// other main.cf settings and are computed when asked for.
var derivedParams = map[string]bool{
	"myhostname": true,
	"mydomain":   true,
	"mynetworks": true,
	"process_id": true,
}

const defaultDomain = "localdomain"

func (c *Config) derivedDefault(name string) string {
	switch name {
	case "myhostname":
		return c.defaultHostname()
	case "mydomain":
		return c.defaultDomain()
	case "mynetworks":
		v, _ := c.NetworksDefault()
		return v
	case "process_id":
		return strconv.Itoa(os.Getpid())
	}
	return ""
}

// defaultHostname: postconf(5) myhostname: the fully-qualified name from
// gethostname(); a name without a dot gets ".$mydomain" appended, where
// mydomain is taken from main.cf if set there, else "localdomain".
// Postfix computes this at start-up, so mydomain is expanded as
// ExpandStartup does.
func (c *Config) defaultHostname() string {
	h := c.hostInfo().Hostname
	if strings.Contains(h, ".") {
		return h
	}
	domain := defaultDomain
	if e, ok := c.entries["mydomain"]; ok {
		if v, err := c.ExpandStartup(e.value); err == nil {
			domain = v
		}
	}
	return h + "." + domain
}

// defaultDomain: postconf(5) mydomain: $myhostname minus its first
// component, or "localdomain" when nothing is left. Like the hostname it
// is computed at start-up.
func (c *Config) defaultDomain() string {
	var h string
	if e, ok := c.entries["myhostname"]; ok {
		h, _ = c.ExpandStartup(e.value)
	} else {
		h = c.hostInfo().Hostname
	}
	if _, rest, ok := strings.Cut(h, "."); ok && rest != "" {
		return rest
	}
	return defaultDomain
}

// ExpandStartup expands s as Postfix does while it starts up, when it
// computes the host-dependent defaults (myhostname, mydomain) and reads
// the parameters it needs first (inet_interfaces, inet_protocols,
// mynetworks_style, ...): only names set in main.cf are defined then; a
// built-in default, compatibility_level's included, is not yet, so it
// expands to nothing (found by experiment with Postfix 3.7: with
// "myhostname = $alias_maps.example" and no mydomain, mydomain is
// "example"; a "<level" comparison with an unset compatibility_level is
// malformed there).
func (c *Config) ExpandStartup(s string) (string, error) {
	e := Expander{Recursive: true, Lookup: func(n string) (string, bool) {
		v, ok := c.entries[n]
		return v.value, ok
	}}
	return e.Expand(s)
}

// NetworksDefault computes the default of mynetworks (postconf(5)
// mynetworks_style): the addresses of the interfaces Postfix listens on
// (inet_interfaces, inet_protocols) as host (/32, /128), subnet (the
// interface's prefix) or class (the IPv4 class A/B/C network; IPv6 stays
// at the subnet) networks. An unknown style is an error, as in Postfix.
func (c *Config) NetworksDefault() (string, error) {
	// Postfix checks inet_protocols first, then that the style is one
	// word, then the style name; all three case-sensitively.
	protos, err := c.Expand(mustRaw(c, "inet_protocols"))
	if err != nil {
		return "", err
	}
	want4, want6 := false, false
	for _, p := range SplitList(protos) {
		switch p {
		case "all":
			want4, want6 = true, true
		case "ipv4":
			want4 = true
		case "ipv6":
			want6 = true
		default:
			return "", fmt.Errorf("unknown inet_protocols value \"%s\" in \"%s\"", p, protos)
		}
	}
	styleValue, err := c.Expand(mustRaw(c, "mynetworks_style"))
	if err != nil {
		return "", err
	}
	words := SplitList(styleValue)
	if len(words) != 1 {
		return "", fmt.Errorf("bad mynetworks_style value: %s; specify exactly one value", styleValue)
	}
	style := words[0]
	if style != "host" && style != "subnet" && style != "class" {
		return "", fmt.Errorf("unknown mynetworks mask style value \"%s\" in \"%s\"", style, styleValue)
	}
	ifaces, _ := c.Expand(mustRaw(c, "inet_interfaces"))
	addrs := c.listenPrefixes(SplitList(strings.ToLower(ifaces)))
	var out []string
	for _, p := range addrs {
		a := p.Addr()
		if a.Is4() && !want4 || a.Is6() && !want6 {
			continue
		}
		bits := p.Bits()
		switch style {
		case "host":
			bits = a.BitLen()
		case "class":
			if a.Is4() {
				switch b := a.As4()[0]; {
				case b < 128:
					bits = 8
				case b < 192:
					bits = 16
				case b < 224:
					bits = 24
				default:
					bits = 32
				}
			}
		}
		n := netip.PrefixFrom(a, bits).Masked()
		if a.Is4() {
			out = append(out, n.String())
		} else {
			out = append(out, "["+n.Addr().String()+"]/"+strconv.Itoa(bits))
		}
	}
	return strings.Join(out, " "), nil
}

// listenPrefixes resolves inet_interfaces to interface prefixes.
func (c *Config) listenPrefixes(items []string) []netip.Prefix {
	var out []netip.Prefix
	for _, it := range items {
		switch it {
		case "all":
			return c.hostInfo().Interfaces
		case "loopback-only":
			for _, p := range c.hostInfo().Interfaces {
				if p.Addr().IsLoopback() {
					out = append(out, p)
				}
			}
			continue
		}
		var ips []netip.Addr
		if a, err := netip.ParseAddr(strings.Trim(it, "[]")); err == nil {
			ips = append(ips, a.Unmap())
		} else if hs, err := net.LookupHost(it); err == nil {
			for _, h := range hs {
				if a, err := netip.ParseAddr(h); err == nil {
					ips = append(ips, a.Unmap())
				}
			}
		}
		for _, a := range ips {
			p := netip.PrefixFrom(a, a.BitLen())
			for _, q := range c.hostInfo().Interfaces {
				if q.Addr() == a {
					p = q
					break
				}
			}
			out = append(out, p)
		}
	}
	return out
}

func mustRaw(c *Config, name string) string {
	v, _ := c.Raw(name)
	return v
}
