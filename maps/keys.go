package maps

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postkit-mail/postkit/address"
)

// Step names one step of a lookup-key strategy. AddressStrategy.Steps is a
// set of them; Key.Step says which step produced a key.
type Step uint32

// The steps of Postfix's address strategy (mail_addr_find, §2.5 of the
// spec), in the order they run, then the steps of client, HELO and ETRN
// searches (smtpd_check, access(5)).
const (
	// StepFull: the whole address, user+ext@domain.
	StepFull Step = 1 << iota
	// StepNoExt: user@domain, when recipient_delimiter is set and the
	// address has an extension.
	StepNoExt
	// StepLocalPartIfLocal: user+ext, then user, when the domain is local.
	StepLocalPartIfLocal
	// StepLocalPartAtIfLocal: user+ext@, then user@, when the domain is
	// local.
	StepLocalPartAtIfLocal
	// StepAtDomain: @domain.
	StepAtDomain
	// StepDomain: domain, then its parents as AddressStrategy.Parents says.
	StepDomain
	// StepLocalPartAt: user+ext@, then user@, whatever the domain.
	StepLocalPartAt
	// StepWildcard: "*", the last transport_maps key (transport(5)).
	StepWildcard
	// StepNull: the key used for the null address (<>).
	StepNull
	// StepHost: a client hostname, HELO or ETRN name, whole.
	StepHost
	// StepHostParent: a parent domain of StepHost's name.
	StepHostParent
	// StepAddr: a client IP address, whole.
	StepAddr
	// StepAddrPrefix: a shortened client IP address (1.2.3, 2001:db8:).
	StepAddrPrefix
)

var keyStepNames = []string{"full", "noext", "localpart_if_local", "localpart_at_if_local",
	"at_domain", "domain", "localpart_at", "wildcard", "null", "host", "host_parent", "addr", "addr_prefix"}

// String names the step (several steps are joined with "|").
func (s Step) String() string {
	var parts []string
	for i, n := range keyStepNames {
		if s&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// Step sets of the Postfix consumers (spec §2.5).
const (
	// StepsMapping is MA_FIND_DEFAULT: canonical_maps,
	// sender/recipient_canonical_maps, virtual_alias_maps,
	// smtp/lmtp_generic_maps, virtual_mailbox_maps (and uid/gid maps),
	// and smtpd's recipient validation (local_recipient_maps,
	// relay_recipient_maps, ...).
	StepsMapping = StepFull | StepNoExt | StepLocalPartIfLocal | StepAtDomain
	// StepsAccess is smtpd's check_sender_access / check_recipient_access.
	StepsAccess = StepFull | StepNoExt | StepDomain | StepLocalPartAt
	// StepsTransport is transport_maps.
	StepsTransport = StepFull | StepNoExt | StepDomain | StepWildcard
	// StepsAlias is local(8)'s alias_maps: the local part with, then
	// without, its extension.
	StepsAlias = StepFull | StepNoExt
)

// ParentSearch says whether and how a domain key is followed by its parent
// domains.
type ParentSearch int

const (
	// NoParents looks up the domain only.
	NoParents ParentSearch = iota
	// ParentStyle tries sub.example.com, example.com, com: for tables whose
	// parameter is in parent_domain_matches_subdomains.
	ParentStyle
	// DotStyle tries sub.example.com, .example.com, .com.
	DotStyle
)

// QueryForm says whether keys are looked up with the local part quoted
// (external form, "a b"@x), unquoted (internal form, a b@x), or both.
type QueryForm int

const (
	// ExternalFirst looks up the external form, then the internal form
	// when it differs: what Postfix 3.7 does for address tables.
	ExternalFirst QueryForm = iota
	// External looks up the external form only.
	External
	// Internal looks up the internal form only.
	Internal
	// InternalFirst looks up the internal form, then the external form
	// when it differs.
	InternalFirst
)

// AddressStrategy is how an address is turned into lookup keys. The zero
// value looks up nothing; start from one of the constructors
// (MappingStrategy, AccessStrategy, TransportStrategy, AliasStrategy) or
// set Steps.
type AddressStrategy struct {
	// Steps is the set of steps to run; they always run in Postfix's order
	// (the order of the Step constants).
	Steps Step
	// Parents says how StepDomain searches parent domains.
	Parents ParentSearch
	// Form selects quoted and/or unquoted keys.
	Form QueryForm
	// Delimiters is recipient_delimiter; "" means addresses have no
	// extension.
	Delimiters string
	// Split holds owner_request_special and double_bounce_sender.
	Split address.SplitOptions
	// IsLocal reports whether a domain is local: equal to $myorigin, or
	// matching $mydestination, $inet_interfaces or $proxy_interfaces
	// (resolve_local). Nil means no domain is local. It is called only
	// when a LocalPart*IfLocal step is reached; its error stops the search.
	IsLocal func(ctx context.Context, domain string) (bool, error)
	// NullKey is the only key looked up for the null address ""
	// (smtpd_null_access_lookup_key, "<>", for access maps). "" means the
	// null address is not looked up.
	NullKey string
	// WholeKeys gives every key to pattern tables too, as local(8) does
	// with alias_maps.
	WholeKeys bool
}

// MappingStrategy is the strategy of canonical, virtual alias, generic and
// virtual mailbox maps and of smtpd recipient validation: user+ext@domain,
// user@domain, then user+ext and user if the domain is local, then @domain.
func MappingStrategy(delims string, isLocal func(ctx context.Context, domain string) (bool, error)) AddressStrategy {
	return AddressStrategy{Steps: StepsMapping, Delimiters: delims, IsLocal: isLocal}
}

// AccessStrategy is smtpd's check_sender_access and check_recipient_access:
// user+ext@domain, user@domain, domain and its parents, user+ext@, user@;
// the null sender is looked up as "<>" only. parentStyle is whether
// smtpd_access_maps is in parent_domain_matches_subdomains (it is by
// default).
func AccessStrategy(delims string, parentStyle bool) AddressStrategy {
	s := AddressStrategy{Steps: StepsAccess, Delimiters: delims, NullKey: "<>", Parents: DotStyle}
	if parentStyle {
		s.Parents = ParentStyle
	}
	return s
}

// TransportStrategy is transport_maps: user+ext@domain, user@domain, domain,
// its parents, then "*". parentStyle is whether transport_maps is in
// parent_domain_matches_subdomains (not by default: .domain keys). The null
// recipient must be given as $empty_address_recipient@$myhostname.
func TransportStrategy(delims string, parentStyle bool) AddressStrategy {
	s := AddressStrategy{Steps: StepsTransport, Delimiters: delims, Parents: DotStyle}
	if parentStyle {
		s.Parents = ParentStyle
	}
	return s
}

// AliasStrategy is local(8)'s alias_maps search for a local part: user+ext,
// then user. Keys are in internal form, as postalias stores names unquoted,
// and both are whole keys.
func AliasStrategy(delims string) AddressStrategy {
	return AddressStrategy{Steps: StepsAlias, Delimiters: delims, Form: Internal, WholeKeys: true}
}

// Keys calls yield with each key for addr in order until yield returns
// false. addr is in internal form ("a b@example.com"; address.Unquote
// converts). IsLocal is called only when its step is reached, and an error
// from it is returned.
func (s AddressStrategy) Keys(ctx context.Context, addr string, yield func(Key) bool) error {
	if addr == "" {
		if s.NullKey != "" {
			yield(Key{Text: s.NullKey, Step: StepNull})
		}
		return nil
	}
	partial := !s.WholeKeys
	var (
		bare, ext string
		hasExt    bool
	)
	if s.Delimiters != "" && s.Steps&StepNoExt != 0 {
		bare, ext, hasExt = address.StripExtension(addr, s.Delimiters, s.Split)
	}
	// When no local part this search derives can need quoting, the
	// quoted and internal forms are the same and quoting is skipped (the
	// common case, and the hot path of every access-table check).
	plain := false
	if at := strings.LastIndexByte(addr, '@'); at > 0 && addr[0] != '@' {
		plain = plainLocal(addr[:at], s.Delimiters)
	}
	// forms yields key in the query form(s); bareLocal means key is a
	// local part without '@'.
	forms := func(key string, bareLocal, part bool, step Step, e string) bool {
		var q string
		switch {
		case plain:
			q = key
		case bareLocal:
			q = address.QuoteLocal(key)
		default:
			q = address.Quote(key)
		}
		first, second := q, key
		switch s.Form {
		case External:
			second = q
		case Internal:
			first = key
		case InternalFirst:
			first, second = key, q
		}
		if !yield(Key{Text: first, Partial: part, Step: step, Ext: e}) {
			return false
		}
		if second != first {
			return yield(Key{Text: second, Partial: part, Step: step, Ext: e})
		}
		return true
	}
	if s.Steps&StepFull != 0 && !forms(addr, false, false, StepFull, "") {
		return nil
	}
	if hasExt && !forms(bare, false, partial, StepNoExt, ext) {
		return nil
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return nil
	}
	domain := addr[at+1:]
	bareAt := -1
	if hasExt {
		bareAt = strings.LastIndexByte(bare, '@')
	}
	// localKeys yields user+ext then user, without '@' or with it.
	localKeys := func(withAt bool, step Step) bool {
		off := 0
		if withAt {
			off = 1
		}
		if !forms(addr[:at+off], !withAt, partial, step, "") {
			return false
		}
		if hasExt && bareAt >= 0 {
			return forms(bare[:bareAt+off], !withAt, partial, step, ext)
		}
		return true
	}
	if s.Steps&(StepLocalPartIfLocal|StepLocalPartAtIfLocal) != 0 && s.IsLocal != nil {
		local, err := s.IsLocal(ctx, domain)
		if err != nil {
			return fmt.Errorf("maps: is %q local: %w", domain, err)
		}
		if local {
			if s.Steps&StepLocalPartIfLocal != 0 && !localKeys(false, StepLocalPartIfLocal) {
				return nil
			}
			if s.Steps&StepLocalPartAtIfLocal != 0 && !localKeys(true, StepLocalPartAtIfLocal) {
				return nil
			}
		}
	}
	if s.Steps&StepAtDomain != 0 && domain != "" {
		if !yield(Key{Text: "@" + domain, Partial: partial, Step: StepAtDomain}) {
			return nil
		}
	}
	if s.Steps&StepDomain != 0 && domain != "" {
		if !keyParents(domain, s.Parents, partial, StepDomain, StepDomain, yield) {
			return nil
		}
	}
	if s.Steps&StepLocalPartAt != 0 && !localKeys(true, StepLocalPartAt) {
		return nil
	}
	if s.Steps&StepWildcard != 0 {
		yield(Key{Text: "*", Partial: partial, Step: StepWildcard})
	}
	return nil
}

// plainLocal reports whether local, and every prefix of it that ends
// before a delimiter character, is a dot-atom that needs no quoting: ASCII
// letters, digits and the other atext characters, with single dots that
// neither start nor end it nor stand before a delimiter.
func plainLocal(local, delims string) bool {
	if local == "" || local[0] == '.' || local[len(local)-1] == '.' {
		return false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.':
			if n := local[i+1]; n == '.' || strings.IndexByte(delims, n) >= 0 {
				return false
			}
		case strings.IndexByte("!#$%&'*+/=?^_`{|}~-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// keyParents yields name, then (per style) its parent domains, the way
// mail_addr_find and smtpd's check_domain_access walk them: the next key
// starts at the next '.' after the first character (dot style keeps the
// dot, parent style skips it).
func keyParents(name string, style ParentSearch, partial bool, first, rest Step, yield func(Key) bool) bool {
	if !yield(Key{Text: name, Partial: first == rest && partial, Step: first}) {
		return false
	}
	if style == NoParents {
		return true
	}
	for cur := name; ; {
		i := strings.IndexByte(cur[1:], '.')
		if i < 0 {
			return true
		}
		next := cur[1+i:]
		if style == ParentStyle {
			next = next[1:]
		}
		if next == "" {
			return true
		}
		if !yield(Key{Text: next, Partial: true, Step: rest}) {
			return false
		}
		cur = next
	}
}

// AddressKeys lists the keys s gives for addr, in order. It is what
// FindAddress tries; use it to explain or test a strategy.
func (s AddressStrategy) AddressKeys(ctx context.Context, addr string) ([]Key, error) {
	var keys []Key
	err := s.Keys(ctx, addr, func(k Key) bool { keys = append(keys, k); return true })
	return keys, err
}

// FindAddress searches the list for addr (internal form) with strategy s.
// The Result's Key says which key matched, whether it was partial, and the
// extension that was stripped to find it (for propagate_unmatched_extensions,
// see MapAddressResult).
func (l List) FindAddress(ctx context.Context, addr string, s AddressStrategy) (Result, bool, error) {
	return l.findSeq(ctx, func(yield func(Key) bool) error { return s.Keys(ctx, addr, yield) })
}

// keyNumeric reports whether a host name is really an address (an IP or
// an [address literal]); Postfix does not search its "parent domains".
func keyNumeric(name string) bool {
	if strings.HasPrefix(name, "[") {
		return true
	}
	_, err := netip.ParseAddr(name)
	return err == nil
}

// HostnameKeys lists the access-table keys for a client hostname (the
// verified name or "unknown"), a reverse client hostname, a HELO name or
// an ETRN domain (smtpd_check, access(5)): the name, then its parent
// domains in parent style (example.com) or dot style (.example.com).
// parentStyle is whether smtpd_access_maps is in
// parent_domain_matches_subdomains (the default). A numeric name (an IP
// address or [literal]) is not parent-searched.
func HostnameKeys(name string, parentStyle bool) []Key {
	var keys []Key
	keyHostname(name, parentStyle, func(k Key) bool { keys = append(keys, k); return true })
	return keys
}

func keyHostname(name string, parentStyle bool, yield func(Key) bool) bool {
	if name == "" {
		return true
	}
	style := DotStyle
	if parentStyle {
		style = ParentStyle
	}
	if keyNumeric(name) {
		style = NoParents
	}
	return keyParents(name, style, true, StepHost, StepHostParent, yield)
}

// AddrKeys lists the access-table keys for a client IP address: the
// address, then shorter prefixes made by cutting at the right-most '.'
// (IPv4: 1.2.3.4, 1.2.3, 1.2, 1) or ':' (IPv6, in compressed lower-case
// form: 2001:db8::1, 2001:db8:, 2001:db8, 2001). An IPv4-mapped IPv6
// address is searched as IPv4, as smtpd sees it. A string that is not an
// IP address is looked up whole only.
func AddrKeys(ip string) []Key {
	var keys []Key
	keyAddr(ip, func(k Key) bool { keys = append(keys, k); return true })
	return keys
}

func keyAddr(ip string, yield func(Key) bool) bool {
	if ip == "" {
		return true
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return yield(Key{Text: ip, Step: StepAddr})
	}
	text := a.Unmap().WithZone("").String()
	if !yield(Key{Text: text, Step: StepAddr}) {
		return false
	}
	delim := byte('.')
	if strings.IndexByte(text, ':') >= 0 {
		delim = ':'
	}
	for {
		i := strings.LastIndexByte(text, delim)
		if i <= 0 {
			return true
		}
		text = text[:i]
		if !yield(Key{Text: text, Partial: true, Step: StepAddrPrefix}) {
			return false
		}
	}
}

// FindHostname searches for a client hostname, HELO name or ETRN domain
// and its parents (see HostnameKeys).
func (l List) FindHostname(ctx context.Context, name string, parentStyle bool) (Result, bool, error) {
	return l.findSeq(ctx, func(yield func(Key) bool) error {
		keyHostname(name, parentStyle, yield)
		return nil
	})
}

// FindAddr searches for a client IP address and its prefixes (see AddrKeys).
func (l List) FindAddr(ctx context.Context, ip string) (Result, bool, error) {
	return l.findSeq(ctx, func(yield func(Key) bool) error {
		keyAddr(ip, yield)
		return nil
	})
}

// FindClient is check_client_access: the hostname search (FindHostname),
// then, only if it found nothing, the address search (FindAddr). A hostname
// match, whatever its value (even DUNNO), therefore ends the search, as in
// Postfix; Result.Key.Step (StepHost/StepHostParent or
// StepAddr/StepAddrPrefix) says which search matched. A regexp or cidr
// table sees the whole hostname and the whole address.
func (l List) FindClient(ctx context.Context, name, ip string, parentStyle bool) (Result, bool, error) {
	r, ok, err := l.FindHostname(ctx, name, parentStyle)
	if err != nil || ok {
		return r, ok, err
	}
	return l.FindAddr(ctx, ip)
}

// AddressResultOptions control MapAddressResult.
type AddressResultOptions struct {
	// Propagate is true when the table's class (canonical, virtual, alias,
	// forward, include, generic) is listed in
	// propagate_unmatched_extensions.
	Propagate bool
	// Canonicalize brings one external-form result address to canonical
	// form (appending @$myorigin, .$mydomain; the rewrite package does
	// this). Nil leaves addresses as they are.
	Canonicalize func(addr string) string
}

// MapAddressResult turns the value of an address-mapping table (canonical,
// virtual, generic) into addresses, as Postfix's mail_addr_map does (spec
// §2.8). orig is the address that was looked up, in internal form.
//
//   - The value is parsed as an RFC 822 address list (see
//     address.ParseList) and each address is rendered in external form and
//     given to opts.Canonicalize.
//   - A value that starts with '@' ("@other.example") gets the original
//     local part in front, without the extension if one was stripped to
//     find the match.
//   - With opts.Propagate and a match that needed the extension stripped
//     (r.Key.Ext), the extension is inserted before the last '@' of every
//     result address in internal form (appended when there is none), and
//     the address is quoted again: `"a b"@x` becomes `"a b+ext"@x`.
//
// A value that holds no address is a temporary error, as in Postfix.
func MapAddressResult(r Result, orig string, opts AddressResultOptions) ([]string, error) {
	value := r.Value
	ext := r.Key.Ext
	if strings.HasPrefix(value, "@") {
		local := orig
		if i := strings.LastIndexByte(orig, '@'); i >= 0 {
			local = orig[:i]
		}
		if ext != "" && strings.HasSuffix(local, ext) {
			local = local[:len(local)-len(ext)]
		}
		value = address.QuoteLocal(local) + value
	}
	list, err := address.ParseList(value)
	if err == nil && len(list) == 0 {
		err = fmt.Errorf("no address")
	}
	if err != nil {
		name := ""
		if r.Map != nil {
			name = listName(r.Map)
		}
		return nil, &Error{Map: name, Key: r.Key.Text, Temporary: true,
			Err: fmt.Errorf("lookup of %s returns non-address result %q: %w", orig, r.Value, err)}
	}
	out := make([]string, 0, len(list))
	for _, mb := range list {
		a := mb.Address.String()
		if mb.Address.Local == "" && mb.Address.Domain != "" {
			// tok822 re-emits "@domain" as it was; only the first
			// address got the original user above.
			a = "@" + mb.Address.Domain
		}
		if opts.Canonicalize != nil {
			a = opts.Canonicalize(a)
		}
		if opts.Propagate && ext != "" {
			// The extension goes into the internal form, before its last
			// '@', and the result is quoted again (mail_addr_crunch): an
			// extension of a quoted local part ends up inside the quotes,
			// `"a b"@x` with +ext is `"a b+ext"@x`, and one that holds
			// specials ("+a,b") gets the local part quoted.
			in := address.Unquote(a)
			if i := strings.LastIndexByte(in, '@'); i >= 0 {
				in = in[:i] + ext + in[i:]
			} else {
				in += ext
			}
			a = address.Quote(in)
		}
		out = append(out, a)
	}
	return out, nil
}
