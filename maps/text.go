package maps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

// Postfix's indexed table types (hash, btree, lmdb, dbm, sdbm) keep their
// data in a binary index that postmap(1) or postalias(1) builds from a
// source text file: hash:/etc/postfix/virtual is read from
// /etc/postfix/virtual.db. postkit does not read Berkeley DB, LMDB or dbm
// files. It reads the source text next to the index, /etc/postfix/virtual,
// with postmap's rules (or postalias's, for alias tables), holds it in
// memory, and notices when the file changes, so an admin who edits the file
// and runs postmap sees the change in postkit too.
//
// texthash:/file (postmap(1): "a read-only table that is read from a
// postmap-format text file") is the same table without reloading: Postfix
// reads it once, when the process opens it.

// txtIndexSuffix is the index file Postfix would open for each type; it is
// only used in messages, and in duplicate-key warnings as postmap prints them.
var txtIndexSuffix = map[string]string{
	"hash":  ".db",
	"btree": ".db",
	"lmdb":  ".lmdb",
	"dbm":   ".dir",
	"sdbm":  ".dir",
}

func openHash(ctx context.Context, name string, opts Options) (Map, error) {
	return txtOpen("hash", name, opts, true)
}

func openBtree(ctx context.Context, name string, opts Options) (Map, error) {
	return txtOpen("btree", name, opts, true)
}

func openLMDB(ctx context.Context, name string, opts Options) (Map, error) {
	return txtOpen("lmdb", name, opts, true)
}

// openDBM serves both dbm: and sdbm:; the registry cannot tell us which was
// asked for, so the table calls itself dbm.
func openDBM(ctx context.Context, name string, opts Options) (Map, error) {
	return txtOpen("dbm", name, opts, true)
}

func openTexthash(ctx context.Context, name string, opts Options) (Map, error) {
	return txtOpen("texthash", name, opts, false)
}

// txtTable is a table read from a postmap or postalias source file.
type txtTable struct {
	typ, path string
	opts      Options
	reload    bool
	dups      Duplicates // which record of a repeated key is kept

	data  atomic.Pointer[txtData]
	watch fileWatch   // when reload is set
	busy  atomic.Bool // a check or reload is running
}

// txtData is one loaded version of the file. It is never modified once
// published, so lookups read it without locks.
type txtData struct {
	m       map[string]string
	records []Record // deduplicated, in file order
	// Every lookup reads m. The padding makes txtData a 64-byte object,
	// which the allocator places alone in a cache line: a smaller one
	// shares its line with other small objects, and one written often
	// (the testing.PB of BenchmarkTextHashLookupParallel was) makes every
	// core reload the line on every lookup.
	_ [32]byte
}

// txtOpen opens a table that keeps the record opts.Duplicates says for a
// repeated key.
func txtOpen(typ, name string, opts Options, reload bool) (Map, error) {
	dups := opts.Duplicates
	if name == "" {
		return nil, fmt.Errorf("maps: %s:: need a file name", typ)
	}
	t := &txtTable{typ: typ, path: name, opts: opts, reload: reload, dups: dups}
	d, st, err := t.load()
	if err != nil {
		return nil, err
	}
	t.data.Store(d)
	if reload {
		t.watch.init(name, st)
	}
	return t, nil
}

// load reads and parses the source file; it also returns the stamp of the
// version read.
func (t *txtTable) load() (*txtData, fileStamp, error) {
	f, err := os.Open(t.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && t.typ != "texthash" {
			return nil, fileStamp{}, fmt.Errorf("maps: %s:%s: %w (postkit reads the source file %s next to the index %s%s, not the index)",
				t.typ, t.path, err, t.path, t.path, txtIndexSuffix[t.typ])
		}
		return nil, fileStamp{}, fmt.Errorf("maps: %s:%s: %w", t.typ, t.path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("maps: %s:%s: %w", t.typ, t.path, err)
	}
	var sb strings.Builder
	if info.Size() > 0 {
		sb.Grow(int(info.Size()) + 1)
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := f.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	// Reading through a Builder avoids a second copy of a large file.
	data := sb.String()
	dupFile := t.path + txtIndexSuffix[t.typ]
	if t.typ == "lmdb" {
		dupFile = "lmdb:" + t.path
	}
	dd := srcNewDeduper(t.path, &t.opts, DedupeOptions{Duplicates: t.dups, Label: dupFile, Texthash: t.typ == "texthash"}, strings.Count(data, "\n")+1)
	srcParse(data, t.path, &t.opts, t.typ == "texthash", dd.add)
	out := dd.out
	m := make(map[string]string, len(out))
	for _, r := range out {
		m[r.Key] = r.Value
	}
	// postalias stores the sendmail marker "@: @" after the file's records;
	// a file that has its own "@" keeps it, with postalias's warning.
	if _, ok := m["@"]; ok && t.opts.Aliases && t.dups == DuplicatesWarn {
		t.opts.warn(Warning{File: dupFile, Msg: `duplicate entry: "@"`})
	}
	return &txtData{m: m, records: out}, stampOfInfo(info), nil
}

// Lookup implements Map. The key is folded as Postfix folds fixed-table
// queries; an empty key, or one that is not valid UTF-8, is never found
// (Postfix warns and answers "not found").
func (t *txtTable) Lookup(_ context.Context, key string) (string, bool, error) {
	if t.reload && t.watch.due() {
		t.maybeReload()
	}
	if key == "" {
		return "", false, nil
	}
	if txtHasHigh(key) && !utf8.ValidString(key) {
		return "", false, nil
	}
	v, ok := t.data.Load().m[FoldKey(key)]
	return v, ok, nil
}

func txtHasHigh(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// maybeReload looks at the file, which Lookup asks for at most once a
// watchInterval (fileWatch.due). The look (a stat) and any reload run in a goroutine of their own, so lookups never
// wait for them; they keep using the current contents until the new ones
// are published. A reload that fails keeps the old contents and logs why.
func (t *txtTable) maybeReload() {
	if !t.busy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer t.busy.Store(false)
		t.checkNow()
	}()
}

// checkNow reloads the file if it changed (inode, size or mtime).
func (t *txtTable) checkNow() {
	changed, err := t.watch.changed()
	if err != nil {
		t.opts.warn(Warning{File: t.path, Msg: fmt.Sprintf("cannot reload %s:%s, keeping the loaded contents: %v", t.typ, t.path, err)})
		return
	}
	if !changed {
		return
	}
	d, st, err := t.load()
	if err != nil {
		t.opts.warn(Warning{File: t.path, Msg: fmt.Sprintf("cannot reload, keeping the loaded contents: %v", err)})
		return
	}
	t.watch.set(st)
	t.data.Store(d)
}

// Kind implements Kinder: these are fixed-key tables.
func (t *txtTable) Kind() Kind { return Fixed }

// Name implements Named.
func (t *txtTable) Name() string { return t.typ + ":" + t.path }

// Entries implements Iterable, in source-file order. (postmap -s lists a
// hash table in Berkeley DB's order instead.)
func (t *txtTable) Entries(ctx context.Context, yield func(Entry) bool) error {
	for _, r := range t.data.Load().records {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !yield(Entry{r.Key, r.Value}) {
			break
		}
	}
	return nil
}
