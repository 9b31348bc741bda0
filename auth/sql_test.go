package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// authSQLServer is a reachable database for the tests.
type authSQLServer struct {
	driver  string
	db      *sql.DB
	connect string // Dovecot's connect string for it
}

func authSQLUnreachable(t testing.TB, what string, err error) {
	t.Helper()
	oracle.Unavailable(t, "%s is not reachable: %v", what, err)
}

func authSQLPG(t testing.TB) *authSQLServer {
	t.Helper()
	var last error
	for _, u := range []string{"postgres", "root"} {
		connect := "host=127.0.0.1 port=5432 dbname=test sslmode=disable user=" + u
		db, err := sql.Open("pgx", connect+" connect_timeout=3")
		if err == nil {
			if err = db.Ping(); err == nil {
				t.Cleanup(func() { db.Close() })
				return &authSQLServer{driver: "pgsql", db: db, connect: connect}
			}
			db.Close()
		}
		last = err
	}
	authSQLUnreachable(t, "PostgreSQL on 127.0.0.1:5432", last)
	return nil
}

func authSQLMy(t testing.TB) *authSQLServer {
	t.Helper()
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/test?timeout=3s")
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		authSQLUnreachable(t, "MariaDB on 127.0.0.1:3306", err)
	}
	t.Cleanup(func() { db.Close() })
	return &authSQLServer{driver: "mysql", db: db, connect: "host=127.0.0.1 port=3306 dbname=test user=root"}
}

func authSQLLite(t testing.TB) *authSQLServer {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "users.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &authSQLServer{driver: "sqlite", db: db, connect: path}
}

var authSQLServers = []func(testing.TB) *authSQLServer{authSQLPG, authSQLMy, authSQLLite}

// authSQLRow is one user row.
type authSQLRow struct {
	username, domain string
	password         any // string or nil
	home             string
	uid, gid         int
	maildir, quota   any
	nologin          any
}

// table creates a uniquely named users table, fills it and drops it when
// the test ends.
func (s *authSQLServer) table(t testing.TB, rows []authSQLRow) string {
	t.Helper()
	name := fmt.Sprintf("pk_auth_%d_%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	ddl := "CREATE TABLE " + name + " (username VARCHAR(100), domain VARCHAR(100), password VARCHAR(200), home VARCHAR(100), uid INTEGER, gid INTEGER, maildir VARCHAR(100), quota VARCHAR(50), nologin VARCHAR(5))"
	if _, err := s.db.Exec(ddl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Exec("DROP TABLE " + name) })
	ins := "INSERT INTO " + name + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
	if s.driver == "pgsql" {
		ins = "INSERT INTO " + name + " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
	}
	for _, r := range rows {
		if _, err := s.db.Exec(ins, r.username, r.domain, r.password, r.home, r.uid, r.gid, r.maildir, r.quota, r.nologin); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

func authSQLRows() []authSQLRow {
	return []authSQLRow{
		{"alice", "example.org", "{PLAIN}secret", "/home/alice", 1000, 1000, "maildir:~/Maildir", "*:storage=1G", nil},
		{"bob", "example.org", "5ebe2294ecd0e0f08eab7690d2a6ee69", "/home/bob", 1001, 1001, nil, nil, nil}, // bare: default MD5
		{"Carol", "Example.ORG", "{PLAIN}carol", "/home/carol", 1002, 1002, nil, nil, nil},
		{"dup", "example.org", "{PLAIN}a", "/home/dup", 1003, 1003, nil, nil, nil},
		{"dup", "example.org", "{PLAIN}b", "/home/dup2", 1004, 1004, nil, nil, nil},
		{"nologin", "example.org", "{PLAIN}n", "/home/n", 1005, 1005, nil, nil, "Y"},
		{"nopass", "example.org", nil, "/home/np", 1006, 1006, nil, nil, nil},
		{"pct", "example.org", "{PLAIN}xyz%", "/home/pct", 1007, 1007, nil, nil, nil},
		{"crypt", "example.org", "{SHA512-CRYPT}" + mustCrypt("crypt pw", "$6$sqlsalt"), "/home/c", 1008, 1008, nil, nil, nil},
	}
}

// authSQLConf is a dovecot-sql.conf.ext for the table, with a continued
// line and a LIKE pattern that needs %%.
func authSQLConf(s *authSQLServer, table string) string {
	return fmt.Sprintf(`# postkit test
driver = %s
connect = %s
default_pass_scheme = MD5

password_query = \
  SELECT username, domain, password, \
    quota AS userdb_quota_rule, nologin \
  FROM %s WHERE username = '%%n' AND domain = '%%d' \
  AND (password IS NULL OR password NOT LIKE '%%%%xyz%%%%')
user_query = SELECT home, uid, gid, maildir AS mail, quota AS quota_rule FROM %s WHERE username = '%%n' AND domain = '%%d'
`, s.driver, s.connect, table, table)
}

var authSQLUsers = [][2]string{
	{"alice@example.org", "secret"}, {"bob@example.org", "secret"}, {"carol@example.org", "carol"},
	{"dup@example.org", "a"}, {"nologin@example.org", "n"}, {"nopass@example.org", ""},
	{"pct@example.org", "xyz%"}, {"crypt@example.org", "crypt pw"}, {"ghost@example.org", "x"},
	{"ALICE@example.org", "secret"}, {"alice@example.org", "wrong"},
}

// TestSQLAgainstDovecot runs one dovecot-sql.conf.ext through Dovecot 2.3
// (passdb and userdb sql) and through ReadSQLConfig/OpenSQL behind an
// Authenticator, on PostgreSQL, MariaDB and SQLite, and compares logins,
// the canonical names and the fields.
func TestSQLAgainstDovecot(t *testing.T) {
	for _, open := range authSQLServers {
		s := open(t)
		t.Run(s.driver, func(t *testing.T) {
			t.Parallel()
			table := s.table(t, authSQLRows())
			confPath := filepath.Join(t.TempDir(), "dovecot-sql.conf.ext")
			if err := os.WriteFile(confPath, []byte(authSQLConf(s, table)), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chmod(filepath.Dir(confPath), 0o755)
			requireDovecotDriver(t, s.driver)
			dv := startAuthDovecot(t, "sql", confPath)
			cfg, err := ReadSQLConfig(confPath)
			if err != nil {
				t.Fatal(err)
			}
			db, err := OpenSQL(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			a := &Authenticator{PassDB: db, UserDB: db, FailureDelay: -1, Logger: discardLog}
			ctx := context.Background()
			var wg sync.WaitGroup
			for _, c := range authSQLUsers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					compareWithDovecot(t, ctx, a, dv, c[0], c[1])
				}()
			}
			wg.Wait()
		})
	}
}

// compareWithDovecot checks one login and one userdb lookup.
func compareWithDovecot(t *testing.T, ctx context.Context, a *Authenticator, conf, name, pass string) {
	wantOK, wantExtra := dovecotPassdbUser(t, conf, name, pass)
	u, err := a.Verify(ctx, name, pass)
	gotOK := err == nil
	if errors.Is(err, ErrBadPassword) && strings.Contains(err.Error(), "nologin") {
		gotOK = true // Dovecot reports success with nologin; the client is refused
	}
	if gotOK != wantOK {
		t.Errorf("%s/%q: our login %v (%v), Dovecot's %v", name, pass, gotOK, err, wantOK)
	}
	if wantOK {
		if n := wantExtra["user"]; n != "" && err == nil && n != u.Name {
			t.Errorf("%s: our canonical name %q, Dovecot's %q", name, u.Name, n)
		}
		delete(wantExtra, "user")
		delete(wantExtra, "original_user")
		creds, _ := a.PassDB.LookupCredentials(ctx, strings.ToLower(name))
		got := map[string]string{}
		for k, v := range creds.Extra {
			if !strings.HasPrefix(k, "userdb_") {
				got[k] = v
			}
		}
		if !maps.Equal(got, wantExtra) {
			t.Errorf("%s: our passdb fields %v, Dovecot's %v", name, got, wantExtra)
		}
	}
	wantUser := dovecotUserdb(t, conf, name)
	uu, err := a.LookupUser(ctx, name)
	if wantUser == nil {
		if err == nil {
			t.Errorf("%s: we have a userdb entry %+v, Dovecot has none", name, uu)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: LookupUser: %v; Dovecot has %v", name, err, wantUser)
		return
	}
	if n := wantUser["user"]; n != "" && n != uu.Name {
		t.Errorf("%s: our userdb name %q, Dovecot's %q", name, uu.Name, n)
	}
	for k, v := range wantUser {
		if v == "" || k == "user" {
			delete(wantUser, k)
		}
	}
	got := map[string]string{}
	for k, v := range uu.Extra {
		got[k] = v
	}
	for k, v := range map[string]string{"home": uu.Home, "mail": uu.Mail} {
		if v != "" {
			got[k] = v
		}
	}
	if uu.UID >= 0 {
		got["uid"] = fmt.Sprint(uu.UID)
	}
	if uu.GID >= 0 {
		got["gid"] = fmt.Sprint(uu.GID)
	}
	if !maps.Equal(got, wantUser) {
		t.Errorf("%s: our userdb fields %v, Dovecot's %v", name, got, wantUser)
	}
}

// dovecotPassdbUser is dovecotPassdb keeping the user field.
func dovecotPassdbUser(t *testing.T, conf, name, pass string) (bool, map[string]string) {
	ok, fields := dovecotPassdb(t, conf, name, pass)
	return ok, fields
}

// TestSQLQueries: the SQL side alone, on every server: canonical names,
// extra fields, NULLs, several rows, unknown users, values that try to
// break out of the quotes, variables outside quotes.
func TestSQLQueries(t *testing.T) {
	for _, open := range authSQLServers {
		s := open(t)
		t.Run(s.driver, func(t *testing.T) {
			t.Parallel()
			table := s.table(t, authSQLRows())
			ctx := context.Background()
			db, err := OpenSQL(SQLConfig{
				Driver:        s.driver,
				DB:            s.db,
				PasswordQuery: "SELECT username AS user, password, nologin, 'x' AS \"literal\" FROM " + table + " WHERE username = '%n' AND domain = '%d'",
				UserQuery:     "SELECT home, uid, gid, maildir AS mail FROM " + table + " WHERE username = %n AND uid > 0",
			})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			c, err := db.LookupCredentials(ctx, "alice@example.org")
			if err != nil || c.Password != "{PLAIN}secret" || c.User != "alice" || !maps.Equal(c.Extra, map[string]string{"literal": "x"}) {
				t.Errorf("alice: %+v, %v", c, err)
			}
			c, err = db.LookupCredentials(ctx, "bob@example.org")
			if err != nil || c.Password != "{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69" {
				t.Errorf("bob (default scheme MD5): %+v, %v", c, err)
			}
			if _, err := db.LookupCredentials(ctx, "dup@example.org"); !errors.Is(err, ErrTemporary) {
				t.Errorf("dup: %v, want ErrTemporary", err)
			}
			for _, evil := range []string{"x' OR '1'='1@example.org", "alice@example.org' --", `alice\'@example.org`, "%n@%d", "?@example.org", "$1@example.org"} {
				if c, err := db.LookupCredentials(ctx, evil); !errors.Is(err, ErrUnknownUser) {
					t.Errorf("%q: %+v, %v; want unknown user", evil, c, err)
				}
			}
			u, err := db.LookupUser(ctx, "alice@example.org")
			if err != nil || u.Home != "/home/alice" || u.UID != 1000 || u.GID != 1000 || u.Mail != "maildir:~/Maildir" {
				t.Errorf("LookupUser(alice) = %+v, %v", u, err)
			}
			u, err = db.LookupUser(ctx, "dup")
			if err != nil || (u.UID != 1003 && u.UID != 1004) {
				t.Errorf("LookupUser(dup) = %+v, %v; want the first row", u, err)
			}
			if _, err := db.LookupUser(ctx, "ghost"); !errors.Is(err, ErrUnknownUser) {
				t.Errorf("LookupUser(ghost) = %v", err)
			}
		})
	}
}

// TestSQLConnect opens each server from Dovecot's connect string alone.
func TestSQLConnect(t *testing.T) {
	for _, open := range authSQLServers {
		s := open(t)
		table := s.table(t, authSQLRows())
		db, err := OpenSQL(SQLConfig{Driver: s.driver, Connect: s.connect,
			PasswordQuery: "SELECT password FROM " + table + " WHERE username = '%n'"})
		if err != nil {
			t.Fatalf("%s: %v", s.driver, err)
		}
		c, err := db.LookupCredentials(context.Background(), "alice")
		if err != nil || c.Password != "{PLAIN}secret" {
			t.Errorf("%s: %+v, %v", s.driver, c, err)
		}
		db.Close()
	}
}

// TestSQLServerDown: an unreachable server is a temporary failure.
func TestSQLServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for _, c := range []SQLConfig{
		{Driver: "pgsql", Connect: fmt.Sprintf("host=127.0.0.1 port=%d dbname=x user=x connect_timeout=2", port)},
		{Driver: "mysql", Connect: fmt.Sprintf("host=127.0.0.1 port=%d dbname=x user=x connect_timeout=2", port)},
	} {
		db, err := OpenSQL(c)
		if err != nil {
			t.Fatal(err)
		}
		a := &Authenticator{PassDB: db, Logger: discardLog, Sleep: func(context.Context, time.Duration) error {
			t.Errorf("a temporary failure was delayed")
			return nil
		}}
		if _, err := a.Verify(context.Background(), "u@x", "p"); !errors.Is(err, ErrTemporary) {
			t.Errorf("%s down: %v, want ErrTemporary", c.Driver, err)
		}
		db.Close()
	}
}

// TestCompileSQL: how queries become parameterized.
func TestCompileSQL(t *testing.T) {
	for _, c := range []struct {
		driver, q, text string
		args            []string // templates of the parameters
		err             bool
	}{
		{"pgsql", "SELECT password FROM u WHERE user = '%u'", "SELECT password FROM u WHERE user = $1", []string{"%u"}, false},
		{"mysql", "SELECT password FROM u WHERE user = '%u'", "SELECT password FROM u WHERE user = ?", []string{"%u"}, false},
		{"sqlite", "SELECT 1 WHERE a = '%n@%d' AND b = '%{domain}'", "SELECT 1 WHERE a = ? AND b = ?", []string{"%n@%d", "%{domain}"}, false},
		{"pgsql", "SELECT 'it''s' WHERE a = 'it''s %u'", "SELECT 'it''s' WHERE a = $1", []string{"it's %u"}, false},
		{"pgsql", "SELECT 1 WHERE uid = %{rport} AND x = 10 %% 3", "SELECT 1 WHERE uid = $1 AND x = 10 % 3", []string{"%{rport}"}, false},
		{"pgsql", "SELECT 1 WHERE a LIKE '%%x%%'", "SELECT 1 WHERE a LIKE $1", []string{"%%x%%"}, false},
		{"mysql", `SELECT 1 WHERE a = "%Lu" AND b = 'x\'%u'`, "SELECT 1 WHERE a = ? AND b = ?", []string{"%Lu", "x'%u"}, false},
		{"pgsql", `SELECT "col%" FROM t`, "", nil, true},
		{"mysql", "SELECT `a%u` FROM t", "", nil, true},
		{"pgsql", "SELECT 1 -- %u\nFROM t", "", nil, true},
		{"pgsql", "SELECT 1 /* %u */", "", nil, true},
		{"pgsql", "SELECT 'unterminated", "", nil, true},
		{"pgsql", "SELECT '%x'", "", nil, true},
		{"mysql", "SELECT ? FROM t", "", nil, true},
		{"pgsql", "SELECT $1 FROM t", "", nil, true},
		{"pgsql", "SELECT 1 -- comment\nWHERE a = '%u'", "SELECT 1 -- comment\nWHERE a = $1", []string{"%u"}, false},
	} {
		q, err := compileSQL(c.q, c.driver)
		if c.err {
			if err == nil {
				t.Errorf("%s %q: compiled to %q, want an error", c.driver, c.q, q.text)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %q: %v", c.driver, c.q, err)
			continue
		}
		var args []string
		for _, a := range q.args {
			args = append(args, a.raw)
		}
		if q.text != c.text || !slices.Equal(args, c.args) {
			t.Errorf("%s %q: %q %q; want %q %q", c.driver, c.q, q.text, args, c.text, c.args)
		}
	}
}

// TestReadSQLConfig: the file format.
func TestReadSQLConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sql.conf")
	writeFile(t, path, "# c\n  driver = mysql\nconnect = \"host=/run/x dbname=m\"\npassword_query = SELECT a, \\\n   b \\\n FROM t\niterate_query = SELECT 1\n")
	cfg, err := ReadSQLConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Driver != "mysql" || cfg.Connect != "host=/run/x dbname=m" || cfg.PasswordQuery != "SELECT a, b FROM t" {
		t.Errorf("ReadSQLConfig = %+v", cfg)
	}
	for _, bad := range []string{"nosuch = 1\n", "no equals\n", "driver = x \\\n"} {
		writeFile(t, path, bad)
		if _, err := ReadSQLConfig(path); err == nil || !strings.Contains(err.Error(), path+":1") {
			t.Errorf("%q: %v, want an error at %s:1", bad, err, path)
		}
	}
	for _, c := range []SQLConfig{
		{Driver: "oracle"},
		{Driver: "sqlite", Connect: "/nonexistent/db"},
		{Driver: "mysql", Connect: "host=x bogus=1"},
		{Driver: "pgsql", Connect: "x", PasswordQuery: "SELECT '%z'"},
		{Driver: "pgsql", Connect: "host=x", DefaultScheme: "NOSUCH"},
	} {
		if db, err := OpenSQL(c); err == nil {
			db.Close()
			t.Errorf("OpenSQL(%+v) succeeded", c)
		}
	}
}

// requireDovecotDriver skips (fails under CI) when Dovecot's SQL driver
// for driver is not installed (Debian: dovecot-pgsql, dovecot-mysql,
// dovecot-sqlite).
func requireDovecotDriver(t *testing.T, driver string) {
	t.Helper()
	oracle.Require(t, "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/modules/libdriver_" + driver + ".so"); err != nil {
		oracle.Unavailable(t, "Dovecot's %s driver is missing (apt-get install dovecot-%s)", driver, driver)
	}
}
