package auth

// SQL passdb and userdb in Dovecot's style
// (doc.dovecot.org/2.3/configuration_manual/authentication/sql/):
// password_query returns the user's row (a "password" column and any
// extra fields), user_query the userdb fields (home, uid, gid, mail, ...).
//
// The queries use Dovecot's %-variables ('%u', '%n', '%d', %{user} ...).
// Dovecot pastes escaped values into the query text; postkit binds them as
// parameters instead, so no value can change the query: a quoted SQL
// string that contains variables ('%n@%d') becomes one parameter holding
// the expanded string, and a variable outside quotes becomes a parameter
// of its own. Variables are not allowed inside quoted identifiers or
// comments, where a parameter cannot go.
//
// Columns: "password" is the stored password ({SCHEME} prefix optional,
// default_pass_scheme otherwise); "password_noscheme" is one whose leading
// '{' is not a scheme; "user" replaces the user name, "username" and
// "domain" its parts (Dovecot's user-changing fields); every other non-NULL
// column is an extra field (nologin, nopassword, allow_nets, userdb_* ...).
// A password query that returns more than one row is a temporary failure,
// as in Dovecot; the user query uses the first row.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// Dovecot 2.3's defaults for the SQL databases.
const (
	DefaultSQLPasswordQuery = "SELECT username, domain, password FROM users WHERE username = '%n' AND domain = '%d'"
	DefaultSQLUserQuery     = "SELECT home, uid, gid FROM users WHERE username = '%n' AND domain = '%d'"
	DefaultSQLScheme        = "MD5"
)

// SQLConfig configures an SQL database, with the settings of Dovecot's
// dovecot-sql.conf.ext.
type SQLConfig struct {
	// Driver is "pgsql", "mysql" or "sqlite".
	Driver string
	// Connect is Dovecot's connect string. pgsql: libpq's
	// "host=... port=... dbname=... user=... password=..." (several host=
	// are tried in turn) or a postgresql:// URI; mysql: "host=... port=...
	// dbname=... user=... password=..." (host=localhost or a path means
	// the UNIX socket; also connect_timeout, read_timeout, write_timeout,
	// character_set); sqlite: the database file, opened read-only.
	Connect string
	// DB, when set, is used instead of Connect (Driver still says which
	// SQL dialect it speaks); Close leaves it open.
	DB *sql.DB
	// PasswordQuery and UserQuery; empty means Dovecot's defaults
	// (DefaultSQLPasswordQuery, DefaultSQLUserQuery).
	PasswordQuery string
	UserQuery     string
	// DefaultScheme is default_pass_scheme: the scheme of passwords
	// without a {SCHEME} prefix; empty means MD5, Dovecot's default.
	DefaultScheme string
	// QueryTimeout bounds each query besides the caller's context; 0
	// means 10 s.
	QueryTimeout time.Duration
}

// SQLDB is an SQL passdb and userdb, safe for concurrent use.
type SQLDB struct {
	db      *sql.DB
	own     bool
	driver  string
	passQ   *sqlQuery
	userQ   *sqlQuery
	scheme  string
	timeout time.Duration
}

// sqlQuery is a query compiled to placeholders.
type sqlQuery struct {
	raw  string
	text string
	args []*varTemplate
}

// OpenSQL checks the configuration, compiles the queries and opens the
// connection pool (connections are made when first needed).
func OpenSQL(cfg SQLConfig) (*SQLDB, error) {
	d := &SQLDB{driver: cfg.Driver, scheme: strings.ToUpper(cfg.DefaultScheme), timeout: cfg.QueryTimeout}
	if d.scheme == "" {
		d.scheme = DefaultSQLScheme
	}
	if _, _, _, err := lookupScheme(d.scheme); err != nil {
		return nil, fmt.Errorf("auth: sql default_pass_scheme: %w", err)
	}
	if d.timeout <= 0 {
		d.timeout = 10 * time.Second
	}
	pq, uq := cfg.PasswordQuery, cfg.UserQuery
	if pq == "" {
		pq = DefaultSQLPasswordQuery
	}
	if uq == "" {
		uq = DefaultSQLUserQuery
	}
	var err error
	if d.passQ, err = compileSQL(pq, cfg.Driver); err != nil {
		return nil, fmt.Errorf("auth: sql password_query: %w", err)
	}
	if d.userQ, err = compileSQL(uq, cfg.Driver); err != nil {
		return nil, fmt.Errorf("auth: sql user_query: %w", err)
	}
	if cfg.DB != nil {
		d.db = cfg.DB
		return d, nil
	}
	switch cfg.Driver {
	case "pgsql":
		d.db, err = openPgSQL(cfg.Connect)
	case "mysql":
		d.db, err = openMySQL(cfg.Connect)
	case "sqlite":
		d.db, err = openSQLite(cfg.Connect)
	default:
		err = fmt.Errorf("unknown driver %q (pgsql, mysql or sqlite)", cfg.Driver)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: sql: %w", err)
	}
	d.own = true
	d.db.SetMaxOpenConns(16)
	d.db.SetMaxIdleConns(4)
	d.db.SetConnMaxIdleTime(time.Minute)
	return d, nil
}

// Close closes the connection pool (not a DB given in SQLConfig).
func (d *SQLDB) Close() error {
	if d.own {
		return d.db.Close()
	}
	return nil
}

// sqlConnectArgs splits "k=v k=v" (no quoting, as Dovecot's mysql driver
// reads it).
func sqlConnectArgs(s string) ([][2]string, error) {
	var out [][2]string
	for _, w := range strings.Fields(s) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("connect: %q is not key=value", w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// openPgSQL reads a libpq connect string. Dovecot's own "maxconns" is
// dropped and several host= become pgx's host list.
func openPgSQL(connect string) (*sql.DB, error) {
	if strings.HasPrefix(connect, "postgres://") || strings.HasPrefix(connect, "postgresql://") {
		cfg, err := pgx.ParseConfig(connect)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		return stdlib.OpenDB(*cfg), nil
	}
	var hosts, rest []string
	for _, w := range strings.Fields(connect) {
		switch {
		case strings.HasPrefix(w, "host="):
			hosts = append(hosts, w[len("host="):])
		case strings.HasPrefix(w, "maxconns="):
		default:
			rest = append(rest, w)
		}
	}
	if len(hosts) > 0 {
		rest = append(rest, "host="+strings.Join(hosts, ","))
	}
	cfg, err := pgx.ParseConfig(strings.Join(rest, " "))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	return stdlib.OpenDB(*cfg), nil
}

// openMySQL reads Dovecot's mysql connect string.
func openMySQL(connect string) (*sql.DB, error) {
	args, err := sqlConnectArgs(connect)
	if err != nil {
		return nil, err
	}
	cfg := mysql.NewConfig()
	cfg.Timeout = 5 * time.Second
	host, port := "localhost", "3306"
	for _, kv := range args {
		k, v := kv[0], kv[1]
		switch k {
		case "host":
			host = v
		case "port":
			port = v
		case "dbname":
			cfg.DBName = v
		case "user":
			cfg.User = v
		case "password":
			cfg.Passwd = v
		case "connect_timeout", "read_timeout", "write_timeout":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("connect: %s=%q is not a number of seconds", k, v)
			}
			d := time.Duration(n) * time.Second
			switch k {
			case "connect_timeout":
				cfg.Timeout = d
			case "read_timeout":
				cfg.ReadTimeout = d
			default:
				cfg.WriteTimeout = d
			}
		case "character_set":
			cfg.Params = map[string]string{"charset": v}
		case "maxconns", "client_flags":
		default:
			return nil, fmt.Errorf("connect: %q is not supported by postkit", k)
		}
	}
	switch {
	case strings.HasPrefix(host, "/"):
		cfg.Net, cfg.Addr = "unix", host
	case host == "localhost":
		cfg.Net, cfg.Addr = "unix", "/run/mysqld/mysqld.sock"
	default:
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("connect: bad port %q", port)
		}
		cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(host, port)
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return sql.OpenDB(c), nil
}

// openSQLite opens the database file read-only; it must exist.
func openSQLite(path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("connect: no sqlite database file")
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return sql.Open("sqlite", "file:"+esc+"?mode=ro&_pragma=busy_timeout(5000)")
}

// compileSQL turns the %-variables of a query into bound parameters:
// "$1, $2 ..." for pgsql, "?" for mysql and sqlite.
func compileSQL(q, driver string) (*sqlQuery, error) {
	mysqlDialect := driver == "mysql"
	out := &sqlQuery{raw: q}
	var b strings.Builder
	placeholder := func(t *varTemplate) {
		out.args = append(out.args, t)
		if driver == "pgsql" {
			b.WriteString("$" + strconv.Itoa(len(out.args)))
		} else {
			b.WriteByte('?')
		}
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || (c == '"' && mysqlDialect):
			// A string literal: find its end, read its text.
			j, text, err := sqlLiteral(q, i, mysqlDialect)
			if err != nil {
				return nil, err
			}
			if strings.Contains(text, "%") {
				t, err := parseTemplate(text)
				if err != nil {
					return nil, err
				}
				placeholder(t)
			} else {
				b.WriteString(q[i:j])
			}
			i = j
		case c == '"' || c == '`':
			end := strings.IndexByte(q[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unterminated quoted identifier at byte %d", i)
			}
			ident := q[i : i+2+end]
			if strings.Contains(ident, "%") {
				return nil, fmt.Errorf("a variable inside the quoted identifier %s cannot be bound", ident)
			}
			b.WriteString(ident)
			i += 2 + end
		case strings.HasPrefix(q[i:], "--") || (c == '#' && mysqlDialect):
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				end = len(q) - i
			}
			if strings.Contains(q[i:i+end], "%") {
				return nil, errors.New("a %-variable inside a comment cannot be bound")
			}
			b.WriteString(q[i : i+end])
			i += end
		case strings.HasPrefix(q[i:], "/*"):
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return nil, errors.New("unterminated /* comment")
			}
			if strings.Contains(q[i:i+4+end], "%") {
				return nil, errors.New("a %-variable inside a comment cannot be bound")
			}
			b.WriteString(q[i : i+4+end])
			i += 4 + end
		case c == '%':
			if strings.HasPrefix(q[i:], "%%") {
				b.WriteByte('%')
				i += 2
				continue
			}
			// One variable: up to the end of its name.
			j := sqlVarEnd(q, i)
			t, err := parseTemplate(q[i:j])
			if err != nil {
				return nil, err
			}
			placeholder(t)
			i = j
		case c == '?' && driver != "pgsql":
			return nil, errors.New("a literal ? outside quotes would be read as a parameter")
		case c == '$' && driver == "pgsql" && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			return nil, errors.New("a $N parameter in the query clashes with postkit's parameters")
		default:
			b.WriteByte(c)
			i++
		}
	}
	out.text = b.String()
	return out, nil
}

// sqlVarEnd returns the end of the variable starting at q[i] == '%'.
func sqlVarEnd(q string, i int) int {
	j := i + 1
	for j < len(q) && strings.IndexByte("LUR0123456789.", q[j]) >= 0 {
		j++
	}
	if j < len(q) && q[j] == '{' {
		if end := strings.IndexByte(q[j:], '}'); end >= 0 {
			return j + end + 1
		}
		return len(q)
	}
	return min(j+1, len(q))
}

// sqlLiteral reads the string literal starting at q[i] (a quote) and
// returns the index after it and its text. Doubled quotes, and with MySQL
// backslash escapes, are decoded.
func sqlLiteral(q string, i int, mysqlDialect bool) (int, string, error) {
	quote := q[i]
	var b strings.Builder
	for j := i + 1; j < len(q); j++ {
		c := q[j]
		switch {
		case c == quote:
			if j+1 < len(q) && q[j+1] == quote {
				b.WriteByte(quote)
				j++
				continue
			}
			return j + 1, b.String(), nil
		case c == '\\' && mysqlDialect && j+1 < len(q):
			j++
			switch e := q[j]; e {
			case '0':
				b.WriteByte(0)
			case 'b':
				b.WriteByte('\b')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'Z':
				b.WriteByte(0x1a)
			case '%', '_':
				// Kept with the backslash (for LIKE); a "\%" is not a
				// variable either.
				b.WriteString(`\` + string(e))
				if e == '%' {
					b.WriteByte('%')
				}
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return 0, "", fmt.Errorf("unterminated string literal at byte %d", i)
}

// run executes a compiled query and returns the rows as column → value
// (NULL columns left out), with the column names in order.
func (d *SQLDB) run(ctx context.Context, q *sqlQuery, vals *varValues) ([]string, []map[string]string, error) {
	args := make([]any, len(q.args))
	for i, t := range q.args {
		args[i] = t.expand(vals, nil)
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	rows, err := d.db.QueryContext(ctx, q.text, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: sql query for %q: %w: %w", vals.user, ErrTemporary, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, fmt.Errorf("auth: sql query for %q: %w: %w", vals.user, ErrTemporary, err)
	}
	var out []map[string]string
	for rows.Next() {
		cells := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range cells {
			ptrs[i] = &cells[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, fmt.Errorf("auth: sql query for %q: %w: %w", vals.user, ErrTemporary, err)
		}
		row := make(map[string]string, len(cols))
		for i, c := range cols {
			if cells[i].Valid {
				row[c] = cells[i].String
			}
		}
		out = append(out, row)
		if len(out) > 1 && q == d.passQ {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("auth: sql query for %q: %w: %w", vals.user, ErrTemporary, err)
	}
	return cols, out, nil
}

// applyUserFields applies Dovecot's user-changing fields: user replaces
// the name, username its part before the @, domain the part after.
func applyUserFields(name string, fields map[string]string) string {
	if u, ok := fields["user"]; ok && u != "" {
		name = u
	}
	local, domain, hasDomain := strings.Cut(name, "@")
	if u, ok := fields["username"]; ok && u != "" {
		local = u
	}
	if dm, ok := fields["domain"]; ok && dm != "" {
		domain, hasDomain = dm, true
	}
	if hasDomain {
		return local + "@" + domain
	}
	return local
}

// LookupCredentials implements PassDB with password_query.
func (d *SQLDB) LookupCredentials(ctx context.Context, user string) (Credentials, error) {
	info, _ := ClientInfoFrom(ctx)
	vals := &varValues{user: user, info: info}
	cols, rows, err := d.run(ctx, d.passQ, vals)
	if err != nil {
		return Credentials{}, err
	}
	switch len(rows) {
	case 0:
		return Credentials{}, fmt.Errorf("auth: sql: user %q: %w", user, ErrUnknownUser)
	case 1:
	default:
		return Credentials{}, fmt.Errorf("auth: sql: password query returned multiple rows for %q: %w", user, ErrTemporary)
	}
	row := rows[0]
	c := Credentials{User: applyUserFields(user, row)}
	for _, col := range cols {
		v, ok := row[col]
		if !ok {
			continue
		}
		switch col {
		case "password":
			c.Password = v
		case "password_noscheme":
			if v != "" {
				c.Password = "{" + d.scheme + "}" + v
			}
		case "user", "username", "domain":
		default:
			if c.Extra == nil {
				c.Extra = map[string]string{}
			}
			c.Extra[col] = extraValue(col, v)
		}
	}
	if c.Password != "" && !strings.HasPrefix(c.Password, "{") {
		s, v := SplitScheme(c.Password, d.scheme)
		c.Password = "{" + s + "}" + v
	}
	return c, nil
}

// LookupUser implements UserDB with user_query: uid, gid, home and mail
// columns go to their fields (UID and GID are -1 when absent), the rest to
// Extra.
func (d *SQLDB) LookupUser(ctx context.Context, user string) (User, error) {
	info, _ := ClientInfoFrom(ctx)
	vals := &varValues{user: user, info: info}
	cols, rows, err := d.run(ctx, d.userQ, vals)
	if err != nil {
		return User{}, err
	}
	if len(rows) == 0 {
		return User{}, fmt.Errorf("auth: sql: user %q: %w", user, ErrUnknownUser)
	}
	row := rows[0]
	u := User{Name: applyUserFields(user, row), UID: -1, GID: -1}
	for _, col := range cols {
		v, ok := row[col]
		if !ok {
			continue
		}
		switch col {
		case "user", "username", "domain":
			continue
		}
		if err := u.setField(col, v); err != nil {
			return User{}, fmt.Errorf("auth: sql: user %q: %w: %w", user, ErrTemporary, err)
		}
	}
	return u, nil
}

// ReadSQLConfig reads a Dovecot dovecot-sql.conf.ext file: "key = value"
// lines, '#' comment lines, a trailing '\' continuing a value on the next
// line (joined with one space), optional double quotes around a value.
// Keys: driver, connect, default_pass_scheme, password_query, user_query
// (iterate_query and userdb_warning_disable are accepted and ignored).
func ReadSQLConfig(path string) (SQLConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return SQLConfig{}, fmt.Errorf("auth: sql config: %w", err)
	}
	return parseSQLConfig(data, path)
}

// parseSQLConfig reads the text of a dovecot-sql.conf.ext; path is for
// the error messages.
func parseSQLConfig(data []byte, path string) (SQLConfig, error) {
	var cfg SQLConfig
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	var full strings.Builder
	n, start := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if full.Len() == 0 {
			start = n
			if line == "" || line[0] == '#' {
				continue
			}
		}
		if strings.HasSuffix(line, `\`) {
			full.WriteString(strings.TrimSpace(strings.TrimSuffix(line, `\`)))
			full.WriteByte(' ')
			continue
		}
		full.WriteString(line)
		setting := full.String()
		full.Reset()
		k, v, ok := strings.Cut(setting, "=")
		if !ok {
			return SQLConfig{}, fmt.Errorf("auth: sql config %s:%d: %q is not key = value", path, start, setting)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(v[1 : len(v)-1])
		}
		switch k {
		case "driver":
			cfg.Driver = v
		case "connect":
			cfg.Connect = v
		case "default_pass_scheme":
			cfg.DefaultScheme = v
		case "password_query":
			cfg.PasswordQuery = v
		case "user_query":
			cfg.UserQuery = v
		case "iterate_query", "userdb_warning_disable":
		default:
			return SQLConfig{}, fmt.Errorf("auth: sql config %s:%d: unknown setting %q", path, start, k)
		}
	}
	if err := sc.Err(); err != nil {
		return SQLConfig{}, fmt.Errorf("auth: sql config %s: %w", path, err)
	}
	if full.Len() > 0 {
		return SQLConfig{}, fmt.Errorf("auth: sql config %s:%d: the file ends inside a continued line", path, start)
	}
	return cfg, nil
}
