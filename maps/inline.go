package maps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// This file holds the table types whose contents are in the table name or
// that combine other tables: inline:, static:, fail:, unionmap:, pipemap:,
// and unix: (the system's passwd and group files). See postconf(5) and
// DATABASE_README, "List of lookup table types".

// inlSplit splits the inside of "{...}" into items separated by commas or
// whitespace. An item that starts with '{' runs to its matching '}' and must
// be followed by a separator or the end ("syntax error after '}'").
func inlSplit(s string) ([]string, error) {
	var items []string
	i := 0
	for {
		for i < len(s) && (s[i] == ',' || isSpace(s[i])) {
			i++
		}
		if i >= len(s) {
			return items, nil
		}
		start := i
		depth := 0
		for i < len(s) {
			c := s[i]
			if depth == 0 && (c == ',' || isSpace(c)) {
				break
			}
			if c == '{' {
				depth++
			} else if c == '}' {
				depth--
				if depth < 0 {
					return nil, fmt.Errorf(`unexpected '}' in "%s"`, s[start:])
				}
				if depth == 0 && s[start] == '{' && i+1 < len(s) && s[i+1] != ',' && !isSpace(s[i+1]) {
					end := i + 1
					for end < len(s) && s[end] != ',' && !isSpace(s[end]) {
						end++
					}
					return nil, fmt.Errorf(`syntax error after '}' in "%s"`, s[start:end])
				}
			}
			i++
		}
		if depth > 0 {
			return nil, fmt.Errorf(`missing '}' in "%s"`, s[start:])
		}
		items = append(items, s[start:i])
	}
}

// braceEnd returns the index of the '}' that closes the '{' at s[0], or -1
// when it is not closed. Braces nest; nothing quotes them. This is how
// Postfix finds the end of the inline forms inline:{...}, static:{...},
// regexp:{...}, pcre:{...} and cidr:{...} and of each {rule} in them.
func braceEnd(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// inlBraced returns the text inside a name of the form "{...}" whose
// opening brace is matched by its last character.
func inlBraced(name string) (string, bool) {
	if len(name) < 2 || name[0] != '{' {
		return "", false
	}
	i := braceEnd(name)
	if i < 0 {
		return "", false
	}
	return name[1:i], i == len(name)-1
}

// inlTable is an inline:{...} table.
type inlTable struct {
	name    string
	m       map[string]string
	entries []Entry
}

// openInline opens inline:{ key=value, { key = value with spaces }, ... }
// (postconf(5), "inline"). Items are separated by commas or whitespace; an
// item in braces may hold spaces around '=' and in its value, but not in its
// key. Keys are folded; a later key replaces an earlier one without a
// warning, as in Postfix.
func openInline(ctx context.Context, name string, opts Options) (Map, error) {
	spec := "inline:" + name
	fail := func(what string) error {
		return fmt.Errorf(`maps: %s: "%s"; need "inline:{name=value...}"`, what, spec)
	}
	inner, ok := inlBraced(name)
	if !ok || inner == "" {
		return nil, fail("bad syntax")
	}
	items, err := inlSplit(inner)
	if err != nil {
		if strings.HasPrefix(err.Error(), "syntax error after") {
			return nil, fail(err.Error())
		}
		return nil, fail("bad syntax")
	}
	if len(items) == 0 {
		return nil, fail("empty table")
	}
	t := &inlTable{name: spec, m: make(map[string]string, len(items))}
	for _, it := range items {
		if it[0] == '{' {
			it = trimSpace(it[1 : len(it)-1])
		}
		k, v, msg := inlNameValue(it)
		if msg != "" {
			return nil, fail(msg)
		}
		k = FoldKey(k)
		if _, dup := t.m[k]; !dup {
			t.entries = append(t.entries, Entry{Key: k})
		}
		t.m[k] = v
	}
	for i := range t.entries {
		t.entries[i].Value = t.m[t.entries[i].Key]
	}
	return t, nil
}

// inlNameValue splits one inline item, "name = value", with the rules
// Postfix 3.7 applies (checked against postmap -s): the name ends at the
// first whitespace or '=' outside double quotes; a backslash protects the
// next character; quotes and backslashes stay part of the name. Then only
// whitespace may come before '='. The value is the rest, trimmed, '='
// characters and all. msg is Postfix's complaint, or "".
func inlNameValue(s string) (name, value, msg string) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i == len(s) {
		return "", "", "no key found; expected format: key = value"
	}
	start := i
	quoted := false
scan:
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i+1 == len(s) {
				i++
				break scan
			}
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == '=' || isSpace(c)):
			break scan
		}
	}
	if quoted {
		return "", "", `unbalanced '"'`
	}
	name = s[start:min(i, len(s))]
	rest := s[min(i, len(s)):]
	j := 0
	for j < len(rest) && isSpace(rest[j]) {
		j++
	}
	if j == len(rest) || rest[j] != '=' {
		return "", "", "missing '=' after attribute name"
	}
	return name, trimSpace(rest[j+1:]), ""
}

// Lookup implements Map. An empty value is an error, as in Postfix. The
// empty key is found when the table has one ("inline:{ =v }").
func (t *inlTable) Lookup(_ context.Context, key string) (string, bool, error) {
	v, ok := t.m[FoldKey(key)]
	if ok && v == "" {
		return "", false, &Error{Map: t.name, Key: key, Err: ErrEmptyValue}
	}
	return v, ok, nil
}

// Kind implements Kinder.
func (t *inlTable) Kind() Kind { return Fixed }

// Name implements Named.
func (t *inlTable) Name() string { return t.name }

// Entries implements Iterable, in the order keys first appear.
func (t *inlTable) Entries(_ context.Context, yield func(Entry) bool) error {
	for _, e := range t.entries {
		if !yield(e) {
			break
		}
	}
	return nil
}

// inlStatic is a static: table.
type inlStatic struct {
	name, value string
}

// openStatic opens static:value or static:{value with spaces}: every key,
// the empty one included, has that value (postconf(5), "static").
func openStatic(ctx context.Context, name string, opts Options) (Map, error) {
	if name == "" {
		return nil, errors.New(`maps: open dictionary: expecting "type:name" form instead of "static:"`)
	}
	value := name
	if name[0] == '{' {
		inner, ok := inlBraced(name)
		switch {
		case ok:
			value = trimSpace(inner)
		case braceEnd(name) >= 0:
			return nil, fmt.Errorf(`maps: bad static:name syntax: syntax error after '}' in "%s"`, name)
		default:
			return nil, fmt.Errorf(`maps: bad static:name syntax: missing '}' in "%s"`, name)
		}
	}
	return &inlStatic{name: "static:" + name, value: value}, nil
}

// Lookup implements Map.
func (t *inlStatic) Lookup(_ context.Context, key string) (string, bool, error) {
	if t.value == "" {
		return "", false, &Error{Map: t.name, Key: key, Err: ErrEmptyValue}
	}
	return t.value, true, nil
}

// Kind implements Kinder.
func (t *inlStatic) Kind() Kind { return Fixed }

// Name implements Named.
func (t *inlStatic) Name() string { return t.name }

// inlFail is a fail: table.
type inlFail struct{ name string }

// openFail opens fail:name, a table whose every lookup fails with a
// temporary error (Postfix's dict_fail answers DICT_ERR_RETRY); it is used
// to test error handling.
func openFail(ctx context.Context, name string, opts Options) (Map, error) {
	return &inlFail{name: "fail:" + name}, nil
}

// inlErrFail is what every fail: lookup wraps. Its text is what postmap -q
// prints for a fail: table ("postmap: fatal: table fail:x: query error:
// Application error"): Postfix's fail table sets no errno of its own.
var inlErrFail = errors.New("Application error")

// Lookup implements Map.
func (t *inlFail) Lookup(_ context.Context, key string) (string, bool, error) {
	return "", false, &Error{Map: t.name, Key: key, Temporary: true, Err: inlErrFail}
}

// Name implements Named.
func (t *inlFail) Name() string { return t.name }

// inlMulti is a unionmap: or pipemap: table.
type inlMulti struct {
	name   string
	pipe   bool
	tables []Map
	kind   Kind
}

func inlOpenMulti(ctx context.Context, typ, name string, opts Options) (Map, error) {
	spec := typ + ":" + name
	inner, ok := inlBraced(name)
	var items []string
	var err error
	if ok {
		items, err = inlSplit(inner)
	}
	if !ok || err != nil || len(items) == 0 {
		return nil, fmt.Errorf(`maps: bad syntax: "%s"; need "%s:{type:name...}"`, spec, typ)
	}
	reg := opts.Registry
	if reg == nil {
		reg = Default()
	}
	t := &inlMulti{name: spec, pipe: typ == "pipemap", kind: Pattern}
	for _, it := range items {
		m, err := reg.Open(ctx, it, opts)
		if err != nil {
			for _, o := range t.tables {
				Close(o)
			}
			return nil, fmt.Errorf("maps: %s: %w", spec, err)
		}
		t.tables = append(t.tables, m)
		// Postfix gives the combination the flags of its members: it is
		// asked partial keys if any member is a fixed-key table.
		if KindOf(m) == Fixed {
			t.kind = Fixed
		}
	}
	return t, nil
}

// openUnion opens unionmap:{type:name, ...}: every table is asked, and the
// values found are joined with commas in table order (postconf(5),
// "unionmap"). An error from any table fails the lookup.
func openUnion(ctx context.Context, name string, opts Options) (Map, error) {
	return inlOpenMulti(ctx, "unionmap", name, opts)
}

// openPipe opens pipemap:{type:name, ...}: the value from each table is the
// key for the next, and the last value is the result (postconf(5),
// "pipemap"). A miss or an error anywhere ends the lookup.
func openPipe(ctx context.Context, name string, opts Options) (Map, error) {
	return inlOpenMulti(ctx, "pipemap", name, opts)
}

// Lookup implements Map.
func (t *inlMulti) Lookup(ctx context.Context, key string) (string, bool, error) {
	if t.pipe {
		v := key
		for _, m := range t.tables {
			next, ok, err := m.Lookup(ctx, v)
			if err != nil || !ok {
				return "", false, err
			}
			v = next
		}
		return v, true, nil
	}
	var vals []string
	for _, m := range t.tables {
		v, ok, err := m.Lookup(ctx, key)
		if err != nil {
			return "", false, err
		}
		if ok {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return "", false, nil
	}
	return strings.Join(vals, ","), true, nil
}

// Kind implements Kinder.
func (t *inlMulti) Kind() Kind { return t.kind }

// Name implements Named.
func (t *inlMulti) Name() string { return t.name }

// Close closes the member tables.
func (t *inlMulti) Close() error {
	var errs []error
	for _, m := range t.tables {
		errs = append(errs, Close(m))
	}
	return errors.Join(errs...)
}

// Files read by unix: tables; tests point them elsewhere.
var (
	inlPasswdFile = "/etc/passwd"
	inlGroupFile  = "/etc/group"
)

// inlUnix is unix:passwd.byname or unix:group.byname.
type inlUnix struct {
	name  string
	group bool
}

// openUnix opens unix:passwd.byname and unix:group.byname, whose values are
// the passwd(5) or group(5) entry, rendered as Postfix renders the
// getpwnam()/getgrnam() result: "name:passwd:uid:gid:gecos:home:shell" and
// "name:passwd:gid:member,member". postkit reads the files itself (no cgo),
// so NSS sources other than files are not consulted.
func openUnix(ctx context.Context, name string, opts Options) (Map, error) {
	switch name {
	case "passwd.byname":
		return &inlUnix{name: "unix:" + name}, nil
	case "group.byname":
		return &inlUnix{name: "unix:" + name, group: true}, nil
	}
	return nil, fmt.Errorf("maps: unknown table: unix:%s", name)
}

// Lookup implements Map. The key is folded, as Postfix folds it.
func (t *inlUnix) Lookup(_ context.Context, key string) (string, bool, error) {
	key = FoldKey(key)
	if key == "" {
		return "", false, nil
	}
	file, nfields := inlPasswdFile, 7
	if t.group {
		file, nfields = inlGroupFile, 4
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", false, &Error{Map: t.name, Key: key, Temporary: true, Err: err}
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, key+":") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != nfields {
			continue
		}
		if t.group {
			gid, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				continue
			}
			var mem []string
			for _, m := range strings.Split(f[3], ",") {
				if m != "" {
					mem = append(mem, m)
				}
			}
			return fmt.Sprintf("%s:%s:%d:%s", f[0], f[1], gid, strings.Join(mem, ",")), true, nil
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return fmt.Sprintf("%s:%s:%d:%d:%s:%s:%s", f[0], f[1], uid, gid, f[4], f[5], f[6]), true, nil
	}
	return "", false, nil
}

// Kind implements Kinder.
func (t *inlUnix) Kind() Kind { return Fixed }

// Name implements Named.
func (t *inlUnix) Name() string { return t.name }
