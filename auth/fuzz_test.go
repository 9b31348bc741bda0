package auth

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// FuzzPasswdFile: any file parses without a panic; every user kept has a
// password that is empty or carries a scheme, and warnings point at real
// lines.
func FuzzPasswdFile(f *testing.F) {
	f.Add([]byte(pwfOracleFile()))
	f.Add([]byte("u:pass[34]\nv:x[13]:1:1\n:x\n#c\nw::::::::a:b\n"))
	f.Add([]byte("a:{PLAIN}x:1:2:g:/h:/s:k=%u v=%{domain} bad=%q\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		users, _ := parsePasswdFile(data, "CRYPT", func(line int, msg string) {
			if line < 1 || line > lines {
				t.Fatalf("warning for line %d of %d: %s", line, lines, msg)
			}
		})
		for name, e := range users {
			if e.password != "" && !strings.HasPrefix(e.password, "{") {
				t.Fatalf("user %q: password %q has no scheme", name, e.password)
			}
			for _, x := range e.extra {
				if x.value != nil {
					x.value.expand(&varValues{user: name}, nil)
				}
			}
		}
	})
}

// fuzzNumber finds decimal numbers, to keep costly parameters out.
var fuzzNumber = regexp.MustCompile(`[0-9]+`)

// fuzzCheap reports whether verifying stored stays fast: no cost
// parameter above a few thousand, bcrypt costs below 8, short extended
// DES counts.
func fuzzCheap(stored string) bool {
	for _, n := range fuzzNumber.FindAllString(stored, -1) {
		if v, err := strconv.Atoi(n); err != nil || v > 5000 {
			return false
		}
	}
	if strings.Contains(stored, "argon2") {
		// Memory and passes multiply: keep each small.
		for _, n := range fuzzNumber.FindAllString(stored, -1) {
			if v, _ := strconv.Atoi(n); v > 256 && n != "19" {
				return false
			}
		}
	}
	if i := strings.Index(stored, "$2"); i >= 0 && len(stored) > i+6 {
		if c, err := strconv.Atoi(stored[i+4 : i+6]); err == nil && c > 7 {
			return false
		}
	}
	if i := strings.IndexByte(stored, '_'); i >= 0 && len(stored) >= i+5 {
		var count int
		for j := 0; j < 4; j++ {
			count |= max(cryptIndex(stored[i+1+j]), 0) << (6 * j)
		}
		if count > 5000 {
			return false
		}
	}
	return true
}

// FuzzVerifyPassword: stored passwords of any shape (scheme prefixes,
// encodings, crypt strings) never panic, and a match is never an error.
func FuzzVerifyPassword(f *testing.F) {
	for _, s := range []string{
		"{PLAIN}secret", "{SHA.HEX}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4", "{SSHA}OKGiOuzg7xLfsdm9X8xXvvLKaLPzM5JL",
		"$1$abcdefgh$yTpYrEJJOuAsO2Aee15/D1", "{CRYPT}abJnggxhB/yWI", "{CRYPT}_J9..abcdHo.boR5vxkk",
		"{SHA512-CRYPT}$6$rounds=1000$ab$x", "{BLF-CRYPT}$2y$04$uL09UvjDbIq8FImedWk0ROp9wQeT4A9ZDQPm9hzRJPnSPacMRwNWO",
		"{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", "{SCRAM-SHA-256}4096,c2FsdA==,AAAA,AAAA",
		"{PBKDF2}$1$abc$1000$e1324284f46b0ce3a96e0e56b53ffc4fcc82ffb4", "{PLAIN-TRUNC}3-sec", "{CRAM-MD5.B64}AAAA",
		"{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", "{", "{}", "{.}", "$1$", "",
	} {
		f.Add(s, "secret")
	}
	f.Fuzz(func(t *testing.T, stored, plain string) {
		if !fuzzCheap(stored) {
			t.Skip()
		}
		ok, err := VerifyPassword(stored, plain, "")
		if ok && err != nil {
			t.Fatalf("VerifyPassword(%q) = true with error %v", stored, err)
		}
		name, value := SplitScheme(stored, "PLAIN")
		if !strings.HasSuffix(stored, value) || name != strings.ToUpper(name) {
			t.Fatalf("SplitScheme(%q) = %q, %q", stored, name, value)
		}
		plaintextOf(stored, "")
		cramSecretOf(stored, "")
	})
}

// fuzzMechAuth is an Authenticator with one user, u / pw, stored as
// plaintext so that every mechanism can serve it.
func fuzzMechAuth() *Authenticator {
	return &Authenticator{
		PassDB: PassDBFunc(func(ctx context.Context, user string) (Credentials, error) {
			if user == "u" {
				return Credentials{User: "u", Password: "{PLAIN}pw"}, nil
			}
			return Credentials{}, ErrUnknownUser
		}),
		AuthMechanisms: []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"},
		FailureDelay:   -1,
		Logger:         discardLog,
		Hostname:       "h",
	}
}

// FuzzMechanisms feeds the mechanisms responses of any kind (split at
// 0xff into steps): no panic, errors carry the package's error values, and
// a success needs the password (PLAIN, LOGIN) or never happens with
// made-up data (CRAM-MD5, SCRAM, whose responses depend on the server's
// random challenge).
func FuzzMechanisms(f *testing.F) {
	f.Add(uint8(0), []byte("\x00u\x00pw"))
	f.Add(uint8(0), []byte("u\x00u\x00pw"))
	f.Add(uint8(1), []byte("\xffu\xffpw"))
	f.Add(uint8(2), []byte("\xffu 0123456789abcdef0123456789abcdef"))
	f.Add(uint8(3), []byte("n,,n=u,r=abc\xffc=biws,r=abcdef,p=AAAA"))
	f.Add(uint8(3), []byte("y,a=u,n=u,r=abc\xff\xff"))
	mechs := []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"}
	a := fuzzMechAuth()
	f.Fuzz(func(t *testing.T, which uint8, input []byte) {
		mech := mechs[int(which)%len(mechs)]
		m, err := a.NewMech(mech)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		steps := bytes.Split(input, []byte{0xff})
		for i, step := range steps {
			if i == 0 && len(step) == 0 {
				step = nil
			}
			_, done, err := m.Next(ctx, step)
			if err != nil {
				if !errors.Is(err, ErrMechanism) && !errors.Is(err, ErrBadPassword) && !errors.Is(err, ErrUnknownUser) {
					t.Fatalf("%s: error %v wraps none of the package's errors", mech, err)
				}
				return
			}
			if done {
				switch mech {
				case "PLAIN", "LOGIN":
					if !bytes.Contains(input, []byte("pw")) || m.User() != "u" {
						t.Fatalf("%s accepted %q as %q", mech, input, m.User())
					}
				default:
					t.Fatalf("%s accepted made-up input %q", mech, input)
				}
				return
			}
		}
	})
}

// FuzzTemplate: any %-template parses or fails cleanly, and expands.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"%u", "%Lu", "%{user}", "%1.2n", "%R%U{domain}", "%%", "%", "%{", "%9999999999n", "/home/%d/%n"} {
		f.Add(s, "User@Example.org")
	}
	f.Fuzz(func(t *testing.T, tmpl, user string) {
		p, err := parseTemplate(tmpl)
		if err != nil {
			return
		}
		p.expand(&varValues{user: user}, strings.ToUpper)
		if !strings.Contains(tmpl, "%") && p.expand(&varValues{user: user}, nil) != tmpl {
			t.Fatalf("a template without %% changed: %q", tmpl)
		}
	})
}

// FuzzCompileSQL: any query compiles or fails cleanly; the number of
// placeholders matches the parameters.
func FuzzCompileSQL(f *testing.F) {
	for _, s := range []string{
		DefaultSQLPasswordQuery, DefaultSQLUserQuery,
		"SELECT 'it''s' WHERE a = 'it''s %u' AND b = %{rip}", `SELECT "x" FROM t WHERE a = "%u" -- c`,
		"SELECT 1 /* c */ WHERE a LIKE '%%x%%'", `SELECT 'a\'%u'`,
	} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
		f.Add(s, uint8(2))
	}
	drivers := []string{"pgsql", "mysql", "sqlite"}
	f.Fuzz(func(t *testing.T, q string, d uint8) {
		driver := drivers[int(d)%len(drivers)]
		c, err := compileSQL(q, driver)
		if err != nil {
			return
		}
		if driver == "pgsql" {
			for i := range c.args {
				if !strings.Contains(c.text, "$"+strconv.Itoa(i+1)) {
					t.Fatalf("%q → %q lacks $%d", q, c.text, i+1)
				}
			}
		} else if n := strings.Count(c.text, "?"); n < len(c.args) {
			t.Fatalf("%q → %q has %d placeholders for %d parameters", q, c.text, n, len(c.args))
		}
		for _, a := range c.args {
			a.expand(&varValues{user: "u@d"}, nil)
		}
	})
}

// FuzzSQLConfig: any dovecot-sql.conf.ext text parses or fails cleanly.
func FuzzSQLConfig(f *testing.F) {
	f.Add([]byte("driver = pgsql\nconnect = host=x\npassword_query = SELECT \\\n  1\n# c\n"))
	f.Add([]byte("connect = \"a \\\" b\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseSQLConfig(data, "fuzz.conf")
	})
}
