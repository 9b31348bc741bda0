package maps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	sqlite "modernc.org/sqlite"
)

// ---- PostgreSQL ----------------------------------------------------------

// setupPgSQL builds one pool per entry of "hosts" (pgsql_table(5)): a
// postgresql:// URI, or host[:port] with an optional "inet:" or "unix:"
// prefix, where a name that is empty or starts with "/" is a UNIX-socket
// directory, as libpq reads it. With no hosts, "localhost" is used.
func (m *sqlMap) setupPgSQL(conf *sqlConf) error {
	hosts := sqlSplitHosts(conf.str("hosts", ""))
	if len(hosts) == 0 {
		hosts = []string{"localhost"}
	}
	user, password, dbname := conf.str("user", ""), conf.str("password", ""), conf.str("dbname", "")
	for _, spec := range hosts {
		var cfg *pgx.ConnConfig
		var err error
		unix := false
		if strings.HasPrefix(spec, "postgresql:") {
			// The URI names the database; user and password from the .cf
			// file win when set, as with libpq's PQsetdbLogin.
			cfg, err = pgx.ParseConfig(spec)
			if err != nil {
				return conf.errorf("hosts", "%q: %v", spec, err)
			}
			if user != "" {
				cfg.User = user
			}
			if password != "" {
				cfg.Password = password
			}
		} else {
			name := strings.TrimPrefix(strings.TrimPrefix(spec, "unix:"), "inet:")
			port := ""
			if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.HasSuffix(name, "]") {
				name, port = name[:i], name[i+1:]
			}
			name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
			unix = name == "" || name[0] == '/'
			if name == "" {
				name = "/var/run/postgresql"
			}
			kv := []string{"host=" + sqlPgQuote(name)}
			if port != "" {
				if _, err := strconv.ParseUint(port, 10, 16); err != nil {
					return conf.errorf("hosts", "%q: bad port %q", spec, port)
				}
				kv = append(kv, "port="+sqlPgQuote(port))
			}
			if dbname != "" {
				kv = append(kv, "dbname="+sqlPgQuote(dbname))
			}
			if user != "" {
				kv = append(kv, "user="+sqlPgQuote(user))
			}
			if password != "" {
				kv = append(kv, "password="+sqlPgQuote(password))
			}
			cfg, err = pgx.ParseConfig(strings.Join(kv, " "))
			if err != nil {
				return conf.errorf("hosts", "%q: %v", spec, err)
			}
		}
		if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > sqlConnectTimeout {
			cfg.ConnectTimeout = sqlConnectTimeout
		}
		db := stdlib.OpenDB(*cfg)
		sqlConfigurePool(db, sqlDefaultIdle)
		h := &sqlHost{label: spec, unix: unix, db: db}
		h.query = func(ctx context.Context, expand func(func(string) string) string) ([]sqlRow, error) {
			return sqlPgQuery(ctx, db, expand)
		}
		m.hosts = append(m.hosts, h)
	}
	return nil
}

// Postfix 3.7 sets the client encoding of its PostgreSQL connections to
// LATIN1: every byte of the query text (template and key) reaches the server
// as one Latin-1 character, and results come back in Latin-1, a value
// holding a character outside Latin-1 failing the query. postkit's
// connections speak UTF-8, so it converts both ways to give the same
// answers: a UTF-8 key such as "ünï@example.com" does not match the same
// text stored in a UTF-8 database, as with Postfix.

// sqlLatin1ToUTF8 reads each byte of s as a Latin-1 character.
func sqlLatin1ToUTF8(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	b := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		b[i] = rune(s[i])
	}
	return string(b)
}

// sqlUTF8ToLatin1 turns UTF-8 text into Latin-1 bytes; ok is false when a
// character has no Latin-1 equivalent.
func sqlUTF8ToLatin1(v []byte) (string, bool) {
	ascii := true
	for _, c := range v {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(v), true
	}
	out := make([]byte, 0, len(v))
	for _, r := range string(v) {
		if r > 0xff {
			return "", false
		}
		out = append(out, byte(r))
	}
	return string(out), true
}

// sqlPgQuote quotes a value for a libpq keyword=value connection string.
func sqlPgQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// sqlPgQuery runs the query on one pooled connection the way PQexec does:
// the simple query protocol, text results, the last result set counting.
// The key is escaped for that connection's standard_conforming_strings.
func sqlPgQuery(ctx context.Context, db *sql.DB, expand func(func(string) string) string) ([]sqlRow, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, &sqlConnError{err}
	}
	defer conn.Close()
	var rows []sqlRow
	var qerr error
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		pc := sc.Conn().PgConn()
		std := pc.ParameterStatus("standard_conforming_strings") == "on"
		q := sqlLatin1ToUTF8(expand(func(s string) string { return sqlQuotePgSQL(s, std) }))
		if strings.TrimSpace(q) == "" {
			qerr = errors.New("empty query")
			return nil
		}
		results, err := pc.Exec(ctx, q).ReadAll()
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				qerr = err
			} else {
				qerr = &sqlConnError{err}
			}
			if pc.IsClosed() {
				return driver.ErrBadConn
			}
			return nil
		}
		if len(results) == 0 {
			qerr = errors.New("empty query")
			return nil
		}
		for _, r := range results[len(results)-1].Rows {
			row := make(sqlRow, len(r))
			for i, v := range r {
				if v != nil {
					s, ok := sqlUTF8ToLatin1(v)
					if !ok {
						qerr = fmt.Errorf("a result value has a character with no equivalent in encoding LATIN1: %q", v)
						return nil
					}
					row[i] = &s
				}
			}
			rows = append(rows, row)
		}
		return nil
	})
	if qerr != nil {
		return nil, qerr
	}
	if err != nil {
		return nil, &sqlConnError{err}
	}
	return rows, nil
}

// ---- MySQL / MariaDB -----------------------------------------------------

// sqlMySQLSocket is where Debian's MariaDB and MySQL clients find the
// server when the host is "localhost".
const sqlMySQLSocket = "/run/mysqld/mysqld.sock"

// sqlMySQLNoBackslashOff is run on every new session: it removes
// NO_BACKSLASH_ESCAPES from the session's sql_mode and keeps the rest, so
// the backslash escaping of keys always means what it says.
const sqlMySQLNoBackslashOff = "TRIM(BOTH ',' FROM REPLACE(CONCAT(',', @@SESSION.sql_mode, ','), ',NO_BACKSLASH_ESCAPES,', ','))"

// setupMySQL builds one pool per entry of "hosts" (mysql_table(5)):
// "unix:/path" for a socket, "inet:host[:port]" or "host[:port]" for TCP
// (port 3306 by default). "localhost" means the default UNIX socket, as it
// does for the MySQL client library; use 127.0.0.1 for TCP.
func (m *sqlMap) setupMySQL(conf *sqlConf) error {
	var err error
	idle := sqlDefaultIdle
	if n, err := conf.int("idle_interval", 60, 1); err != nil {
		return err
	} else {
		idle = time.Duration(n) * time.Second
	}
	n, err := conf.int("retry_interval", 60, 1)
	if err != nil {
		return err
	}
	m.retry = time.Duration(n) * time.Second
	if _, err := conf.bool("require_result_set", true); err != nil {
		return err
	}
	requireResultSet, _ := conf.bool("require_result_set", true)

	// Options from option_file: [client], then option_group.
	of := map[string]string{}
	if path := conf.str("option_file", ""); path != "" {
		group := conf.str("option_group", "client")
		if of, err = sqlReadMyCnf(path, group); err != nil {
			return conf.errorf("option_file", "%v", err)
		}
	}
	user := conf.str("user", "")
	if user == "" {
		user = of["user"]
	}
	password := conf.str("password", "")
	if password == "" {
		password = of["password"]
	}
	dbname := conf.str("dbname", "")
	if dbname == "" {
		dbname = of["database"]
	}
	tlsConf, err := sqlMySQLTLS(conf, of)
	if err != nil {
		return err
	}

	hosts := sqlSplitHosts(conf.str("hosts", ""))
	if len(hosts) == 0 {
		hosts = []string{"localhost"}
	}
	for _, spec := range hosts {
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.DBName = user, password, dbname
		cfg.Timeout = sqlConnectTimeout
		cfg.Params = map[string]string{"sql_mode": sqlMySQLNoBackslashOff}
		unix := false
		switch {
		case strings.HasPrefix(spec, "unix:"):
			cfg.Net, cfg.Addr, unix = "unix", spec[len("unix:"):], true
		default:
			name := strings.TrimPrefix(spec, "inet:")
			port := of["port"]
			if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.HasSuffix(name, "]") {
				name, port = name[:i], name[i+1:]
			}
			name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
			if strings.EqualFold(name, "localhost") {
				sock := of["socket"]
				if sock == "" {
					sock = sqlMySQLSocket
				}
				cfg.Net, cfg.Addr, unix = "unix", sock, true
				break
			}
			if port == "" {
				port = "3306"
			}
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				p, err2 := net.LookupPort("tcp", port)
				if err2 != nil {
					return conf.errorf("hosts", "%q: unknown service %q", spec, port)
				}
				port = strconv.Itoa(p)
			}
			cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(name, port)
			if tlsConf != nil {
				tc := tlsConf.Clone()
				if tc.ServerName == "" {
					tc.ServerName = name
				}
				cfg.TLS = tc
			}
		}
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return conf.errorf("hosts", "%q: %v", spec, err)
		}
		db := sql.OpenDB(connector)
		sqlConfigurePool(db, idle)
		h := &sqlHost{label: spec, unix: unix, db: db}
		h.query = func(ctx context.Context, expand func(func(string) string) string) ([]sqlRow, error) {
			return sqlMyQuery(ctx, db, expand(sqlQuoteMySQL), requireResultSet)
		}
		m.hosts = append(m.hosts, h)
	}
	return nil
}

// sqlMyQuery runs the query with the text protocol. Like Postfix, it takes
// the one result set the query returns and fails when there are several;
// with require_result_set = no a statement without one is "not found".
func sqlMyQuery(ctx context.Context, db *sql.DB, q string, requireResultSet bool) ([]sqlRow, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, &sqlConnError{err}
	}
	defer conn.Close()
	rs, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, sqlMyClassify(err)
	}
	defer rs.Close()
	var rows []sqlRow
	sets := 0
	for {
		cols, err := rs.Columns()
		if err != nil {
			return nil, sqlMyClassify(err)
		}
		if len(cols) > 0 {
			sets++
			if sets > 1 {
				return nil, errors.New("multiple result sets returned")
			}
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			for rs.Next() {
				if err := rs.Scan(ptrs...); err != nil {
					return nil, sqlMyClassify(err)
				}
				row := make(sqlRow, len(cols))
				for i, v := range vals {
					if v != nil {
						s := string(v)
						row[i] = &s
					}
				}
				rows = append(rows, row)
			}
		}
		if err := rs.Err(); err != nil {
			return nil, sqlMyClassify(err)
		}
		if !rs.NextResultSet() {
			break
		}
	}
	if err := rs.Err(); err != nil {
		return nil, sqlMyClassify(err)
	}
	if sets == 0 && requireResultSet {
		return nil, errors.New("query returned no result set (require_result_set = yes)")
	}
	return rows, nil
}

// sqlMyClassify tells a server's answer (a query error) from a lost
// connection.
func sqlMyClassify(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &sqlConnError{err}
}

// sqlReadMyCnf reads the [client] group and then group from a my.cnf-style
// option file (mysql_table(5), "option_file"). Later settings win; option
// names use '-' and '_' interchangeably.
func sqlReadMyCnf(path, group string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	cur := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '!' {
			continue
		}
		if line[0] == '[' {
			cur = strings.TrimSpace(strings.Trim(line, "[]"))
			continue
		}
		if cur != "client" && (group == "" || cur != group) {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		k = strings.ReplaceAll(strings.TrimSpace(k), "_", "-")
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	return out, nil
}

// sqlMySQLTLS builds the TLS settings from tls_* (mysql_table(5)) or the
// option file's ssl-* options; nil means no TLS.
func sqlMySQLTLS(conf *sqlConf, of map[string]string) (*tls.Config, error) {
	certFile := conf.str("tls_cert_file", of["ssl-cert"])
	keyFile := conf.str("tls_key_file", of["ssl-key"])
	caFile := conf.str("tls_CAfile", of["ssl-ca"])
	caPath := conf.str("tls_CApath", of["ssl-capath"])
	verify, err := conf.bool("tls_verify_cert", of["ssl-verify-server-cert"] != "")
	if err != nil {
		return nil, err
	}
	if certFile == "" && keyFile == "" && caFile == "" && caPath == "" && !verify {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" || keyFile != "" {
		if keyFile == "" {
			keyFile = certFile
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, conf.errorf("tls_cert_file", "%v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	var pool *x509.CertPool
	if caFile != "" || caPath != "" {
		pool = x509.NewCertPool()
		files := []string{}
		if caFile != "" {
			files = append(files, caFile)
		}
		if caPath != "" {
			ents, err := os.ReadDir(caPath)
			if err != nil {
				return nil, conf.errorf("tls_CApath", "%v", err)
			}
			for _, e := range ents {
				if !e.IsDir() {
					files = append(files, filepath.Join(caPath, e.Name()))
				}
			}
		}
		for _, f := range files {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, conf.errorf("tls_CAfile", "%v", err)
			}
			pool.AppendCertsFromPEM(pem)
		}
		tc.RootCAs = pool
	}
	if !verify {
		// tls_verify_cert = no: the server name is not checked; the chain
		// still is when a CA is given.
		tc.InsecureSkipVerify = true
		if pool != nil {
			tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 {
					return errors.New("no server certificate")
				}
				certs := make([]*x509.Certificate, len(raw))
				for i, r := range raw {
					c, err := x509.ParseCertificate(r)
					if err != nil {
						return err
					}
					certs[i] = c
				}
				inter := x509.NewCertPool()
				for _, c := range certs[1:] {
					inter.AddCert(c)
				}
				_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
				return err
			}
		}
	}
	return tc, nil
}

// ---- SQLite --------------------------------------------------------------

// setupSQLite opens "dbpath" read-only (sqlite_table(5)).
func (m *sqlMap) setupSQLite(conf *sqlConf) error {
	path := conf.str("dbpath", "")
	if path == "" {
		return conf.errorf("dbpath", "the SQLite database file must be given")
	}
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath(),
		RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return conf.errorf("dbpath", "%v", err)
	}
	sqlConfigurePool(db, sqlDefaultIdle)
	h := &sqlHost{label: path, unix: true, db: db}
	h.query = func(ctx context.Context, expand func(func(string) string) string) ([]sqlRow, error) {
		return sqlLiteQuery(ctx, db, expand(sqlQuoteSQLite))
	}
	m.hosts = []*sqlHost{h}
	m.retry = 0 // a file is never "down"
	return nil
}

// sqlLiteQuery runs the query and returns each row's first column as text,
// as sqlite3_column_text renders it. A query that does not compile is a
// configuration error, not a temporary one (Postfix stops on it).
func sqlLiteQuery(ctx context.Context, db *sql.DB, q string) ([]sqlRow, error) {
	rs, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, sqlLiteClassify(err)
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, sqlLiteClassify(err)
	}
	var rows []sqlRow
	if len(cols) == 0 {
		return nil, nil
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		rows = append(rows, sqlRow{sqlLiteText(vals[0])})
	}
	if err := rs.Err(); err != nil {
		return nil, sqlLiteClassify(err)
	}
	return rows, nil
}

func sqlLiteClassify(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == 1 { // SQLITE_ERROR: SQL error or missing table
		return &sqlFatalError{err}
	}
	return err
}

// sqlLiteText renders a column value the way sqlite3_column_text does.
func sqlLiteText(v any) *string {
	var s string
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		s = v
	case []byte:
		s = string(v)
	case int64:
		s = strconv.FormatInt(v, 10)
	case float64:
		s = sqlLiteFloat(v)
	case bool:
		s = "0"
		if v {
			s = "1"
		}
	case time.Time:
		s = v.Format("2006-01-02 15:04:05.999999999-07:00")
	default:
		s = fmt.Sprint(v)
	}
	return &s
}

// sqlLiteFloat formats a REAL like SQLite's "%!.15g": 15 significant
// digits, and always a decimal point ("1.0", "1.0e+20").
func sqlLiteFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return ""
	}
	s := strconv.FormatFloat(f, 'g', 15, 64)
	mant, exp, hasExp := strings.Cut(s, "e")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	if hasExp {
		// C prints at least two exponent digits, as Go does.
		return mant + "e" + exp
	}
	return mant
}
