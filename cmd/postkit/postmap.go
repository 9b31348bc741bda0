package main

// postmap(1) and, through the same code, postalias(1).
//
// postkit's hash:, btree:, lmdb:, dbm: and sdbm: tables are read straight
// from their source text file (/etc/postfix/virtual), not from Postfix's
// indexed file (/etc/postfix/virtual.db). So for those types:
//
//   - "postkit postmap hash:/path" checks the source and reports every
//     problem postmap(1) would (same warnings, same exit status) but writes
//     no .db file: there is nothing to rebuild;
//   - "postkit postmap -d KEY hash:/path" removes the key's logical lines
//     from the source file (atomically: a new file renamed over the old);
//   - "postkit postmap -i hash:/path" adds the entries read from standard
//     input to the end of the source file.
//
// cdb: tables are real CDB files: "postkit postmap cdb:/path" writes
// /path.cdb, readable by Postfix, and -d / -i fail as they do in Postfix.
//
// Repeated keys: Postfix keeps one entry per key when it builds a table:
// the first, warning about each later one, by default; the last, silently,
// with -r; the first, silently, with -w. Warnings come in line order, each
// duplicate where postmap meets it. A cdb table built by postkit keeps
// what Postfix's would. A hash-like table has no index to remember the
// flag, and lookups (postkit's daemons, "postmap -q") keep the first
// entry; "postkit postmap -r -q KEY hash:/path" (and -s) answers as the
// table built with -r would. texthash: tables honour -r and -w at query
// time, as in Postfix.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
)

// postmapMain runs "postkit postmap ARGS...". See postmap(1).
func postmapMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return pmNewTool("postmap", false, stdin, stdout, stderr).main(args)
}

// pmUsage is each command's usage line, as Postfix prints it.
var pmUsage = map[string]string{
	"postmap":   "usage: postmap [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] [map_type:]file...",
	"postalias": "usage: postalias [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file...",
}

// pmOptstring is each command's getopt(3) option string.
var pmOptstring = map[string]string{
	"postmap":   "Nbc:d:fFhimnopq:rsuUvw",
	"postalias": "Nc:d:finopq:rsuvw",
}

// pmTextTypes are the types postkit keeps as their source text; Postfix
// keeps them in an indexed file next to the source.
var pmTextTypes = map[string]bool{"hash": true, "btree": true, "lmdb": true, "dbm": true, "sdbm": true}

// pmFatal is an error that ends the command with "NAME: fatal: MSG" and
// exit status 1, as Postfix's msg_fatal does.
type pmFatal string

func (f pmFatal) Error() string { return string(f) }

func pmFatalf(format string, args ...any) error { return pmFatal(fmt.Sprintf(format, args...)) }

// pmSpec is one "type:name" argument.
type pmSpec struct {
	typ, name string
	spec      string // typ + ":" + name
}

// pmTool is one run of postmap or postalias.
type pmTool struct {
	name    string // command name used in messages: postmap, postalias
	aliases bool   // aliases(5) source format (postalias)
	stdin   io.Reader
	out     *bufio.Writer
	stderr  io.Writer
	ctx     context.Context
	reg     *maps.Registry

	// Flags.
	confDir              string
	query, del           *string
	dump, incr           bool
	noFold, base64       bool
	nul                  int             // -N: +1, -n: -1
	dup                  maps.Duplicates // -r, -w
	inherit              bool            // !-p: the .cdb file takes the source's read bits
	bodyQ, headerQ, mime bool

	conf        *config.Config
	quietConfig bool // main.cf warnings are not shown (newaliases)
	specs       []pmSpec
	opened      []maps.Map // lazily opened, parallel to specs
}

func pmNewTool(name string, aliases bool, stdin io.Reader, stdout, stderr io.Writer) *pmTool {
	return &pmTool{
		name: name, aliases: aliases,
		stdin: stdin, out: bufio.NewWriterSize(stdout, 64*1024), stderr: stderr,
		ctx: context.Background(), reg: maps.NewRegistry(), inherit: true,
	}
}

// main runs the command and returns its exit status.
func (t *pmTool) main(args []string) int {
	code, err := t.run(args)
	t.out.Flush()
	if err != nil {
		fmt.Fprintf(t.stderr, "%s: fatal: %s\n", t.name, err.Error())
		return 1
	}
	return code
}

func (t *pmTool) warnf(format string, args ...any) {
	// Keep what is already on standard output ahead of the warning.
	t.out.Flush()
	fmt.Fprintf(t.stderr, "%s: warning: %s\n", t.name, fmt.Sprintf(format, args...))
}

func (t *pmTool) warn(w maps.Warning) { t.warnf("%s", w.String()) }

func (t *pmTool) usage() error { return pmFatal(pmUsage[t.name]) }

// parseFlags reads the options as getopt(3) does without permutation: they
// end at the first non-option argument or at "--".
func (t *pmTool) parseFlags(args []string) ([]string, error) {
	optstring := pmOptstring[t.name]
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			k := strings.IndexByte(optstring, c)
			if c == ':' || k < 0 {
				fmt.Fprintf(t.stderr, "%s: invalid option -- '%c'\n", t.name, c)
				return nil, t.usage()
			}
			var arg string
			if k+1 < len(optstring) && optstring[k+1] == ':' {
				switch {
				case j+1 < len(a):
					arg = a[j+1:]
				case i+1 < len(args):
					i++
					arg = args[i]
				default:
					fmt.Fprintf(t.stderr, "%s: option requires an argument -- '%c'\n", t.name, c)
					return nil, t.usage()
				}
				j = len(a)
			}
			if err := t.flag(c, arg); err != nil {
				return nil, err
			}
		}
	}
	return args[i:], nil
}

func (t *pmTool) flag(c byte, arg string) error {
	switch c {
	case 'c':
		t.confDir = arg
	case 'd', 'q':
		if t.dump || t.query != nil || t.del != nil {
			return pmFatal("specify only one of -s -q or -d")
		}
		if c == 'd' {
			t.del = &arg
		} else {
			t.query = &arg
		}
	case 's':
		if t.query != nil || t.del != nil {
			return pmFatal("specify only one of -s or -q or -d")
		}
		t.dump = true
	case 'f':
		t.noFold = true
	case 'F':
		t.base64 = true
	case 'i':
		t.incr = true
	case 'N':
		t.nul = 1
	case 'n':
		t.nul = -1
	case 'r':
		t.dup = maps.DuplicatesReplace
	case 'w':
		t.dup = maps.DuplicatesIgnore
	case 'p':
		t.inherit = false
	case 'b':
		t.bodyQ = true
	case 'h':
		t.headerQ = true
	case 'm':
		t.mime = true
	case 'o', 'u', 'U', 'v':
		// -o (keep root privileges), -u (no UTF-8 checks), -U and -v
		// (verbose logging) change nothing postkit does.
	}
	return nil
}

func (t *pmTool) run(args []string) (int, error) {
	files, err := t.parseFlags(args)
	if err != nil {
		return 1, err
	}
	dir := t.confDir
	if dir == "" {
		dir = os.Getenv("MAIL_CONFIG")
	}
	if dir == "" {
		dir = "/etc/postfix"
	}
	confWarn := func(w string) { t.warnf("%s", w) }
	if t.quietConfig {
		confWarn = func(string) {}
	}
	if t.conf, err = pmLoadConfig(dir, confWarn); err != nil {
		return 1, pmFatal(pmConfigError(dir, err))
	}
	if (t.bodyQ || t.headerQ || t.mime) && (t.query == nil || *t.query != "-") {
		return 1, pmFatal(`specify -b -h or -m only with "-q -"`)
	}
	if len(files) == 0 {
		return 1, t.usage()
	}
	if t.bodyQ || t.headerQ || t.mime {
		return 1, pmFatal("the -b, -h and -m query modes are not supported yet")
	}
	defType := t.conf.Get("default_database_type")
	for _, f := range files {
		t.specs = append(t.specs, pmParseSpec(f, defType))
	}
	t.opened = make([]maps.Map, len(t.specs))
	switch {
	case t.query != nil && *t.query == "-":
		return t.queryStdin()
	case t.query != nil:
		return t.queryOne(*t.query)
	case t.del != nil && *t.del == "-":
		return t.deleteStdin()
	case t.del != nil:
		return t.deleteKeys([]string{*t.del}, true)
	case t.dump:
		return t.dumpFirst()
	}
	for i := range t.specs {
		var err error
		if t.incr {
			err = t.addEntries(i)
		} else {
			err = t.build(t.specs[i])
		}
		if err != nil {
			return 1, err
		}
	}
	return 0, nil
}

// pmParseSpec splits "type:name"; without a colon the type is
// default_database_type.
func pmParseSpec(arg, defType string) pmSpec {
	if i := strings.IndexByte(arg, ':'); i >= 0 {
		return pmSpec{typ: arg[:i], name: arg[i+1:], spec: arg}
	}
	return pmSpec{typ: defType, name: arg, spec: defType + ":" + arg}
}

// pmStrerror renders an OS error as C's strerror(3) does ("No such file or
// directory"), which is how Postfix prints them.
func pmStrerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// pmErrText is the message of a table error without the "maps: spec"
// prefix, which Postfix's messages put elsewhere.
func pmErrText(err error) string {
	var me *maps.Error
	if errors.As(err, &me) && me.Err != nil {
		return pmStrerror(me.Err)
	}
	return strings.TrimPrefix(pmStrerror(err), "maps: ")
}

func (t *pmTool) known(typ string) bool {
	for _, k := range t.reg.Types() {
		if k == typ {
			return true
		}
	}
	return false
}

func (t *pmTool) mapOptions() maps.Options {
	return maps.Options{Warn: t.warn, NoFold: t.noFold, Aliases: t.aliases}
}

// indexPath is the file Postfix would open to read a table of this type;
// it names the file in "open database" errors.
func pmIndexPath(s pmSpec) string {
	switch s.typ {
	case "hash", "btree":
		return s.name + ".db"
	case "lmdb":
		return s.name + ".lmdb"
	case "cdb":
		return s.name + ".cdb"
	case "dbm", "sdbm":
		return s.name + ".pag"
	}
	return s.name
}

// dupLabel is the name Postfix puts on "duplicate entry" warnings: the
// indexed file it was writing.
func pmDupLabel(s pmSpec) string {
	switch s.typ {
	case "hash", "btree":
		return s.name + ".db"
	case "lmdb":
		return "lmdb:" + s.name
	}
	return s.name
}

// open opens table i on first use. Postfix opens tables lazily when
// querying: "postmap -q KEY hash:a hash:missing" succeeds when hash:a has
// the key.
func (t *pmTool) open(i int) (maps.Map, error) {
	if m := t.opened[i]; m != nil {
		return m, nil
	}
	s := t.specs[i]
	if s.name == "" {
		return nil, pmFatalf(`open dictionary: expecting "type:name" form instead of "%s"`, s.spec)
	}
	if !t.known(s.typ) {
		return nil, pmFatalf("unsupported dictionary type: %s", s.typ)
	}
	// Report a missing file the way Postfix does, naming the file Postfix
	// would have opened.
	switch {
	case pmTextTypes[s.typ] || s.typ == "texthash":
		if _, err := os.Stat(s.name); err != nil {
			return nil, pmFatalf("open database %s: %s", pmIndexPath(s), pmStrerror(err))
		}
	case s.typ == "cdb":
		if _, err := os.Stat(s.name + ".cdb"); err != nil {
			return nil, pmFatalf("open database %s: %s", pmIndexPath(s), pmStrerror(err))
		}
	case s.typ == "regexp" || s.typ == "pcre" || s.typ == "cidr":
		if !strings.HasPrefix(s.name, "{") {
			if _, err := os.Stat(s.name); err != nil {
				return nil, pmFatalf("open %s: %s", s.name, pmStrerror(err))
			}
		}
	}
	// The table is read as it was built: without -f, whose effect on
	// queries is in lookup.
	opts := t.mapOptions()
	opts.NoFold = false
	// postmap -r and -w decide which of a repeated key's records an indexed
	// table keeps when it is built, and how texthash reads its file;
	// postkit's text tables read the source, so a query with the flag gives
	// the answer of a table built with it. Without it the first wins, as
	// after a plain build.
	opts.Duplicates = t.dup
	if pmTextTypes[s.typ] {
		// Postfix reads these from the indexed file, whose problems were
		// reported when it was built; postkit reads the source again and
		// keeps quiet about it.
		opts.Warn = func(maps.Warning) {}
	}
	m, err := t.reg.Open(t.ctx, s.spec, opts)
	if err != nil {
		return nil, pmFatal(pmErrText(err))
	}
	t.opened[i] = m
	return m, nil
}

// lookup asks each table in turn, as postmap -q does, and returns the first
// value found.
func (t *pmTool) lookup(key string) (string, bool, error) {
	for i := range t.specs {
		m, err := t.open(i)
		if err != nil {
			return "", false, err
		}
		kind := maps.KindOf(m)
		// -f: the key is looked up as given. postkit's fixed tables fold
		// every query, and Postfix's tables hold folded keys, so a key with
		// upper case cannot be found.
		if t.noFold && kind == maps.Fixed && maps.FoldKey(key) != key {
			continue
		}
		v, ok, err := m.Lookup(t.ctx, key)
		if err != nil {
			if errors.Is(err, maps.ErrEmptyValue) {
				// Postfix warns and prints the empty value (exit 0).
				if kind == maps.Pattern {
					t.warnf("table %s: key %s: empty string result is not allowed", t.specs[i].spec, key)
				}
				t.warnf("table %s should return NO RESULT in case of NOT FOUND", t.specs[i].spec)
				return "", true, nil
			}
			return "", false, pmFatalf("table %s: query error: %s", t.specs[i].spec, t.queryErrText(t.specs[i], err))
		}
		if ok {
			if t.base64 {
				if d, err := base64.StdEncoding.DecodeString(v); err == nil {
					v = string(d)
				}
			}
			return v, true, nil
		}
	}
	return "", false, nil
}

// queryErrText is the reason printed for a failed lookup: the table's
// error without the "maps: spec" prefix (for fail: tables, "Application
// error", as Postfix prints).
func (t *pmTool) queryErrText(s pmSpec, err error) string {
	return pmErrText(err)
}

// queryOne is "postmap -q KEY": print the value, exit 0; exit 1 if absent.
func (t *pmTool) queryOne(key string) (int, error) {
	v, ok, err := t.lookup(key)
	if err != nil {
		return 1, err
	}
	if !ok {
		return 1, nil
	}
	t.out.WriteString(v)
	t.out.WriteByte('\n')
	return 0, nil
}

// queryStdin is "postmap -q -": one key per input line (the newline
// removed, nothing else; an empty line is the empty key, which static: and
// inline:{ =v } answer), "key<TAB>value" for each key found; exit 0 when
// at least one was found. postalias prints "key:<TAB>value".
func (t *pmTool) queryStdin() (int, error) {
	in := bufio.NewReaderSize(t.stdin, 64*1024)
	var long []byte
	found := false
	sep := "\t"
	if t.aliases {
		sep = ":\t"
	}
	for {
		line, err := in.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = in.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && err != io.EOF {
			return 1, pmFatalf("read standard input: %s", pmStrerror(err))
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		if len(line) > 0 || err == nil {
			key := string(line)
			v, ok, lerr := t.lookup(key)
			if lerr != nil {
				return 1, lerr
			}
			if ok {
				found = true
				t.out.WriteString(key)
				t.out.WriteString(sep)
				t.out.WriteString(v)
				t.out.WriteByte('\n')
			}
		}
		if err == io.EOF {
			break
		}
	}
	if found {
		return 0, nil
	}
	return 1, nil
}

// dumpFirst is "postmap -s": Postfix lists only the first table named.
func (t *pmTool) dumpFirst() (int, error) {
	s := t.specs[0]
	m, err := t.open(0)
	if err != nil {
		return 1, err
	}
	it, ok := m.(maps.Iterable)
	if s.typ == "cdb" {
		// Postfix's cdb tables cannot be listed; postkit says the same.
		return 1, pmFatalf("table cdb:%s.cdb: sequence operation is not supported", s.name)
	}
	if !ok {
		return 1, pmFatalf("table %s: sequence operation is not supported", s.spec)
	}
	sep := "\t"
	if t.aliases {
		sep = ":\t"
	}
	err = it.Entries(t.ctx, func(e maps.Entry) bool {
		if e.Key == "" {
			t.warnf("table %s: empty lookup key value is not allowed", s.spec)
		}
		v := e.Value
		if t.base64 {
			if d, err := base64.StdEncoding.DecodeString(v); err == nil {
				v = string(d)
			}
		}
		t.out.WriteString(e.Key)
		t.out.WriteString(sep)
		t.out.WriteString(v)
		t.out.WriteByte('\n')
		return true
	})
	if err != nil {
		return 1, pmFatalf("table %s: sequence error: %s", s.spec, pmErrText(err))
	}
	return 0, nil
}

// writable checks that a table of this type can be changed with -d, the
// way Postfix's open for update fails.
func (t *pmTool) checkDeletable(s pmSpec) error {
	switch {
	case s.name == "":
		return pmFatalf(`open dictionary: expecting "type:name" form instead of "%s"`, s.spec)
	case !t.known(s.typ):
		return pmFatalf("unsupported dictionary type: %s", s.typ)
	case pmTextTypes[s.typ]:
		if _, err := os.Stat(s.name); err != nil {
			return pmFatalf("open database %s: %s", pmIndexPath(s), pmStrerror(err))
		}
		return nil
	case s.typ == "cdb":
		return pmFatal("dict_cdb_open: inappropriate open flags for cdb database - specify O_RDONLY or O_WRONLY|O_CREAT|O_TRUNC")
	case s.typ == "static":
		return pmFatalf("table %s: delete operation is not supported", s.spec)
	case s.typ == "fail":
		return pmFatalf("table %s: delete error: Application error", s.spec)
	}
	return pmFatalf("%s map requires O_RDONLY access mode", s.spec)
}

// deleteStdin is "postmap -d -": every table is opened first, then each key
// read from standard input is deleted from each.
func (t *pmTool) deleteStdin() (int, error) {
	for _, s := range t.specs {
		if err := t.checkDeletable(s); err != nil {
			return 1, err
		}
	}
	data, err := io.ReadAll(t.stdin)
	if err != nil {
		return 1, pmFatalf("read standard input: %s", pmStrerror(err))
	}
	var keys []string
	for _, k := range strings.Split(string(data), "\n") {
		if k != "" {
			keys = append(keys, k)
		}
	}
	return t.deleteKeys(keys, false)
}

// deleteKeys removes keys from every table: "one entry per map". For a
// text-backed table every logical line holding the key goes, so that no
// later duplicate takes its place. check says the tables still need
// checking (postmap -d KEY checks each as it reaches it).
func (t *pmTool) deleteKeys(keys []string, check bool) (int, error) {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		if !t.noFold {
			k = maps.FoldKey(k)
		}
		want[k] = true
	}
	found := false
	for _, s := range t.specs {
		if check {
			if err := t.checkDeletable(s); err != nil {
				return 1, err
			}
		}
		if len(want) == 0 {
			continue
		}
		recs, err := t.readSourceFile(s.name, nil)
		if err != nil {
			return 1, err
		}
		drop := map[int]bool{}
		for _, r := range recs {
			if want[r.Key] {
				drop[r.Line] = true
			}
		}
		if len(drop) == 0 {
			continue
		}
		found = true
		if err := pmRewriteSource(s.name, drop, nil); err != nil {
			return 1, pmFatalf("update %s: %s", s.name, pmStrerror(err))
		}
	}
	if found {
		return 0, nil
	}
	return 1, nil
}

// readSourceFile parses a source file; warn (nil: discard) gets its warnings.
// The keys are folded: they stand for the keys of an existing table, which
// Postfix would have built without -f.
func (t *pmTool) readSourceFile(path string, warn func(maps.Warning)) ([]maps.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, pmFatalf("open %s: %s", path, pmStrerror(err))
	}
	defer f.Close()
	return t.readSource(f, path, warn, false, nil)
}

// readSource parses entries; noFold (postmap -f) keeps key case. With d
// nil every record is returned; otherwise one per key, with duplicate
// warnings among the others in line order, as Postfix prints them.
func (t *pmTool) readSource(r io.Reader, label string, warn func(maps.Warning), noFold bool, d *maps.DedupeOptions) ([]maps.Record, error) {
	if warn == nil {
		warn = func(maps.Warning) {}
	}
	opts := maps.Options{Warn: warn, NoFold: noFold, Aliases: t.aliases}
	var recs []maps.Record
	var err error
	if d == nil {
		recs, err = pmReadSource(r, label, opts)
	} else {
		recs, err = maps.ReadSourceDeduped(r, label, opts, *d)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, pmFatalf("read %s: %s", label, pmStrerror(err))
		}
		return nil, pmFatalf("%s: %s", label, pmErrText(err))
	}
	return recs, nil
}

// pmUnknownForWrite is Postfix's message for an unknown type when it
// builds or updates a table: Debian ships some types as packages.
func pmUnknownForWrite(typ string) error {
	return pmFatalf("unsupported dictionary type: %s. Is the postfix-%s package installed?", typ, typ)
}

// checkCreatable says whether postmap can build a table of this type.
func (t *pmTool) checkCreatable(s pmSpec) error {
	if pmTextTypes[s.typ] || s.typ == "cdb" {
		return nil
	}
	return pmFatalf("unsupported dictionary type: %s does not support bulk-mode creation.", s.typ)
}

// build is "postmap TYPE:FILE": read the source, report its problems, and
// for cdb write FILE.cdb.
func (t *pmTool) build(s pmSpec) error {
	if !t.known(s.typ) {
		return pmUnknownForWrite(s.typ)
	}
	f, err := os.Open(s.name)
	if err != nil {
		return pmFatalf("open %s: %s", s.name, pmStrerror(err))
	}
	defer f.Close()
	if err := t.checkCreatable(s); err != nil {
		return err
	}
	recs, err := t.readSource(f, s.name, t.warn, t.noFold, &maps.DedupeOptions{Duplicates: t.dup, Label: pmDupLabel(s)})
	if err != nil {
		return err
	}
	if t.base64 {
		if recs, err = pmEncodeFiles(recs); err != nil {
			return err
		}
	}
	if s.typ != "cdb" {
		return nil
	}
	out := s.name + ".cdb"
	if err := pmWriteCDB(out, recs, t.nul > 0); err != nil {
		return pmFatalf("%s: %s", out, pmErrText(err))
	}
	// postmap(1): a new file gets the source's group and other read
	// permissions, or mode 0644 with -p.
	mode := fs.FileMode(0o644)
	if t.inherit {
		if st, err := f.Stat(); err == nil {
			mode = 0o600 | st.Mode().Perm()&0o044
		}
	}
	if err := os.Chmod(out, mode); err != nil {
		return pmFatalf("chmod %s: %s", out, pmStrerror(err))
	}
	return nil
}

// pmEncodeFiles implements postmap -F at build time: each value is a list
// of file names; the value stored is their contents, joined by newlines,
// in base64.
func pmEncodeFiles(recs []maps.Record) ([]maps.Record, error) {
	for i, r := range recs {
		var buf bytes.Buffer
		names := strings.FieldsFunc(r.Value, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' })
		for j, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				return nil, pmFatalf("open %s: %s", n, pmStrerror(err))
			}
			if j > 0 {
				buf.WriteByte('\n')
			}
			buf.Write(data)
		}
		recs[i].Value = base64.StdEncoding.EncodeToString(buf.Bytes())
	}
	return recs, nil
}

// addEntries is "postmap -i TYPE:FILE": entries from standard input are
// added to the table, keeping what is there. Postfix reads standard input
// once, so only the first table gets the entries.
func (t *pmTool) addEntries(i int) error {
	s := t.specs[i]
	switch {
	case s.name == "":
		return pmFatalf(`open dictionary: expecting "type:name" form instead of "%s"`, s.spec)
	case !t.known(s.typ):
		return pmUnknownForWrite(s.typ)
	case s.typ == "cdb":
		return pmFatal("dict_cdb_open: inappropriate open flags for cdb database - specify O_RDONLY or O_WRONLY|O_CREAT|O_TRUNC")
	}
	if err := t.checkCreatable(s); err != nil {
		return err
	}
	if i > 0 {
		return nil
	}
	var old []maps.Record
	if _, err := os.Stat(s.name); err == nil {
		var err error
		if old, err = t.readSourceFile(s.name, nil); err != nil {
			return err
		}
	}
	have := make(map[string]bool, len(old))
	for _, r := range old {
		if !have[r.Key] {
			have[r.Key] = true
		}
	}
	d := maps.DedupeOptions{Duplicates: t.dup, Label: pmDupLabel(s), Have: func(k string) bool { return have[k] }}
	recs, err := t.readSource(t.stdin, "stdin", t.warn, t.noFold, &d)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	if t.base64 {
		if recs, err = pmEncodeFiles(recs); err != nil {
			return err
		}
	}
	drop := map[int]bool{}
	if t.dup == maps.DuplicatesReplace {
		replaced := map[string]bool{}
		for _, r := range recs {
			replaced[r.Key] = true
		}
		for _, r := range old {
			if replaced[r.Key] {
				drop[r.Line] = true
			}
		}
	}
	var add bytes.Buffer
	for _, r := range recs {
		if t.aliases {
			add.WriteString(pmAliasName(r.Key))
			add.WriteString(": ")
		} else {
			add.WriteString(r.Key)
			add.WriteByte(' ')
		}
		add.WriteString(r.Value)
		add.WriteByte('\n')
	}
	if err := pmRewriteSource(s.name, drop, add.Bytes()); err != nil {
		return pmFatalf("update %s: %s", s.name, pmStrerror(err))
	}
	return nil
}

// pmAliasName writes an alias name back in aliases(5) syntax, quoted when it
// holds a character that would end or change the name.
func pmAliasName(k string) string {
	if k != "" && !strings.ContainsAny(k, " \t#:@\",\\") {
		return k
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(k); i++ {
		if k[i] == '"' || k[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(k[i])
	}
	b.WriteByte('"')
	return b.String()
}

// pmRewriteSource replaces path with a copy that lacks the logical lines
// starting at the line numbers in drop and ends with add. A logical line is
// its first line plus the lines after it that start with whitespace;
// comments and blank lines in between are kept. The copy is written to a
// temporary file in the same directory and renamed over path, so readers see
// the old file or the new one, never half of it.
func pmRewriteSource(path string, drop map[int]bool, add []byte) error {
	data, err := os.ReadFile(path)
	mode := fs.FileMode(0o644)
	if err == nil {
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var out bytes.Buffer
	out.Grow(len(data) + len(add))
	dropping := false
	for ln, rest := 1, data; len(rest) > 0; ln++ {
		end := bytes.IndexByte(rest, '\n') + 1
		if end == 0 {
			end = len(rest)
		}
		line := rest[:end]
		rest = rest[end:]
		body := bytes.TrimSpace(line)
		switch {
		case len(body) == 0 || body[0] == '#':
			// Blank lines and comments neither start nor end an entry.
		case line[0] == ' ' || line[0] == '\t':
			// A continuation of the current logical line.
		default:
			dropping = drop[ln]
		}
		if dropping && len(body) > 0 && body[0] != '#' {
			continue
		}
		out.Write(line)
	}
	if len(add) > 0 {
		if out.Len() > 0 && out.Bytes()[out.Len()-1] != '\n' {
			out.WriteByte('\n')
		}
		out.Write(add)
	}
	return pmWriteFileAtomic(path, out.Bytes(), mode)
}

// pmWriteFileAtomic writes data to a temporary file next to path, syncs it,
// and renames it over path. The temporary file is in the same directory,
// otherwise the rename would not be atomic.
func pmWriteFileAtomic(path string, data []byte, mode fs.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".postkit-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
