package maps

import (
	"context"
	"fmt"
)

// List is the tables of one parameter (virtual_alias_maps = hash:a,
// regexp:b), searched the way Postfix's maps_find searches them: for each
// candidate key in turn, every table is asked before the next, less
// specific key is tried (postconf(5), virtual(5) "TABLE SEARCH ORDER"). So a
// match for user@domain in the second table beats a match for @domain in
// the first.
//
// Derived keys (Key.Partial) are given only to fixed-key tables; regexp,
// pcre and cidr tables see only whole keys. The first table error stops the
// search and is returned (its Temporary flag kept). An empty value is an
// error wrapping ErrEmptyValue, as Postfix treats it as a broken table.
type List []Map

// Key is one lookup key of a search strategy.
type Key struct {
	// Text is the key as given to the tables (they fold case themselves).
	Text string
	// Partial marks a key derived from the input (the address without its
	// extension, @domain, a parent domain, a shortened IP); only Fixed
	// tables are asked it.
	Partial bool
	// Step says which step of the strategy produced the key.
	Step Step
	// Ext is the extension (with its delimiter) that was stripped from the
	// input to make this key, or "". A match on such a key is what
	// propagate_unmatched_extensions acts on.
	Ext string
}

// Result is a successful lookup: the value and how it was found.
type Result struct {
	Value string
	// Key is the key that matched.
	Key Key
	// Map is the table that answered and Index its position in the List.
	Map   Map
	Index int
}

// Partial reports whether the match was on a derived key.
func (r Result) Partial() bool { return r.Key.Partial }

// Extension is the extension stripped to find the match ("" if none).
func (r Result) Extension() string { return r.Key.Ext }

// Lookup asks every table for one key: tables in order, skipping pattern
// tables when the key is partial.
func (l List) Lookup(ctx context.Context, k Key) (Result, bool, error) {
	if k.Text == "" {
		// Postfix never looks up an empty key.
		return Result{}, false, nil
	}
	for i, m := range l {
		if k.Partial && KindOf(m) != Fixed {
			continue
		}
		v, ok, err := m.Lookup(ctx, k.Text)
		if err != nil {
			return Result{}, false, listErr(m, k.Text, err)
		}
		if !ok {
			continue
		}
		if v == "" {
			return Result{}, false, &Error{Map: listName(m), Key: k.Text, Err: ErrEmptyValue}
		}
		return Result{Value: v, Key: k, Map: m, Index: i}, true, nil
	}
	return Result{}, false, nil
}

// Find looks up one whole (non-partial) key in every table.
func (l List) Find(ctx context.Context, key string) (Result, bool, error) {
	return l.Lookup(ctx, Key{Text: key, Step: StepFull})
}

// FindKeys tries keys in order, each in every table, and returns the first
// match.
func (l List) FindKeys(ctx context.Context, keys []Key) (Result, bool, error) {
	for _, k := range keys {
		r, ok, err := l.Lookup(ctx, k)
		if err != nil || ok {
			return r, ok, err
		}
	}
	return Result{}, false, nil
}

// findSeq runs a key generator against the list, stopping at the first
// match or error. The generator stops early when yield returns false.
func (l List) findSeq(ctx context.Context, gen func(yield func(Key) bool) error) (Result, bool, error) {
	var (
		res   Result
		found bool
		lerr  error
	)
	err := gen(func(k Key) bool {
		res, found, lerr = l.Lookup(ctx, k)
		return lerr == nil && !found
	})
	if lerr != nil {
		return Result{}, false, lerr
	}
	if err != nil {
		return Result{}, false, err
	}
	return res, found, nil
}

func listName(m Map) string {
	if n, ok := m.(Named); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", m)
}

// listErr keeps a table's own *Error (with its Temporary flag) and wraps
// anything else, keeping temporariness that the error itself reports.
func listErr(m Map, key string, err error) error {
	if _, ok := err.(*Error); ok {
		return err
	}
	return &Error{Map: listName(m), Key: key, Temporary: IsTemporary(err), Err: err}
}
