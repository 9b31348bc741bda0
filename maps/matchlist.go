package maps

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// MatchKind says what a MatchList compares its patterns with, after the
// list types of Postfix's match_list(3).
type MatchKind int

const (
	// DomainMatch compares domain names (domain_list): mydestination,
	// relay_domains, virtual_alias_domains, virtual_mailbox_domains,
	// fast_flush_domains, permit_mx_backup's relay_domains.
	DomainMatch MatchKind = iota
	// HostMatch compares a client hostname and its IP address
	// (namadr_list): mynetworks, debug_peer_list,
	// permit_mx_backup_networks, smtpd_client_event_limit_exceptions,
	// qmqpd_authorized_clients. Each pattern is tried against the name and
	// then the address before the next pattern.
	HostMatch
	// AddrMatch compares IP addresses only (addr_match_list):
	// smtpd_authorized_xclient_hosts-style lists, postscreen access lists.
	AddrMatch
	// StringMatch compares whole strings such as user names or
	// user@domain addresses (string_list): masquerade_exceptions,
	// authorized_submit_users, authorized_mailq_users.
	StringMatch
)

// MatchListConfig describes a match list.
type MatchListConfig struct {
	// Name is the parameter the list comes from; errors name it.
	Name string
	// Kind selects what the patterns are compared with.
	Kind MatchKind
	// ParentStyle is true when Name appears in
	// parent_domain_matches_subdomains: then pattern example.com also
	// matches sub.example.com, and tables are asked parent names without
	// a leading dot. Otherwise only .example.com matches subdomains, and
	// tables are asked .example.com.
	ParentStyle bool
	// Registry opens type:table patterns; nil means Default().
	Registry *Registry
	// Options are used to open tables.
	Options Options
	// ReadFile reads /file/name patterns; nil means os.ReadFile.
	ReadFile func(name string) ([]byte, error)
}

// MatchList is a Postfix host, domain, address or string match list
// (postconf(5) "mydestination", "mynetworks"; match_list(3)): patterns
// tried left to right, first match wins, and a matching !pattern means "no
// match". Comparisons ignore case. A MatchList is safe for concurrent use.
type MatchList struct {
	cfg   MatchListConfig
	items []mlItem
}

// mlItem is one pattern after /file expansion.
type mlItem struct {
	negate  bool
	text    string // the pattern as written, without '!'
	table   Map    // type:table
	isNet   bool   // net/mask
	prefix  netip.Prefix
	isAddr  bool // a bare or bracketed IP address
	address netip.Addr
}

// mlMaxDepth bounds /file/name nesting, so that a file that names itself
// is an error rather than a hang.
const mlMaxDepth = 10

// NewMatchList builds a match list from the items of a list parameter
// (already split at commas and whitespace; items are split again, so a
// whole parameter value may also be passed as one item). Pattern forms:
//
//   - name, or address for HostMatch/AddrMatch;
//   - net/mask: 10.0.0.0/8, or [2001:db8::]/32 for IPv6 (brackets, so the
//     ':' is not read as type:table); host bits must be zero;
//   - [address], e.g. [2001:db8::1];
//   - /file/name: replaced by the patterns in the file (separated by
//     whitespace or commas; lines starting with '#' are comments; files
//     may name other files);
//   - type:table: matches when the string is a key of the table (the
//     value is ignored). For DomainMatch and HostMatch names, fixed-key
//     tables are also asked the parent domains;
//   - !pattern, including !/file/name (every pattern in the file is
//     negated) and !type:table.
func NewMatchList(ctx context.Context, cfg MatchListConfig, items []string) (*MatchList, error) {
	if cfg.Registry == nil {
		cfg.Registry = Default()
	}
	if cfg.ReadFile == nil {
		cfg.ReadFile = os.ReadFile
	}
	l := &MatchList{cfg: cfg}
	opened := map[string]Map{}
	for _, it := range items {
		if err := l.parse(ctx, it, false, 0, opened); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// mlSplit splits a list at commas and whitespace, but not inside braces,
// so an inline table such as regexp:{{/^[^A-Z]/ Bogus}} (the default of
// smtpd_forbidden_commands) stays one pattern.
func mlSplit(s string) []string {
	var out []string
	start, level := -1, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{':
			level++
		case c == '}':
			if level > 0 {
				level--
			}
		case level == 0 && (c == ' ' || c == ',' || c == '\t' || c == '\r' || c == '\n'):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

func (l *MatchList) errorf(format string, args ...any) error {
	return fmt.Errorf("maps: %s: %s", l.cfg.Name, fmt.Sprintf(format, args...))
}

func (l *MatchList) parse(ctx context.Context, s string, negate bool, depth int, opened map[string]Map) error {
	for _, pat := range mlSplit(s) {
		neg := negate
		p := pat
		for strings.HasPrefix(p, "!") {
			neg = !neg
			p = p[1:]
		}
		if p == "" {
			return l.errorf("empty pattern after '!' in %q", pat)
		}
		switch {
		case p[0] == '/':
			if depth >= mlMaxDepth {
				return l.errorf("file %s: files nested more than %d deep", p, mlMaxDepth)
			}
			data, err := l.cfg.ReadFile(p)
			if err != nil {
				return l.errorf("open file %s: %v", p, err)
			}
			for _, line := range strings.Split(string(data), "\n") {
				if strings.HasPrefix(line, "#") {
					continue
				}
				if err := l.parse(ctx, line, neg, depth+1, opened); err != nil {
					return err
				}
			}
		case p[0] != '[' && strings.IndexByte(p, ':') >= 0:
			m := opened[p]
			if m == nil {
				var err error
				m, err = l.cfg.Registry.Open(ctx, p, l.cfg.Options)
				if err != nil {
					return l.errorf("table %s: %v", p, err)
				}
				opened[p] = m
			}
			l.items = append(l.items, mlItem{negate: neg, text: p, table: m})
		default:
			it := mlItem{negate: neg, text: p}
			if l.cfg.Kind == HostMatch || l.cfg.Kind == AddrMatch {
				if err := l.parseNet(&it); err != nil {
					return err
				}
			}
			l.items = append(l.items, it)
		}
	}
	return nil
}

// parseNet recognises net/mask and address patterns.
func (l *MatchList) parseNet(it *mlItem) error {
	p := it.text
	if slash := strings.IndexByte(p, '/'); slash >= 0 {
		addrPart, bits := p[:slash], p[slash+1:]
		if strings.HasPrefix(addrPart, "[") {
			if !strings.HasSuffix(addrPart, "]") {
				return l.errorf("bad net/mask pattern %q", p)
			}
			addrPart = addrPart[1 : len(addrPart)-1]
		}
		pfx, err := netip.ParsePrefix(addrPart + "/" + bits)
		if err != nil || pfx.Addr().Zone() != "" {
			return l.errorf("bad net/mask pattern %q", p)
		}
		if pfx.Addr().Is6() && !strings.HasPrefix(p, "[") {
			return l.errorf("bad net/mask pattern %q: write IPv6 networks as [address]/bits", p)
		}
		if pfx.Masked() != pfx {
			want := pfx.Masked().Addr().String()
			if pfx.Addr().Is6() {
				want = "[" + want + "]"
			}
			return l.errorf("non-null host address bits in %q, perhaps you should use %q instead", p, want+"/"+bits)
		}
		it.isNet, it.prefix = true, pfx
		return nil
	}
	a := p
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		a = a[1 : len(a)-1]
	}
	if ip, err := netip.ParseAddr(a); err == nil && ip.Zone() == "" {
		it.isAddr, it.address = true, ip.Unmap()
	}
	return nil
}

// Match reports whether s matches the list: a domain for DomainMatch, an IP
// address for AddrMatch, a string for StringMatch. For HostMatch, s is used
// as both the hostname and the address (see MatchHost).
func (l *MatchList) Match(ctx context.Context, s string) (bool, error) {
	return l.MatchHost(ctx, s, s)
}

// MatchHost reports whether a client with hostname name and IP address
// addr matches the list. Each pattern is compared with the name and then
// with the address before the next pattern is tried. For DomainMatch and
// StringMatch only name is used, for AddrMatch only addr.
func (l *MatchList) MatchHost(ctx context.Context, name, addr string) (bool, error) {
	var ip netip.Addr
	ipOK := false
	if l.cfg.Kind == HostMatch || l.cfg.Kind == AddrMatch {
		if a, err := netip.ParseAddr(addr); err == nil {
			ip, ipOK = a.Unmap().WithZone(""), true
		}
	}
	return l.matchHost(ctx, name, addr, ip, ipOK)
}

// MatchHostAddr is MatchHost for a client whose address is already parsed;
// the text form (IPv4-mapped addresses unmapped, as smtpd shows clients) is
// made only if a table or pattern needs it.
func (l *MatchList) MatchHostAddr(ctx context.Context, name string, ip netip.Addr) (bool, error) {
	if !ip.IsValid() {
		return l.MatchHost(ctx, name, "")
	}
	ip = ip.Unmap().WithZone("")
	return l.matchHost(ctx, name, "", ip, true)
}

func (l *MatchList) matchHost(ctx context.Context, name, addr string, ip netip.Addr, ipOK bool) (bool, error) {
	for i := range l.items {
		it := &l.items[i]
		var (
			hit bool
			err error
		)
		switch l.cfg.Kind {
		case DomainMatch:
			hit, err = l.matchHostname(ctx, it, name)
		case StringMatch:
			hit, err = l.matchString(ctx, it, name)
		case AddrMatch, HostMatch:
			if l.cfg.Kind == HostMatch {
				hit, err = l.matchHostname(ctx, it, name)
			}
			if err == nil && !hit {
				if ipOK && it.table == nil && (it.isNet || it.isAddr) {
					// Compared as parsed addresses, as matchAddr would.
					hit = it.isNet && it.prefix.Contains(ip) || it.isAddr && it.address == ip
				} else {
					if addr == "" && ipOK {
						addr = ip.String()
					}
					hit, err = l.matchAddr(ctx, it, addr, ip, ipOK)
				}
			}
		}
		if err != nil {
			return false, err
		}
		if hit {
			return !it.negate, nil
		}
	}
	return false, nil
}

func (l *MatchList) lookup(ctx context.Context, it *mlItem, key string) (bool, error) {
	_, ok, err := it.table.Lookup(ctx, key)
	if err != nil {
		return false, fmt.Errorf("maps: %s: %s: %w", l.cfg.Name, it.text, err)
	}
	return ok, nil
}

// matchString is match_string: a table key, or the whole string.
func (l *MatchList) matchString(ctx context.Context, it *mlItem, s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	if it.table != nil {
		return l.lookup(ctx, it, FoldKey(s))
	}
	return strings.EqualFold(s, it.text), nil
}

// matchHostname is match_hostname: a table lookup of the name and, for
// fixed tables, its parents; or the name itself, or a parent (parent
// style) or .parent (dot style) pattern.
func (l *MatchList) matchHostname(ctx context.Context, it *mlItem, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	if it.table != nil {
		key := FoldKey(name)
		style := DotStyle
		if l.cfg.ParentStyle {
			style = ParentStyle
		}
		if KindOf(it.table) != Fixed {
			style = NoParents
		}
		var (
			found bool
			lerr  error
		)
		keyParents(key, style, true, StepHost, StepHostParent, func(k Key) bool {
			found, lerr = l.lookup(ctx, it, k.Text)
			return lerr == nil && !found
		})
		return found, lerr
	}
	pat := it.text
	if strings.EqualFold(name, pat) {
		return true, nil
	}
	if len(name) <= len(pat) {
		return false, nil
	}
	tail := name[len(name)-len(pat):]
	if l.cfg.ParentStyle {
		return name[len(name)-len(pat)-1] == '.' && strings.EqualFold(tail, pat), nil
	}
	return strings.HasPrefix(pat, ".") && strings.EqualFold(tail, pat), nil
}

// mlAddrChars are the characters of a textual IPv4 or IPv6 address.
const mlAddrChars = "0123456789.abcdefABCDEF:"

// matchAddr is match_hostaddr: a table lookup of the whole address, the
// address as written (bare or in brackets), or a net/mask.
func (l *MatchList) matchAddr(ctx context.Context, it *mlItem, addr string, ip netip.Addr, ipOK bool) (bool, error) {
	if addr == "" || strings.Trim(addr, mlAddrChars) != "" {
		return false, nil
	}
	if it.table != nil {
		return l.lookup(ctx, it, addr)
	}
	if strings.EqualFold(addr, it.text) || strings.EqualFold("["+addr+"]", it.text) {
		return true, nil
	}
	if !ipOK {
		return false, nil
	}
	if it.isNet {
		return it.prefix.Contains(ip), nil
	}
	if it.isAddr {
		return it.address == ip, nil
	}
	return false, nil
}
