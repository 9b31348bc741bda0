package maps

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// ---- servers and fixtures ------------------------------------------------

// sqlTestServer is a reachable database for the tests.
type sqlTestServer struct {
	typ  string
	db   *sql.DB
	user string // pgsql login that works (trust auth)
	dir  string // sqlite: the directory of the database file
	path string // sqlite: the database file
}

// sqlTestUnreachable skips, or fails under CI, when a server is missing.
func sqlTestUnreachable(t testing.TB, what string, err error) {
	t.Helper()
	oracle.Unavailable(t, "%s is not reachable: %v", what, err)
}

func sqlTestPG(t testing.TB) *sqlTestServer {
	t.Helper()
	var lastErr error
	for _, user := range []string{"postgres", "root"} {
		db, err := sql.Open("pgx", "host=127.0.0.1 port=5432 dbname=test sslmode=disable connect_timeout=3 user="+user)
		if err != nil {
			lastErr = err
			continue
		}
		if err = db.Ping(); err != nil {
			db.Close()
			lastErr = err
			continue
		}
		t.Cleanup(func() { db.Close() })
		return &sqlTestServer{typ: "pgsql", db: db, user: user}
	}
	sqlTestUnreachable(t, "PostgreSQL on 127.0.0.1:5432", lastErr)
	return nil
}

func sqlTestMy(t testing.TB) *sqlTestServer {
	t.Helper()
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/test?timeout=3s")
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		sqlTestUnreachable(t, "MariaDB on 127.0.0.1:3306", err)
	}
	t.Cleanup(func() { db.Close() })
	return &sqlTestServer{typ: "mysql", db: db, user: "root"}
}

func sqlTestLite(t testing.TB) *sqlTestServer {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "test.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE pk_sql_placeholder (x TEXT)"); err != nil { // creates the file
		t.Fatal(err)
	}
	return &sqlTestServer{typ: "sqlite", db: db, dir: dir, path: path}
}

// sqlTestBackdate sets a file's times 10 s into the past. Postfix waits
// (in 300 ms steps, up to about 2 s) before it reads a main.cf or .cf file
// modified within the last couple of seconds, in case it is being written.
func sqlTestBackdate(t testing.TB, path string) {
	t.Helper()
	old := time.Now().Add(-10 * time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// sqlTestConfigDir is oracle.ConfigDir with main.cf backdated.
func sqlTestConfigDir(t testing.TB) string {
	dir := oracle.ConfigDir(t, "")
	sqlTestBackdate(t, filepath.Join(dir, "main.cf"))
	return dir
}

// sqlTestServers returns every server type, for table-driven tests.
func sqlTestServers(t *testing.T) []func(testing.TB) *sqlTestServer {
	return []func(testing.TB) *sqlTestServer{sqlTestPG, sqlTestMy, sqlTestLite}
}

// table creates a uniquely named table with columns k, v1, v2, fills it
// and drops it when the test ends.
func (s *sqlTestServer) table(t testing.TB, rows [][3]any) string {
	t.Helper()
	name := fmt.Sprintf("pk_sql_%d_%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	create := "CREATE TABLE " + name + " (k TEXT, v1 TEXT, v2 TEXT)"
	if s.typ == "mysql" {
		create = "CREATE TABLE " + name + " (k VARCHAR(255), v1 VARCHAR(255), v2 VARCHAR(255)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
	}
	if _, err := s.db.Exec(create); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() { s.db.Exec("DROP TABLE " + name) })
	ph := "($1, $2, $3)"
	if s.typ != "pgsql" {
		ph = "(?, ?, ?)"
	}
	for _, r := range rows {
		if _, err := s.db.Exec("INSERT INTO "+name+" (k, v1, v2) VALUES "+ph, r[0], r[1], r[2]); err != nil {
			t.Fatalf("insert %v: %v", r, err)
		}
	}
	return name
}

// cf writes a .cf file for this server with the connection settings
// followed by body, and returns its path.
func (s *sqlTestServer) cf(t testing.TB, body string) string {
	t.Helper()
	var head string
	switch s.typ {
	case "pgsql":
		head = "hosts = 127.0.0.1\nuser = " + s.user + "\ndbname = test\n"
	case "mysql":
		head = "hosts = 127.0.0.1\nuser = root\ndbname = test\n"
	case "sqlite":
		head = "dbpath = " + s.path + "\n"
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "table.cf")
	if err := os.WriteFile(p, []byte(head+body), 0o644); err != nil {
		t.Fatal(err)
	}
	sqlTestBackdate(t, p)
	return p
}

// open opens the table through the registry and collects its warnings.
func (s *sqlTestServer) open(t testing.TB, cf string) (*sqlMap, *[]string) {
	t.Helper()
	var mu sync.Mutex
	warns := &[]string{}
	m, err := NewRegistry().Open(context.Background(), s.typ+":"+cf, Options{Warn: func(w Warning) {
		mu.Lock()
		*warns = append(*warns, w.String())
		mu.Unlock()
	}})
	if err != nil {
		t.Fatalf("open %s:%s: %v", s.typ, cf, err)
	}
	t.Cleanup(func() { Close(m) })
	return m.(*sqlMap), warns
}

// sqlTestRows is the table the differential tests query.
var sqlTestRows = [][3]any{
	{"alice@example.com", "alice@mail.example.com", "alice2@mail.example.com"},
	{"alice@example.com", "second@x.org", nil},
	{"bob@example.com", "", nil},
	{"carol", "carol@local", nil},
	{"@example.com", "catchall@example.com", nil},
	{"dave@sub.example.com", "dave", "@nolocal.example"},
	{"it's@example.com", "quote@example.com", nil},
	{`back\slash@example.com`, "bs@example.com", nil},
	{`q"uote@example.com`, "dq@example.com", nil},
	{"ünï@example.com", "utf8@example.com", nil},
	{"upper@example.com", "MiXeD@Example.COM", "Value With Spaces"},
	{"example.com", "domain-value", nil},
	{"x@a.b.c.d.e", "deep@x", nil},
	{"secret", "TOPSECRET", nil},
}

// sqlTestKeys are looked up in every differential case.
var sqlTestKeys = []string{
	"alice@example.com", "ALICE@Example.COM", "bob@example.com", "carol", "CAROL",
	"carol@example.com", "@example.com", "example.com", "dave@sub.example.com",
	"it's@example.com", `back\slash@example.com`, `q"uote@example.com`, "ünï@example.com",
	"ÜNÏ@EXAMPLE.COM", "upper@example.com", "x@a.b.c.d.e", "x@a..b.c", "x@..c", "nobody@example.com",
	"user@", "@", "a@b", "x@y@example.com", "' OR '1'='1", "x@example.com' OR '1'='1",
	`\' OR 1=1 -- `, `\`, `'`, `it\'s@example.com`, "a%s@example.com", "\xff@example.com",
	"tab\there@example.com",
}

// sqlTestCase is one .cf body ("T" stands for the table name).
type sqlTestCase struct {
	name  string
	body  string
	types string // limit to these types ("" = all)
}

var sqlTestCases = []sqlTestCase{
	{name: "plain", body: "query = SELECT v1, v2 FROM T WHERE k = '%s'\n"},
	{name: "user-domain", body: "query = SELECT v1 FROM T WHERE k = '%u@%d'\n"},
	{name: "user-only", body: "query = SELECT v1 FROM T WHERE k = '%u'\n"},
	{name: "upper", body: "query = SELECT v1 FROM T WHERE k = '%U@%D' OR k = '%S'\n"},
	{name: "domain-only", body: "query = SELECT v1 FROM T WHERE k = '%d'\n"},
	{name: "echo", body: "query = SELECT '%s', '%u', '%d', '%1.%2.%3', '100%%'\n"},
	{name: "result-format", body: "query = SELECT v1, v2 FROM T WHERE k = '%s'\nresult_format = smtp:[%s] %u/%d %S|%U|%D|%1 %%\n"},
	{name: "result-user", body: "query = SELECT v1, v2 FROM T WHERE k = '%s'\nresult_format = <%u>\n"},
	{name: "result-domain", body: "query = SELECT v1, v2 FROM T WHERE k = '%s'\nresult_format = <%d>\n"},
	{name: "result-parts", body: "query = SELECT v1 FROM T WHERE k = '%s'\nresult_format = %s via %3\n"},
	{name: "domain-list", body: "query = SELECT v1, v2 FROM T WHERE k = '%s'\ndomain = !sub.example.com, EXAMPLE.com sub.example.com\n"},
	{name: "domain-file", body: "query = SELECT v1, v2 FROM T WHERE k = '%s'\ndomain = a.b.c.d.e DOMAINFILE\n"},
	{name: "legacy", body: "table = T\nselect_field = v1\nwhere_field = k\nadditional_conditions = AND v1 <> 'second@x.org'\n"},
	{name: "limit", body: "query = SELECT v1 FROM T WHERE k = '%s'\nexpansion_limit = 2\n"},
	{name: "continued", body: "query = SELECT v1\n  FROM T \n# comment inside\n\tWHERE k = '%s'\n"},
	{name: "function", types: "pgsql", body: "select_function = F\n"},
}

// sqlTestPrepare writes the case's .cf file for server s.
func sqlTestPrepare(t *testing.T, s *sqlTestServer, c sqlTestCase, table, fn string) string {
	body := strings.ReplaceAll(c.body, " T ", " "+table+" ")
	body = strings.ReplaceAll(body, "= T\n", "= "+table+"\n")
	body = strings.ReplaceAll(body, "= F\n", "= "+fn+"\n")
	if strings.Contains(body, "DOMAINFILE") {
		df := filepath.Join(t.TempDir(), "domains")
		os.WriteFile(df, []byte("# domains\nexample.com\n\nsub.example.com\n"), 0o644)
		os.Chmod(filepath.Dir(df), 0o755)
		body = strings.ReplaceAll(body, "DOMAINFILE", df)
	}
	return s.cf(t, body)
}

// sqlTestOurs renders lookups as "postmap -q -" prints them.
func sqlTestOurs(t *testing.T, m Map, keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		v, ok, err := m.Lookup(context.Background(), k)
		if err != nil {
			t.Errorf("lookup %q: %v", k, err)
			continue
		}
		if ok {
			fmt.Fprintf(&b, "%s\t%s\n", k, v)
		}
	}
	return b.String()
}

// TestSQLDifferential compares each table type with Postfix's own client
// (postmap -q - from postfix-pgsql, postfix-mysql, postfix-sqlite) on the
// same tables and .cf files, byte for byte.
func TestSQLDifferential(t *testing.T) {
	dir := sqlTestConfigDir(t)
	for _, server := range sqlTestServers(t) {
		s := server(t)
		t.Run(s.typ, func(t *testing.T) {
			table := s.table(t, sqlTestRows)
			fn := ""
			if s.typ == "pgsql" {
				fn = table + "_fn"
				if _, err := s.db.Exec("CREATE FUNCTION " + fn + "(text) RETURNS SETOF text AS 'SELECT v1 FROM " + table + " WHERE k = $1' LANGUAGE sql"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.db.Exec("DROP FUNCTION " + fn + "(text)") })
			}
			for _, c := range sqlTestCases {
				if c.types != "" && !strings.Contains(c.types, s.typ) {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					cf := sqlTestPrepare(t, s, c, table, fn)
					keys := sqlTestKeys
					if c.name == "limit" {
						// alice has two rows; two results are within the limit.
						keys = append([]string{}, sqlTestKeys...)
					}
					stdin := strings.Join(keys, "\n") + "\n"
					res := oracle.Run(t, []byte(stdin), "postmap", "-c", dir, "-q", "-", s.typ+":"+cf)
					if res.Code != 0 && res.Code != 1 {
						t.Fatalf("postmap exit %d: %s", res.Code, res.Stderr)
					}
					if strings.Contains(string(res.Stderr), "fatal") {
						t.Fatalf("postmap failed: %s", res.Stderr)
					}
					// Every case finds some key; two empty outputs would
					// compare equal and prove nothing.
					if len(res.Stdout) == 0 {
						t.Fatalf("postmap found no key (stderr %q): the comparison proves nothing", res.Stderr)
					}
					m, _ := s.open(t, cf)
					got := sqlTestOurs(t, m, keys)
					if got != string(res.Stdout) {
						t.Errorf("postkit and postmap differ for %s\n--- postkit\n%s--- postmap\n%s--- postmap stderr\n%s",
							c.name, got, res.Stdout, res.Stderr)
					}
				})
			}
		})
	}
}

// TestSQLExpansionLimit: more results than expansion_limit is a temporary
// error in both implementations (postmap reports it as a fatal query error).
func TestSQLExpansionLimit(t *testing.T) {
	dir := sqlTestConfigDir(t)
	for _, server := range sqlTestServers(t) {
		s := server(t)
		t.Run(s.typ, func(t *testing.T) {
			table := s.table(t, sqlTestRows)
			cf := s.cf(t, "query = SELECT v1 FROM "+table+" WHERE k = '%s'\nexpansion_limit = 1\n")
			res := oracle.Run(t, nil, "postmap", "-c", dir, "-q", "alice@example.com", s.typ+":"+cf)
			if res.Code == 0 || !strings.Contains(string(res.Stderr), "Expansion limit exceeded") {
				t.Fatalf("postmap: exit %d, stderr %s", res.Code, res.Stderr)
			}
			m, warns := s.open(t, cf)
			_, ok, err := m.Lookup(context.Background(), "alice@example.com")
			if ok || !IsTemporary(err) {
				t.Fatalf("got ok=%v err=%v, want a temporary error", ok, err)
			}
			if len(*warns) == 0 || !strings.Contains((*warns)[0], "Expansion limit exceeded") {
				t.Errorf("warnings %q", *warns)
			}
			// One result is within the limit.
			if v, ok, err := m.Lookup(context.Background(), "carol"); err != nil || !ok || v != "carol@local" {
				t.Errorf("carol: %q %v %v", v, ok, err)
			}
		})
	}
}

// TestSQLInjection proves that keys cannot change the query: each attack
// key finds nothing (and the table survives), while keys that really hold
// those characters find exactly their row.
func TestSQLInjection(t *testing.T) {
	attacks := []string{
		"' OR '1'='1", "' OR 1=1 -- ", `\' OR 1=1 -- `, `\\' OR 1=1 -- `,
		"x'; DROP TABLE T; --", `" OR "1"="1`, `\" OR 1=1 -- `, "x\x00' OR '1'='1",
		"\x00", "x'\x1a OR 1=1 #", "x\\", "' UNION SELECT v1 FROM T WHERE k='secret",
		"x\n' OR 1=1 -- ", "x\r' OR 1=1 -- ",
	}
	literal := []string{"o'neil@example.com", `c:\path\'x`, `both\"quotes'`, "a\\\\b", "it''s", "ctl\x1az", "nl\nx"}
	templates := []string{"'%s'", "'%u@%d'"}
	for _, server := range sqlTestServers(t) {
		s := server(t)
		t.Run(s.typ, func(t *testing.T) {
			rows := [][3]any{{"secret", "TOPSECRET", nil}}
			for i, k := range literal {
				rows = append(rows, [3]any{k, fmt.Sprintf("found-%d", i), nil})
			}
			table := s.table(t, rows)
			tmpls := templates
			if s.typ == "mysql" {
				tmpls = append(tmpls, `"%s"`) // MySQL also takes double-quoted strings
			}
			for _, tmpl := range tmpls {
				cf := s.cf(t, "query = SELECT v1 FROM "+table+" WHERE k = "+tmpl+"\n")
				m, _ := s.open(t, cf)
				for _, a := range attacks {
					a = strings.ReplaceAll(a, " T ", " "+table+" ")
					v, ok, err := m.Lookup(context.Background(), a)
					if ok || err != nil {
						t.Errorf("%s: attack key %q: got %q ok=%v err=%v", tmpl, a, v, ok, err)
					}
				}
				if tmpl == "'%s'" || tmpl == `"%s"` {
					for i, k := range literal {
						v, ok, err := m.Lookup(context.Background(), k)
						if strings.ContainsRune(k, 0) {
							continue
						}
						if want := fmt.Sprintf("found-%d", i); !ok || err != nil || v != want {
							t.Errorf("%s: key %q: got %q ok=%v err=%v, want %q", tmpl, k, v, ok, err, want)
						}
					}
				}
			}
			var n int
			if err := s.db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil || n != len(rows) {
				t.Errorf("table after attacks: %d rows, err %v", n, err)
			}
		})
	}
}

// TestSQLMySQLNoBackslashEscapes: a server-wide NO_BACKSLASH_ESCAPES does
// not turn backslashes in keys into quote breakers.
func TestSQLMySQLNoBackslashEscapes(t *testing.T) {
	s := sqlTestMy(t)
	table := s.table(t, [][3]any{{`a\'b`, "right", nil}, {"secret", "TOPSECRET", nil}})
	var mode string
	if err := s.db.QueryRow("SELECT @@GLOBAL.sql_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec("SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES')"); err != nil {
		// The server is reachable as root: not being able to set the
		// mode is a broken setup, not a reason to skip.
		t.Fatalf("cannot set the global sql_mode: %v", err)
	}
	t.Cleanup(func() { s.db.Exec("SET GLOBAL sql_mode = ?", mode) })
	m, _ := s.open(t, s.cf(t, "query = SELECT v1 FROM "+table+" WHERE k = '%s'\n"))
	if v, ok, err := m.Lookup(context.Background(), `a\'b`); !ok || v != "right" {
		t.Errorf(`a\'b: %q %v %v`, v, ok, err)
	}
	if v, ok, err := m.Lookup(context.Background(), `\' OR k='secret' -- `); ok || err != nil {
		t.Errorf("attack: %q %v %v", v, ok, err)
	}
}

// sqlTestClosedPort returns a TCP port on 127.0.0.1 that refuses connections.
func sqlTestClosedPort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return fmt.Sprint(port)
}

// TestSQLServerDown: a closed port is a temporary error, quickly, and the
// host is then left alone (no new connection attempt) for retry_interval.
func TestSQLServerDown(t *testing.T) {
	for _, typ := range []string{"pgsql", "mysql"} {
		t.Run(typ, func(t *testing.T) {
			s := &sqlTestServer{typ: typ, user: "postgres"}
			dir := t.TempDir()
			cf := filepath.Join(dir, "down.cf")
			os.WriteFile(cf, []byte("hosts = 127.0.0.1:"+sqlTestClosedPort(t)+"\nuser = x\ndbname = test\nquery = SELECT '%s'\n"), 0o644)
			m, warns := s.open(t, cf)
			_, ok, err := m.Lookup(context.Background(), "key")
			if ok || !IsTemporary(err) {
				t.Fatalf("got ok=%v err=%v, want a temporary error", ok, err)
			}
			if len(*warns) == 0 || !strings.Contains((*warns)[0], "connect to "+typ+" server") {
				t.Errorf("warnings: %q", *warns)
			}
			_, _, err = m.Lookup(context.Background(), "key")
			if !IsTemporary(err) || !strings.Contains(err.Error(), "no database server available") {
				t.Errorf("second lookup: %v", err)
			}
		})
	}
}

// TestSQLFailover: with one dead and one live host every lookup succeeds.
func TestSQLFailover(t *testing.T) {
	for _, server := range sqlTestServers(t)[:2] {
		s := server(t)
		t.Run(s.typ, func(t *testing.T) {
			table := s.table(t, sqlTestRows)
			live := "127.0.0.1"
			cf := s.cf(t, "query = SELECT v1 FROM "+table+" WHERE k = '%s'\n")
			data, _ := os.ReadFile(cf)
			data = []byte(strings.Replace(string(data), "hosts = "+live, "hosts = inet:127.0.0.1:"+sqlTestClosedPort(t)+", "+live, 1))
			os.WriteFile(cf, data, 0o644)
			m, _ := s.open(t, cf)
			if len(m.hosts) != 2 {
				t.Fatalf("hosts: %d", len(m.hosts))
			}
			for i := 0; i < 20; i++ {
				if v, ok, err := m.Lookup(context.Background(), "carol"); err != nil || !ok || v != "carol@local" {
					t.Fatalf("lookup %d: %q %v %v", i, v, ok, err)
				}
			}
		})
	}
}

// TestSQLQueryError: an error from a live server (a missing table) is a
// temporary error for pgsql and mysql; a query SQLite cannot compile is a
// configuration error.
func TestSQLQueryError(t *testing.T) {
	for _, server := range sqlTestServers(t) {
		s := server(t)
		t.Run(s.typ, func(t *testing.T) {
			m, _ := s.open(t, s.cf(t, "query = SELECT v1 FROM pk_no_such_table_xyz WHERE k = '%s'\n"))
			_, ok, err := m.Lookup(context.Background(), "key")
			if ok || err == nil {
				t.Fatalf("got ok=%v err=%v", ok, err)
			}
			if want := s.typ != "sqlite"; IsTemporary(err) != want {
				t.Errorf("temporary = %v, want %v (%v)", IsTemporary(err), want, err)
			}
			if !strings.Contains(err.Error(), s.typ+":") {
				t.Errorf("error does not name the table: %v", err)
			}
		})
	}
}

// TestSQLTimeout: a slow query ends when the caller's context does.
func TestSQLTimeout(t *testing.T) {
	for _, server := range sqlTestServers(t)[:2] {
		s := server(t)
		t.Run(s.typ, func(t *testing.T) {
			q := "SELECT pg_sleep(5)::text || '%s'"
			if s.typ == "mysql" {
				q = "SELECT CONCAT(SLEEP(5), '%s')"
			}
			m, _ := s.open(t, s.cf(t, "query = "+q+"\n"))
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, ok, err := m.Lookup(ctx, "key")
			if ok || !IsTemporary(err) {
				t.Fatalf("got ok=%v err=%v", ok, err)
			}
			// The lookup ended with the caller's deadline, not when the
			// 5 s query would have returned.
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v does not come from the caller's deadline", err)
			}
			// The host is not taken out of rotation by the caller's deadline.
			m.tmpl.query = "SELECT '%s'"
			if v, ok, err := m.Lookup(context.Background(), "again"); !ok || v != "again" {
				t.Errorf("after timeout: %q %v %v", v, ok, err)
			}
			// The table's own per-host timeout applies too.
			m.timeout = 200 * time.Millisecond
			m.tmpl.query = q
			if _, _, err := m.Lookup(context.Background(), "key"); !IsTemporary(err) {
				t.Errorf("per-host timeout: %v", err)
			}
		})
	}
}

// TestSQLConcurrent runs lookups from many goroutines (run with -race).
func TestSQLConcurrent(t *testing.T) {
	for _, server := range sqlTestServers(t) {
		s := server(t)
		t.Run(s.typ, func(t *testing.T) {
			table := s.table(t, sqlTestRows)
			m, _ := s.open(t, s.cf(t, "query = SELECT v1 FROM "+table+" WHERE k = '%s'\n"))
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for g := 0; g < 16; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 20; i++ {
						k, want := "carol", "carol@local"
						if (g+i)%2 == 0 {
							k, want = "x@a.b.c.d.e", "deep@x"
						}
						v, ok, err := m.Lookup(context.Background(), k)
						if err != nil || !ok || v != want {
							errs <- fmt.Errorf("%s: %q %v %v", k, v, ok, err)
							return
						}
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestSQLInterfaces: Named, Kind and io.Closer.
func TestSQLInterfaces(t *testing.T) {
	s := sqlTestLite(t)
	cf := s.cf(t, "query = SELECT '%s'\n")
	m, _ := s.open(t, cf)
	if got := Map(m).(Named).Name(); got != "sqlite:"+cf {
		t.Errorf("Name = %q", got)
	}
	if KindOf(m) != Fixed {
		t.Error("SQL tables are fixed-key tables")
	}
	if err := Close(m); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestSQLConfigErrors: bad .cf files name the file, line and parameter.
func TestSQLConfigErrors(t *testing.T) {
	cases := []struct{ typ, body, want string }{
		{"pgsql", "hosts = x\nquery SELECT 1\n", "line 2: missing '=' after attribute name"},
		{"pgsql", "query = SELECT '%x'\n", "line 1: parameter query: invalid query template"},
		{"mysql", "query = SELECT '%s'\nresult_format = %s%\n", "line 2: parameter result_format: invalid result template"},
		{"mysql", "query = SELECT '%s'\n\nexpansion_limit = many\n", "line 3: parameter expansion_limit: bad numerical configuration"},
		{"pgsql", "query = SELECT '%s'\nexpansion_limit = -1\n", "line 2: parameter expansion_limit: invalid value -1 < 0"},
		{"mysql", "query = SELECT '%s'\nrequire_result_set = maybe\n", "line 2: parameter require_result_set: bad boolean"},
		{"sqlite", "query = SELECT '%s'\n", "parameter dbpath"},
		{"pgsql", "user = x\n", "neither 'query' nor the obsolete 'table' parameter"},
		{"mysql", "hosts = h:nosuchservice\nquery = SELECT '%s'\n", "line 1: parameter hosts"},
		{"pgsql", "query = SELECT '%s'\ndomain = /no/such/file\n", "line 2: parameter domain"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		cf := filepath.Join(dir, "bad.cf")
		os.WriteFile(cf, []byte(c.body), 0o644)
		_, err := NewRegistry().Open(context.Background(), c.typ+":"+cf, Options{Warn: func(Warning) {}})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), cf) {
			t.Errorf("%s %q: got %v, want %q naming the file", c.typ, c.body, err, c.want)
		}
	}
	if _, err := NewRegistry().Open(context.Background(), "pgsql:relative-name", Options{}); err == nil {
		t.Error("main.cf form: want an error")
	}
}

// TestSQLConfigWarnings: unknown parameters, overridden ones and stray
// continuation lines are warned about; the table still opens.
func TestSQLConfigWarnings(t *testing.T) {
	s := sqlTestLite(t)
	cf := filepath.Join(t.TempDir(), "warn.cf")
	os.WriteFile(cf, []byte("  stray continuation\nquery = SELECT 1\ndbpath = "+s.path+"\nquery = SELECT '%s'\nbogus = 1\n"), 0o644)
	m, warns := s.open(t, cf)
	all := strings.Join(*warns, "\n")
	for _, want := range []string{"line 1: logical line must not start with whitespace",
		"line 4: overriding earlier entry", `line 5: sqlite: unknown parameter "bogus"`} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings %q lack %q", all, want)
		}
	}
	if v, ok, _ := m.Lookup(context.Background(), "K"); !ok || v != "k" {
		t.Errorf("lookup: %q %v", v, ok)
	}
}

// TestSQLExpand checks the template rules without a server.
func TestSQLExpand(t *testing.T) {
	cases := []struct {
		query, result, key string
		want               string // "-" = suppressed
	}{
		{"%s", "%s", "a@b.c", "a@b.c"},
		{"%u|%d", "%s", "a@b.c", "a|b.c"},
		{"%u", "%s", "plain", "plain"},
		{"%u", "%s", "@b.c", "-"},
		{"%d", "%s", "plain", "-"},
		{"%d", "%s", "a@", "-"},
		{"%s", "%d", "plain", "plain"}, // %d in result_format is about the value
		{"%s", "%D", "plain", "-"},     // %D in result_format needs the key's domain
		{"%s", "%U", "@b.c", "-"},
		{"%1.%2", "%s", "a@b.c", "c.b"},
		{"%3", "%s", "a@b.c", "-"},
		{"%3", "%s", "a@x..b.c", "x"},
		{"%s", "%2", "a@b", "-"},
		{"100%%%s", "%s", "k", "100%k"},
		{"%S%U%D", "%s", "u@d.e", "u@d.eud.e"},
		{"x", "%s", "k", "x"},
		{"%s", "%s", "", "-"},
		{"%u", "%s", "x@y@z", "x@y"},
	}
	for _, c := range cases {
		var tm sqlTemplates
		tm.query, tm.result = c.query, c.result
		if err := tm.sqlParseTemplate(c.query, true); err != nil {
			t.Fatal(err)
		}
		if err := tm.sqlParseTemplate(c.result, false); err != nil {
			t.Fatal(err)
		}
		got, ok := tm.sqlExpandQuery(c.key, nil)
		if !ok {
			got = "-"
		}
		if got != c.want {
			t.Errorf("query %q result %q key %q: got %q, want %q", c.query, c.result, c.key, got, c.want)
		}
	}
	results := []struct{ format, value, key, want string }{
		{"%s", "v", "k", "v"},
		{"[%s]", "", "k", ""},
		{"%u", "user@dom", "k", "user"},
		{"%u", "@dom", "k", ""},
		{"%u", "plain", "k", "plain"},
		{"%d", "plain", "k", ""},
		{"%d", "u@", "k", ""},
		{"%d", "u@dom", "k", "dom"},
		{"%s %S %U %D %1", "v", "ku@kd.org", "v ku@kd.org ku kd.org org"},
	}
	for _, c := range results {
		var tm sqlTemplates
		tm.result = c.format
		if err := tm.sqlParseTemplate(c.format, false); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		tm.sqlExpandResult(&b, c.value, c.key)
		if b.String() != c.want {
			t.Errorf("result %q value %q key %q: got %q, want %q", c.format, c.value, c.key, b.String(), c.want)
		}
	}
	for _, bad := range []string{"%", "%x", "a%", "%0", "%a"} {
		var tm sqlTemplates
		if err := tm.sqlParseTemplate(bad, true); err == nil {
			t.Errorf("template %q: want an error", bad)
		}
	}
}

// TestSQLQuote checks the escaping functions.
func TestSQLQuote(t *testing.T) {
	cases := []struct{ in, pgOn, pgOff, my, lite string }{
		{"plain", "plain", "plain", "plain", "plain"},
		{"it's", "it''s", "it''s", `it\'s`, "it''s"},
		{`a\b`, `a\b`, `a\\b`, `a\\b`, `a\b`},
		{`"q"`, `"q"`, `"q"`, `\"q\"`, `"q"`},
		{"n\nr\rz\x1a", "n\nr\rz\x1a", "n\nr\rz\x1a", `n\nr\rz\Z`, "n\nr\rz\x1a"},
		{"nul\x00'", "nul''", "nul''", `nul\0\'`, "nul''"},
	}
	for _, c := range cases {
		if got := sqlQuotePgSQL(c.in, true); got != c.pgOn {
			t.Errorf("pgsql (standard strings) %q: %q, want %q", c.in, got, c.pgOn)
		}
		if got := sqlQuotePgSQL(c.in, false); got != c.pgOff {
			t.Errorf("pgsql (backslash strings) %q: %q, want %q", c.in, got, c.pgOff)
		}
		if got := sqlQuoteMySQL(c.in); got != c.my {
			t.Errorf("mysql %q: %q, want %q", c.in, got, c.my)
		}
		if got := sqlQuoteSQLite(c.in); got != c.lite {
			t.Errorf("sqlite %q: %q, want %q", c.in, got, c.lite)
		}
	}
	for f, want := range map[float64]string{1: "1.0", 1.5: "1.5", 1e20: "1.0e+20", 0.1: "0.1", -2.25: "-2.25", 123456789012345678: "1.23456789012346e+17"} {
		if got := sqlLiteFloat(f); got != want {
			t.Errorf("sqlite float %v: %q, want %q", f, got, want)
		}
	}
}

// ---- benchmarks ----------------------------------------------------------

func sqlBenchLookup(b *testing.B, s *sqlTestServer) {
	table := s.table(b, sqlTestRows)
	m, _ := s.open(b, s.cf(b, "query = SELECT v1 FROM "+table+" WHERE k = '%s'\n"))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok, err := m.Lookup(ctx, "Alice@Example.com"); !ok || err != nil {
				b.Fatalf("lookup: %v %v", ok, err)
			}
		}
	})
}

func BenchmarkSQLLookupPgSQL(b *testing.B)  { sqlBenchLookup(b, sqlTestPG(b)) }
func BenchmarkSQLLookupMySQL(b *testing.B)  { sqlBenchLookup(b, sqlTestMy(b)) }
func BenchmarkSQLLookupSQLite(b *testing.B) { sqlBenchLookup(b, sqlTestLite(b)) }

// ---- fuzzing -------------------------------------------------------------

// FuzzSQLConfig feeds .cf text to the parser and the template checks.
func FuzzSQLConfig(f *testing.F) {
	f.Add("hosts = a b\nuser = u\nquery = SELECT v FROM t WHERE k = '%s'\n")
	f.Add("query = SELECT '%u' \n  AND '%d'\n# c\nresult_format = %S%%\ndomain = a, !b\n")
	f.Add("  x\n=\nquery\n")
	f.Add("table = t\nselect_field = a\nwhere_field = b\nexpansion_limit = 3\n")
	f.Add("query = %9%1%D%U\nresult_format = %")
	f.Fuzz(func(t *testing.T, text string) {
		opts := Options{Warn: func(Warning) {}}
		conf, err := sqlParseConf("fuzz.cf", []byte(text), &opts)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "maps: fuzz.cf") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, typ := range []string{"pgsql", "mysql", "sqlite"} {
			m := &sqlMap{typ: typ, file: "fuzz.cf", opts: opts}
			if err := m.configure(conf); err == nil {
				m.tmpl.sqlExpandQuery("user@example.com", sqlQuoteSQLite)
			}
		}
	})
}

// FuzzSQLExpand checks that quoting always round-trips: unquoting the
// expansion of '%s' gives the key back, so a key cannot end the literal.
func FuzzSQLExpand(f *testing.F) {
	f.Add("'%s'", "%s", "it's@example.com")
	f.Add("'%u' '%d' %1 %%", "[%s] %U", `a\'b@c.d`)
	f.Add("%S%D%9", "%d %u", "\x00'\"\\\x1a@x")
	f.Fuzz(func(t *testing.T, query, result, key string) {
		var tm sqlTemplates
		tm.query, tm.result = query, result
		if tm.sqlParseTemplate(query, true) != nil || tm.sqlParseTemplate(result, false) != nil {
			return
		}
		for _, q := range []func(string) string{sqlQuoteSQLite, sqlQuoteMySQL,
			func(s string) string { return sqlQuotePgSQL(s, true) },
			func(s string) string { return sqlQuotePgSQL(s, false) }} {
			tm.sqlExpandQuery(key, q)
		}
		var b strings.Builder
		tm.sqlExpandResult(&b, key, key)
		// Round trip of the quoting itself.
		clean := strings.ReplaceAll(key, "\x00", "")
		if got := sqlTestUnquote(sqlQuoteSQLite(key), false, false); got != clean {
			t.Fatalf("sqlite quote of %q does not round-trip: %q", key, got)
		}
		if got := sqlTestUnquote(sqlQuotePgSQL(key, true), false, false); got != clean {
			t.Fatalf("pgsql quote of %q does not round-trip: %q", key, got)
		}
		if got := sqlTestUnquote(sqlQuotePgSQL(key, false), true, false); got != clean {
			t.Fatalf("pgsql (backslash) quote of %q does not round-trip: %q", key, got)
		}
		if got := sqlTestUnquote(sqlQuoteMySQL(key), true, true); got != key {
			t.Fatalf("mysql quote of %q does not round-trip: %q", key, got)
		}
	})
}

// sqlTestUnquote reads s as the body of a '...' literal and fails (returns
// a marker) when an unescaped quote would end it early.
func sqlTestUnquote(s string, backslash, mysqlEsc bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			return "<literal ended early>"
		case c == '\\' && backslash:
			if i+1 >= len(s) {
				return "<dangling backslash>"
			}
			i++
			d := s[i]
			if mysqlEsc {
				switch d {
				case '0':
					d = 0
				case 'n':
					d = '\n'
				case 'r':
					d = '\r'
				case 'Z':
					d = 0x1a
				}
			}
			b.WriteByte(d)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
