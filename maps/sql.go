package maps

// SQL lookup tables: pgsql:, mysql: and sqlite:, configured by a Postfix
// ".cf" file (pgsql_table(5), mysql_table(5), sqlite_table(5)).
//
// What Postfix does and postkit does too:
//
//   - The tables are fixed-key tables (Postfix opens them with
//     DICT_FLAG_FIXED; its "partial key" switch is compiled out), and every
//     daemon and postmap pass DICT_FLAG_FOLD_FIX, so the key is folded to
//     lower case before it is put into the query. Results are not folded.
//   - A key that is not valid UTF-8 is not looked up (not found).
//   - "domain" limits lookups to keys user@domain with a non-empty user and
//     a domain in the list; other keys are not found without a query.
//   - The query is skipped (not found) when the key lacks a part the query
//     or result_format needs (see sql_expand.go).
//   - Every column of every row (pgsql, mysql) or the first column of every
//     row (sqlite) is formatted by result_format and the pieces are joined
//     with commas. Empty values are skipped with a warning; NULLs are
//     skipped silently (pgsql reads NULL as empty, so it warns there too).
//     Nothing left means "not found".
//   - More values than expansion_limit is a temporary error.
//   - hosts are tried in random order, UNIX sockets first and hosts already
//     in use before new ones; a host that cannot be reached is left alone
//     for retry_interval (60 s) while the others are used. A query error is
//     a temporary error after every host has been tried.
//
// Where postkit differs, on purpose:
//
//   - A query error on a live server does not take that server out of
//     rotation for a minute (Postfix closes the connection and does); the
//     next host is still tried for that lookup.
//   - Each lookup has a timeout (10 s per host, connecting 5 s) besides the
//     caller's context; Postfix has none for pgsql.
//   - sqlite: the database is opened read-only and never created.
//   - mysql: sessions run without NO_BACKSLASH_ESCAPES so that key escaping
//     is always the backslash form; the "obsolete main.cf parameters" form
//     (a table name that does not start with "/" or ".") is not supported;
//     with no option_file, the default my.cnf files are not read.
//   - A key holding a NUL byte is not looked up (a Postfix key is a C string
//     and cannot hold one).

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits on the connection pools and the time spent per lookup.
const (
	sqlMaxOpenConns    = 16
	sqlMaxIdleConns    = 4
	sqlConnMaxLifetime = 30 * time.Minute
	sqlDefaultIdle     = 60 * time.Second // Postfix closes idle connections after about a minute
	sqlDefaultRetry    = 60 * time.Second // Postfix's retry interval for a failed host
	sqlConnectTimeout  = 5 * time.Second
	sqlQueryTimeout    = 10 * time.Second
)

// openPgSQL opens "pgsql:/etc/postfix/file.cf" (pgsql_table(5)).
func openPgSQL(ctx context.Context, name string, opts Options) (Map, error) {
	return sqlOpen(ctx, "pgsql", name, opts)
}

// openMySQL opens "mysql:/etc/postfix/file.cf" (mysql_table(5)).
func openMySQL(ctx context.Context, name string, opts Options) (Map, error) {
	return sqlOpen(ctx, "mysql", name, opts)
}

// openSQLite opens "sqlite:/etc/postfix/file.cf" (sqlite_table(5)).
func openSQLite(ctx context.Context, name string, opts Options) (Map, error) {
	return sqlOpen(ctx, "sqlite", name, opts)
}

// sqlParam is one "name = value" setting of a .cf file.
type sqlParam struct {
	value string
	line  int
}

// sqlConf is a parsed .cf file: main.cf syntax, values used as written (no
// $name expansion), the last setting of a name winning.
type sqlConf struct {
	file   string
	params map[string]sqlParam
}

// sqlParseConf reads a .cf file's text. Logical lines follow main.cf rules
// (postconf(5)): lines starting with white space continue the previous one;
// blank lines and lines starting with '#' are ignored.
func sqlParseConf(file string, data []byte, opts *Options) (*sqlConf, error) {
	c := &sqlConf{file: file, params: make(map[string]sqlParam)}
	var cur strings.Builder
	curLine := 0
	flush := func() error {
		if curLine == 0 {
			return nil
		}
		text := cur.String()
		line := curLine
		cur.Reset()
		curLine = 0
		eq := strings.IndexByte(text, '=')
		if eq < 0 {
			return fmt.Errorf("maps: %s, line %d: missing '=' after attribute name: %q", file, line, text)
		}
		name := strings.TrimSpace(text[:eq])
		if name == "" {
			return fmt.Errorf("maps: %s, line %d: missing attribute name: %q", file, line, text)
		}
		if strings.ContainsAny(name, " \t") {
			return fmt.Errorf("maps: %s, line %d: bad attribute name %q", file, line, name)
		}
		if old, ok := c.params[name]; ok && opts != nil {
			opts.Warnf(file, line, "overriding earlier entry for %q (line %d)", name, old.line)
		}
		c.params[name] = sqlParam{value: strings.TrimSpace(text[eq+1:]), line: line}
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		raw := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimLeft(raw, " \t\r\n\v\f")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if trimmed != raw { // continuation
			if curLine == 0 {
				if opts != nil {
					opts.Warnf(file, n, "logical line must not start with whitespace: %q", raw)
				}
				continue
			}
			cur.WriteString(raw)
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		cur.WriteString(raw)
		curLine = n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("maps: %s, line %d: %w", file, n+1, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return c, nil
}

// has reports whether name is set (even to the empty string).
func (c *sqlConf) has(name string) bool { _, ok := c.params[name]; return ok }

// str returns the value of name, or def when it is not set.
func (c *sqlConf) str(name, def string) string {
	if p, ok := c.params[name]; ok {
		return p.value
	}
	return def
}

// errorf makes an error naming the file, the line of parameter name and name.
func (c *sqlConf) errorf(name, format string, args ...any) error {
	if p, ok := c.params[name]; ok {
		return fmt.Errorf("maps: %s, line %d: parameter %s: %s", c.file, p.line, name, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("maps: %s: parameter %s: %s", c.file, name, fmt.Sprintf(format, args...))
}

// int returns an integer parameter no smaller than min.
func (c *sqlConf) int(name string, def, min int) (int, error) {
	p, ok := c.params[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(p.value)
	if err != nil {
		return 0, c.errorf(name, "bad numerical configuration: %q", p.value)
	}
	if n < min {
		return 0, c.errorf(name, "invalid value %d < %d", n, min)
	}
	return n, nil
}

// bool returns a yes/no parameter (Postfix accepts yes/no/true/false in
// any case).
func (c *sqlConf) bool(name string, def bool) (bool, error) {
	p, ok := c.params[name]
	if !ok {
		return def, nil
	}
	switch strings.ToLower(p.value) {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, c.errorf(name, "bad boolean configuration: %q", p.value)
}

// sqlKnownParams lists the parameters each table type reads. Others are
// ignored, as Postfix ignores them; postkit warns so typos are seen.
var sqlKnownParams = map[string][]string{
	"pgsql": {"hosts", "user", "password", "dbname", "query", "result_format", "domain",
		"expansion_limit", "table", "select_field", "where_field", "additional_conditions",
		"select_function"},
	"mysql": {"hosts", "user", "password", "dbname", "query", "result_format", "domain",
		"expansion_limit", "table", "select_field", "where_field", "additional_conditions",
		"option_file", "option_group", "require_result_set", "tls_cert_file", "tls_key_file",
		"tls_CAfile", "tls_CApath", "tls_verify_cert", "tls_ciphers", "idle_interval",
		"retry_interval"},
	"sqlite": {"dbpath", "query", "result_format", "domain", "expansion_limit",
		"table", "select_field", "where_field", "additional_conditions"},
}

// sqlRow is one result row; a nil cell is SQL NULL.
type sqlRow []*string

// sqlConnError marks a failure to reach a server (as opposed to an error
// the server returned for the query): the host is then left alone for the
// retry interval.
type sqlConnError struct{ err error }

func (e *sqlConnError) Error() string { return e.err.Error() }
func (e *sqlConnError) Unwrap() error { return e.err }

// sqlFatalError marks an error that trying again will not cure (an SQLite
// query that does not compile); Postfix stops the process on it.
type sqlFatalError struct{ err error }

func (e *sqlFatalError) Error() string { return e.err.Error() }
func (e *sqlFatalError) Unwrap() error { return e.err }

// sqlHost is one entry of "hosts" (or the sqlite database) with its pool.
type sqlHost struct {
	label string // as written in "hosts"
	unix  bool   // UNIX-domain socket: tried before TCP hosts
	db    *sql.DB
	// query expands the query with this connection's quoting and runs it.
	query func(ctx context.Context, expand func(quote func(string) string) string) ([]sqlRow, error)

	mu        sync.Mutex
	active    bool      // a query has succeeded and the host has not failed since
	downUntil time.Time // not tried before this time after a connection failure
}

// sqlMap is an open SQL table.
type sqlMap struct {
	typ, file string
	tmpl      sqlTemplates
	domain    *sqlDomainList
	limit     int
	hosts     []*sqlHost
	retry     time.Duration
	timeout   time.Duration
	// firstColumnOnly: sqlite reads only the first column of each row.
	firstColumnOnly bool
	// nullIsEmpty: libpq returns NULL as "", which then draws the empty
	// result warning; the other clients skip NULL silently.
	nullIsEmpty bool
	opts        Options
}

// Name implements Named.
func (m *sqlMap) Name() string { return m.typ + ":" + m.file }

// Kind implements Kinder: SQL tables are fixed-key tables.
func (m *sqlMap) Kind() Kind { return Fixed }

// Close closes the connection pools.
func (m *sqlMap) Close() error {
	var errs []error
	for _, h := range m.hosts {
		if err := h.db.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.domain != nil {
		errs = append(errs, m.domain.close())
	}
	return errors.Join(errs...)
}

func (m *sqlMap) warnf(format string, args ...any) {
	m.opts.Warnf("", 0, format, args...)
}

// sqlOpen reads the .cf file and builds the table; it does not connect.
func sqlOpen(ctx context.Context, typ, name string, opts Options) (Map, error) {
	if name == "" || (name[0] != '/' && name[0] != '.') {
		return nil, fmt.Errorf("maps: %s:%s: the obsolete main.cf form of SQL table parameters is not supported; give the path of a .cf file", typ, name)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("maps: %s:%s: %w", typ, name, err)
	}
	conf, err := sqlParseConf(name, data, &opts)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool)
	for _, p := range sqlKnownParams[typ] {
		known[p] = true
	}
	for k, p := range conf.params {
		if !known[k] {
			opts.Warnf(name, p.line, "%s: unknown parameter %q is ignored", typ, k)
		}
	}
	m := &sqlMap{typ: typ, file: name, opts: opts, retry: sqlDefaultRetry, timeout: sqlQueryTimeout}
	if err := m.configure(conf); err != nil {
		return nil, err
	}
	if spec := conf.str("domain", ""); spec != "" {
		reg := opts.Registry
		if reg == nil {
			reg = Default()
		}
		d, err := sqlParseDomainList(ctx, spec, reg, opts)
		if err != nil {
			return nil, conf.errorf("domain", "%v", err)
		}
		m.domain = d
	}
	switch typ {
	case "pgsql":
		m.nullIsEmpty = true
		err = m.setupPgSQL(conf)
	case "mysql":
		err = m.setupMySQL(conf)
	case "sqlite":
		m.firstColumnOnly = true
		err = m.setupSQLite(conf)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// configure reads the parameters every SQL type shares.
func (m *sqlMap) configure(conf *sqlConf) error {
	query, err := sqlBuildQuery(m.typ, conf)
	if err != nil {
		return err
	}
	m.tmpl.query = query
	if err := m.tmpl.sqlParseTemplate(query, true); err != nil {
		name := "query"
		if !conf.has("query") {
			name = "select_field"
		}
		return conf.errorf(name, "invalid query template %q: %v", query, err)
	}
	m.tmpl.result = conf.str("result_format", "%s")
	if err := m.tmpl.sqlParseTemplate(m.tmpl.result, false); err != nil {
		return conf.errorf("result_format", "invalid result template %q: %v", m.tmpl.result, err)
	}
	if m.limit, err = conf.int("expansion_limit", 0, 0); err != nil {
		return err
	}
	return nil
}

// sqlBuildQuery returns "query", or the query Postfix builds from the
// obsolete parameters when it is not set (pgsql_table(5), "OBSOLETE QUERY
// INTERFACES"): pgsql's select_function first, then
// SELECT select_field FROM table WHERE where_field='%s' additional_conditions.
func sqlBuildQuery(typ string, conf *sqlConf) (string, error) {
	if conf.has("query") {
		return conf.str("query", ""), nil
	}
	if typ == "pgsql" && conf.has("select_function") {
		return "SELECT " + conf.str("select_function", "") + "('%s')", nil
	}
	var parts [3]string
	for i, p := range []string{"table", "select_field", "where_field"} {
		parts[i] = conf.str(p, "")
		if parts[i] == "" {
			return "", fmt.Errorf("maps: %s: neither 'query' nor the obsolete '%s' parameter is defined", conf.file, p)
		}
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s='%%s' %s",
		parts[1], parts[0], parts[2], conf.str("additional_conditions", "")), nil
}

// sqlSplitHosts splits "hosts" at commas and white space.
func sqlSplitHosts(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
}

// Lookup implements Map.
func (m *sqlMap) Lookup(ctx context.Context, key string) (string, bool, error) {
	if strings.IndexByte(key, 0) >= 0 || !utf8.ValidString(key) {
		return "", false, nil
	}
	key = FoldKey(key)
	if m.domain != nil {
		ok, err := m.domain.match(ctx, key)
		if err != nil {
			return "", false, &Error{Map: m.Name(), Key: key, Temporary: true, Err: err}
		}
		if !ok {
			return "", false, nil
		}
	}
	if key == "" {
		m.warnf("table %q: empty query string -- ignored", m.Name())
		return "", false, nil
	}
	if _, ok := m.tmpl.sqlExpandQuery(key, nil); !ok {
		return "", false, nil
	}
	rows, err := m.run(ctx, key)
	if err != nil {
		var fatal *sqlFatalError
		return "", false, &Error{Map: m.Name(), Key: key, Temporary: !errors.As(err, &fatal), Err: err}
	}
	var b strings.Builder
	n := 0
	for _, row := range rows {
		if m.firstColumnOnly && len(row) > 1 {
			row = row[:1]
		}
		for _, cell := range row {
			v := ""
			if cell != nil {
				v = *cell
			} else if !m.nullIsEmpty {
				continue
			}
			if v == "" {
				m.warnf("table %q: empty lookup result for: %q -- ignored", m.Name(), key)
				continue
			}
			if !m.tmpl.sqlExpandResult(&b, v, key) {
				continue
			}
			n++
			if m.limit > 0 && n > m.limit {
				m.warnf("%s: %s: Expansion limit exceeded for key: '%s'", m.typ, m.file, key)
				return "", false, &Error{Map: m.Name(), Key: key, Temporary: true,
					Err: fmt.Errorf("more than expansion_limit = %d results", m.limit)}
			}
		}
	}
	if b.Len() == 0 {
		return "", false, nil
	}
	return b.String(), true, nil
}

// order returns the hosts to try: those in use before new ones, UNIX
// sockets before TCP, random within each group, skipping hosts that failed
// less than the retry interval ago (mysql_table(5), "hosts").
func (m *sqlMap) order(now time.Time) []*sqlHost {
	var groups [4][]*sqlHost
	for _, h := range m.hosts {
		h.mu.Lock()
		active, down := h.active, now.Before(h.downUntil)
		h.mu.Unlock()
		if down {
			continue
		}
		g := 0
		if !active {
			g += 2
		}
		if !h.unix {
			g++
		}
		groups[g] = append(groups[g], h)
	}
	out := make([]*sqlHost, 0, len(m.hosts))
	for _, g := range groups {
		rand.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
		out = append(out, g...)
	}
	return out
}

// run sends the query for key to the hosts in turn until one answers.
func (m *sqlMap) run(ctx context.Context, key string) ([]sqlRow, error) {
	hosts := m.order(time.Now())
	if len(hosts) == 0 {
		return nil, fmt.Errorf("no database server available: every host failed less than %v ago", m.retry)
	}
	expand := func(quote func(string) string) string {
		q, _ := m.tmpl.sqlExpandQuery(key, quote)
		return q
	}
	var errs []error
	for _, h := range hosts {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		hctx, cancel := context.WithTimeout(ctx, m.timeout)
		rows, err := h.query(hctx, expand)
		timedOut := hctx.Err() != nil
		cancel()
		if err == nil {
			h.mu.Lock()
			h.active = true
			h.mu.Unlock()
			return rows, nil
		}
		var ce *sqlConnError
		if errors.As(err, &ce) && !timedOut {
			h.mu.Lock()
			h.active = false
			h.downUntil = time.Now().Add(m.retry)
			h.mu.Unlock()
			m.warnf("connect to %s server %s: %v", m.typ, h.label, err)
		} else {
			m.warnf("%s query failed on %s: %v", m.typ, h.label, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", h.label, err))
		var fatal *sqlFatalError
		if errors.As(err, &fatal) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// sqlDomainList is the "domain" parameter: a Postfix string list of domain
// names, "/file" names (read for more names), "type:table" lookups and
// "!" negations; the first item that matches decides (postconf(5),
// "Postfix lists").
type sqlDomainList struct {
	items []sqlDomainItem
}

type sqlDomainItem struct {
	neg   bool
	name  string // folded literal
	table Map
}

func sqlParseDomainList(ctx context.Context, spec string, reg *Registry, opts Options) (*sqlDomainList, error) {
	d := &sqlDomainList{}
	var add func(spec string, depth int) error
	add = func(spec string, depth int) error {
		if depth > 10 {
			return errors.New("files nested too deeply")
		}
		for _, item := range sqlSplitHosts(spec) {
			neg := false
			for strings.HasPrefix(item, "!") {
				neg = !neg
				item = item[1:]
			}
			switch {
			case item == "":
				return errors.New("missing pattern after '!'")
			case item[0] == '/':
				data, err := os.ReadFile(item)
				if err != nil {
					return err
				}
				var words []string
				for _, line := range strings.Split(string(data), "\n") {
					if t := strings.TrimSpace(line); t != "" && t[0] != '#' {
						words = append(words, t)
					}
				}
				if err := add(strings.Join(words, " "), depth+1); err != nil {
					return err
				}
			case item[0] != '[' && strings.Contains(item, ":"):
				t, err := reg.Open(ctx, item, opts)
				if err != nil {
					return err
				}
				d.items = append(d.items, sqlDomainItem{neg: neg, table: t})
			default:
				d.items = append(d.items, sqlDomainItem{neg: neg, name: FoldKey(item)})
			}
		}
		return nil
	}
	if err := add(spec, 0); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// match reports whether the key is user@domain with a non-empty user and
// a domain on the list (pgsql_table(5), "domain").
func (d *sqlDomainList) match(ctx context.Context, key string) (bool, error) {
	local, domain, hasAt := sqlSplitAddr(key)
	if !hasAt || local == "" {
		return false, nil
	}
	for _, it := range d.items {
		if it.table != nil {
			_, ok, err := it.table.Lookup(ctx, domain)
			if err != nil {
				return false, err
			}
			if ok {
				return !it.neg, nil
			}
			continue
		}
		if it.name == domain {
			return !it.neg, nil
		}
	}
	return false, nil
}

func (d *sqlDomainList) close() error {
	var errs []error
	for _, it := range d.items {
		if it.table != nil {
			errs = append(errs, Close(it.table))
		}
	}
	return errors.Join(errs...)
}

// sqlConfigurePool applies the pool limits.
func sqlConfigurePool(db *sql.DB, idle time.Duration) {
	db.SetMaxOpenConns(sqlMaxOpenConns)
	db.SetMaxIdleConns(sqlMaxIdleConns)
	db.SetConnMaxIdleTime(idle)
	db.SetConnMaxLifetime(sqlConnMaxLifetime)
}
