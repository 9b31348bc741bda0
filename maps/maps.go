// Package maps is postkit's lookup-table layer: the Map interface that every
// part reads tables through, a registry that opens Postfix "type:name" specs
// (hash:, cdb:, regexp:, pcre:, cidr:, inline:, pgsql:, ...), and the
// lookup-key strategies Postfix uses for addresses, client names and IPs.
//
// A Map answers one question: what is the value for this key? The answer is a
// value, "not found", or an error; errors say whether they are temporary
// (a database that is down) so callers can answer 4xx rather than 5xx, as
// Postfix does.
//
// Tables come in two kinds, as in Postfix (see dict(3) and maps(3)):
//
//   - fixed-key tables (hash, btree, lmdb, dbm, cdb, texthash, inline,
//     static, SQL, a user's Go map) compare whole keys; their keys are folded
//     to lower case at build and lookup time;
//   - pattern tables (regexp, pcre, cidr) run rules against the whole string
//     and never fold it.
//
// Derived keys (an address without its extension, a parent domain, @domain,
// a shortened IP prefix) are only ever given to fixed-key tables; see List.
package maps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"golang.org/x/text/cases"
)

// Map is a lookup table.
//
// Lookup returns the value for key and ok=true, or ok=false when the key is
// not in the table. A non-nil error means the lookup could not be answered;
// use IsTemporary to tell a table that is down from one that is broken.
//
// A Map must be safe for concurrent use. Fixed-key tables fold the key to lower
// case themselves: callers pass the key as they have it.
type Map interface {
	Lookup(ctx context.Context, key string) (value string, ok bool, err error)
}

// Kind says how a table matches keys.
type Kind int

const (
	// Fixed tables compare whole keys; they are asked derived (partial) keys.
	Fixed Kind = iota
	// Pattern tables (regexp, pcre, cidr) run rules over the whole input; they
	// are never asked derived keys.
	Pattern
)

// Kinder is implemented by tables that say what kind they are. A Map that
// does not implement it is taken to be Fixed.
type Kinder interface {
	Kind() Kind
}

// KindOf reports the kind of m.
func KindOf(m Map) Kind {
	if k, ok := m.(Kinder); ok {
		return k.Kind()
	}
	return Fixed
}

// Entry is one key and value of a table, as a dump (postmap -s) shows it.
type Entry struct {
	Key, Value string
}

// Iterable is implemented by tables that can list their contents
// (postmap -s). Entries are yielded in the table's own order.
type Iterable interface {
	Entries(ctx context.Context, yield func(Entry) bool) error
}

// Record is one key and value read from a table's source file, with the
// line it started on (for warnings and for postmap -d).
type Record struct {
	Key, Value string
	Line       int
}

// Named is implemented by tables that know the "type:name" they were opened as.
type Named interface {
	Name() string
}

// FuncMap adapts a function to the Map interface. It is a fixed-key table:
// the function receives the key folded to lower case.
type FuncMap func(ctx context.Context, key string) (string, bool, error)

// Lookup implements Map.
func (f FuncMap) Lookup(ctx context.Context, key string) (string, bool, error) {
	return f(ctx, FoldKey(key))
}

// StaticMap is a fixed-key table held in a Go map. Its keys must already be
// folded to lower case (use FoldKey); lookups fold the key.
type StaticMap map[string]string

// Lookup implements Map.
func (m StaticMap) Lookup(_ context.Context, key string) (string, bool, error) {
	v, ok := m[FoldKey(key)]
	return v, ok, nil
}

// Entries implements Iterable, in key order.
func (m StaticMap) Entries(_ context.Context, yield func(Entry) bool) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !yield(Entry{k, m[k]}) {
			break
		}
	}
	return nil
}

// FoldKey folds a fixed-table key the way Postfix does before a lookup:
// ASCII letters to lower case, and when the key holds non-ASCII UTF-8 it gets
// full Unicode case folding ("ß" becomes "ss"), as Postfix does when
// smtputf8_enable = yes. Keys that need no change are returned without
// allocating.
func FoldKey(key string) string {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= 0x80 {
			return foldUnicode(key)
		}
		if 'A' <= c && c <= 'Z' {
			b := []byte(key)
			for j := i; j < len(b); j++ {
				c := b[j]
				if c >= 0x80 {
					return foldUnicode(key)
				}
				if 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return key
}

// A cases.Caser keeps state, so each goroutine needs its own.
var folders = sync.Pool{New: func() any { c := cases.Fold(); return &c }}

func foldUnicode(key string) string {
	c := folders.Get().(*cases.Caser)
	out := c.String(key)
	folders.Put(c)
	return out
}

// Error is a lookup or open failure. Temporary is true when trying again
// later may succeed (a database that is unreachable, a timeout); Postfix
// answers those with 4xx.
type Error struct {
	Map       string // "type:name" of the table
	Key       string // the key being looked up, if any
	Temporary bool
	Err       error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("maps: ")
	b.WriteString(e.Map)
	if e.Key != "" {
		fmt.Fprintf(&b, " lookup %q", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// IsTemporary reports whether err, or an error it wraps, is a temporary
// lookup failure.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary
	}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return t.Temporary()
	}
	return false
}

// ErrEmptyValue is wrapped by the error a lookup returns when a table gives
// an empty value: Postfix treats that as a configuration error, not a miss.
var ErrEmptyValue = errors.New("table returned an empty value; it should return no result when a key is not found")

// Warning is a problem in a table's source that Postfix reports and skips
// (a bad rule, a duplicate key) while the table still loads.
type Warning struct {
	File string // source file, or the table spec for inline tables
	Line int    // 1-based line number of the logical line's first line; 0 if none
	Msg  string
}

// String renders the warning as Postfix does: "FILE, line N: MSG".
func (w Warning) String() string {
	if w.Line > 0 {
		return fmt.Sprintf("%s, line %d: %s", w.File, w.Line, w.Msg)
	}
	if w.File != "" {
		return w.File + ": " + w.Msg
	}
	return w.Msg
}

// Options tune how a table is opened. The zero value is what a Postfix daemon
// would use.
type Options struct {
	// Warn receives warnings found while loading a table. Nil logs them
	// through Logger at level Warn.
	Warn func(Warning)
	// Logger is used for warnings when Warn is nil; nil means slog.Default().
	Logger *slog.Logger
	// NoSubstitution opens pattern tables the way alias_maps and virtual(8)
	// do: rules whose result uses $1..$9 are skipped with a warning.
	NoSubstitution bool
	// NoFold keeps key case at build time (postmap -f). Lookups still fold.
	NoFold bool
	// Registry opens nested tables (unionmap:, pipemap:, proxy:). Nil means
	// the registry that is opening this table.
	Registry *Registry
	// Aliases says the source file is in aliases(5) format (postalias,
	// alias_maps) rather than postmap's "key value" format.
	Aliases bool
	// Duplicates says which record a source-text table (hash, btree, lmdb,
	// dbm, texthash) keeps for a repeated key. Postfix decides this when
	// postmap builds the index (-r keeps the last, -w the first, silently);
	// postkit reads the source, so it decides at open time. The zero value
	// keeps the first with a warning, as a plain postmap build does.
	Duplicates Duplicates
	// Create asks a writable table type to create or truncate its store
	// (postmap building a table). Ignored by read-only types.
	Create bool
}

func (o *Options) warn(w Warning) {
	if o.Warn != nil {
		o.Warn(w)
		return
	}
	l := o.Logger
	if l == nil {
		l = slog.Default()
	}
	l.Warn(w.String())
}

// Warnf reports a warning through the options' Warn hook or logger.
func (o *Options) Warnf(file string, line int, format string, args ...any) {
	o.warn(Warning{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Opener opens a table of one type. name is the part after "type:" (a file
// path, "{...}" inline text, or a type-specific string).
type Opener func(ctx context.Context, name string, opts Options) (Map, error)

// Registry maps table type names to openers. The zero value is empty; use
// NewRegistry for one with every built-in type. A Registry is safe for
// concurrent use.
type Registry struct {
	mu      sync.RWMutex
	openers map[string]Opener
}

// Register adds or replaces the opener for a table type.
func (r *Registry) Register(typ string, open Opener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.openers == nil {
		r.openers = make(map[string]Opener)
	}
	r.openers[typ] = open
}

// Types lists the registered type names, sorted (postconf -m).
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.openers))
	for t := range r.openers {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// SplitSpec splits "type:name" into its parts. It fails when there is no
// colon or the type is empty.
func SplitSpec(spec string) (typ, name string, err error) {
	i := strings.IndexByte(spec, ':')
	if i <= 0 {
		return "", "", fmt.Errorf("maps: %q: need type:name", spec)
	}
	return spec[:i], spec[i+1:], nil
}

// Open opens the table named by spec ("type:name").
func (r *Registry) Open(ctx context.Context, spec string, opts Options) (Map, error) {
	typ, name, err := SplitSpec(spec)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	open := r.openers[typ]
	r.mu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("maps: %s: unsupported dictionary type: %s", spec, typ)
	}
	if opts.Registry == nil {
		opts.Registry = r
	}
	return open(ctx, name, opts)
}

var (
	defaultOnce sync.Once
	defaultReg  *Registry
)

// Default returns the process-wide registry with every built-in type, created
// on first use. Types registered on it are visible to Open.
func Default() *Registry {
	defaultOnce.Do(func() { defaultReg = NewRegistry() })
	return defaultReg
}

// Open opens spec with the default registry and zero Options.
func Open(ctx context.Context, spec string) (Map, error) {
	return Default().Open(ctx, spec, Options{})
}

// Close closes m if it holds resources (SQL pools, files).
func Close(m Map) error {
	if c, ok := m.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
