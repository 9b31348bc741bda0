package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// pwfOracleFile exercises the passwd-file format: every field form,
// variables in extra fields, the old mail field, libpam-pwdfile's
// "hash[NN]", duplicates, bad ids, comments, CRLF.
func pwfOracleFile() string {
	des := mustCrypt("secret", "ab")
	return strings.Join([]string{
		"# a comment",
		"alice:{PLAIN}secret:1000:1000::/home/alice::userdb_mail=maildir:~/Mail quota=10M",
		"bob:{PLAIN}pw:1001:1001:Bob Builder:/home/bob:/bin/sh::maildir:/var/mail/bob",
		"carl:{SHA512-CRYPT}" + mustCrypt("carl's", "$6$carlsalt") + ":1010:1010",
		"dup:{PLAIN}a:1002:1002",
		"dup:{PLAIN}b:1003:1003",
		"baduid:{PLAIN}a:abc:1000",
		"root0:{PLAIN}a:0:0",
		"expand@example.org:{PLAIN}e:1004:1004::/home/x::userdb_mail=maildir:/var/mail/%d/%n greeting=hello_%u userdb_quota_rule=*:storage=1G",
		"hashed:5ebe2294ecd0e0f08eab7690d2a6ee69[34]:1011:1011",
		"des:" + des + "[13]:1012:1012",
		"nologin:{PLAIN}n:1005:1005:::: nologin reason=Go_away",
		"nologin2:{PLAIN}n:1014:1014:::: nologin=yes reason=%u",
		"spaces:{PLAIN}m:1006:1006::::  a=1   b=2 ",
		"colon:{PLAIN}c:1007:1007:::: x=a:b",
		"bare:{PLAIN}secret",
		"crlf:{PLAIN}crlf:1009:1009\r",
		":leading colon",
		"",
		"last:{PLAIN}last:1013:1013",
	}, "\n")
}

// pwfOracleUsers are looked up in both: name and the right password.
var pwfOracleUsers = [][2]string{
	{"alice", "secret"}, {"bob", "pw"}, {"carl", "carl's"}, {"dup", "a"}, {"dup", "b"},
	{"baduid", "a"}, {"root0", "a"}, {"expand@example.org", "e"}, {"hashed", "secret"},
	{"des", "secret"}, {"nologin", "n"}, {"nologin2", "n"}, {"spaces", "m"}, {"colon", "c"}, {"bare", "secret"},
	{"crlf", "crlf"}, {"last", "last"}, {"nobody", "x"}, {"Alice", "secret"},
}

// startPasswdDovecot runs a private Dovecot (auth service only) whose
// passdb and userdb read the passwd-file at path; it returns the config
// file for doveadm -c.
func startPasswdDovecot(t *testing.T, path string) string {
	return startAuthDovecot(t, "passwd-file", path)
}

// startAuthDovecot runs a private Dovecot with only its auth service,
// passdb and userdb both of driver with args, and stops it when the test
// ends. It returns the config file for doveadm -c.
func startAuthDovecot(t *testing.T, driver, args string) string {
	t.Helper()
	bin := oracle.Require(t, "dovecot")
	oracle.Require(t, "doveadm")
	dir, err := os.MkdirTemp("", "pwf") // socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
auth_failure_delay = 0
default_internal_user = %[3]s
default_internal_group = %[4]s
default_login_user = %[3]s
passdb {
  driver = %[5]s
  args = %[2]s
}
userdb {
  driver = %[5]s
  args = %[2]s
}
service auth {
  unix_listener auth-userdb {
    mode = 0666
  }
}
`, dir, args, me.Username, grp.Name, driver)
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"run", "state"} {
		os.Mkdir(filepath.Join(dir, sub), 0o755)
	}
	cmd := exec.Command(bin, "-F", "-c", confPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	sock := filepath.Join(dir, "run", "auth-userdb")
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return confPath
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("dovecot exited: %s\n%s", out.String(), log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot did not start: %s", out.String())
		}
	}
}

// dovecotPassdb runs doveadm auth test: did the password verify, and the
// extra fields (without user and original_user, which are Dovecot's
// bookkeeping).
func dovecotPassdb(t *testing.T, conf, name, pass string) (bool, map[string]string) {
	// no-penalty: Dovecot otherwise slows down every failed login after
	// the first by seconds (auth_penalty), even with auth_failure_delay 0.
	res, err := oracle.Exec(oracle.Require(t, "doveadm"), nil, "-c", conf, "auth", "test", "-x", "no-penalty", name, pass)
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Stdout)
	ok := strings.Contains(out, "auth succeeded")
	if !ok && !strings.Contains(out, "auth failed") {
		t.Fatalf("doveadm auth test %s: exit %d %s%s", name, res.Code, out, res.Stderr)
	}
	fields := map[string]string{}
	_, after, _ := strings.Cut(out, "extra fields:\n")
	for _, l := range strings.Split(after, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		if k != "user" && k != "original_user" {
			fields[k] = v
		}
	}
	return ok, fields
}

// dovecotUserdb runs doveadm user: nil when the user does not exist.
func dovecotUserdb(t *testing.T, conf, name string) map[string]string {
	res, err := oracle.Exec(oracle.Require(t, "doveadm"), nil, "-c", conf, "user", name)
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Stdout)
	if strings.Contains(out, "doesn't exist") {
		return nil
	}
	if res.Code != 0 {
		t.Fatalf("doveadm user %s: exit %d %s%s", name, res.Code, out, res.Stderr)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(out, "\n")[1:] {
		if k, v, ok := strings.Cut(l, "\t"); ok {
			fields[k] = v
		}
	}
	return fields
}

// TestPasswdFileAgainstDovecot reads the same passwd-file with Dovecot
// 2.3 and with PasswdFile behind an Authenticator (auth_username_format
// %Lu in both), and compares what a login and a userdb lookup give.
func TestPasswdFileAgainstDovecot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	if err := os.WriteFile(path, []byte(pwfOracleFile()), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	conf := startPasswdDovecot(t, path)
	logs := &captureLog{}
	db, err := OpenPasswdFile(path, PasswdFileOptions{Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{PassDB: db, UserDB: db, FailureDelay: -1, Logger: discardLog}
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range pwfOracleUsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wantOK, wantExtra := dovecotPassdb(t, conf, c[0], c[1])
			wantUser := dovecotUserdb(t, conf, c[0])
			mu.Lock()
			defer mu.Unlock()

			u, err := a.Verify(ctx, c[0], c[1])
			gotOK := err == nil
			if errors.Is(err, ErrBadPassword) && strings.Contains(err.Error(), "nologin") {
				gotOK = true // Dovecot's "auth succeeded" + nologin: a refusal the client sees
			}
			if gotOK != wantOK {
				t.Errorf("%s: our login %v (%v), Dovecot's %v", c[0], gotOK, err, wantOK)
			}
			if wantOK {
				creds, _ := db.LookupCredentials(ctx, strings.ToLower(c[0]))
				got := map[string]string{}
				for k, v := range creds.Extra {
					if !strings.HasPrefix(k, "userdb_") {
						got[k] = v
					}
				}
				if !maps.Equal(got, wantExtra) {
					t.Errorf("%s: our passdb extra fields %v, Dovecot's %v (user %+v)", c[0], got, wantExtra, u)
				}
			}

			uu, err := a.LookupUser(ctx, c[0])
			if wantUser == nil {
				if err == nil {
					t.Errorf("%s: we have a userdb entry %+v, Dovecot has none", c[0], uu)
				}
				return
			}
			if err != nil {
				t.Errorf("%s: LookupUser: %v; Dovecot has %v", c[0], err, wantUser)
				return
			}
			// doveadm user lists home and mail even when empty, and
			// "user" when the name changed.
			if n := wantUser["user"]; n != "" && n != uu.Name {
				t.Errorf("%s: our userdb name %q, Dovecot's %q", c[0], uu.Name, n)
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
			if uu.UID >= 0 {
				got["uid"] = fmt.Sprint(uu.UID)
			}
			if uu.GID >= 0 {
				got["gid"] = fmt.Sprint(uu.GID)
			}
			if uu.Home != "" {
				got["home"] = uu.Home
			}
			if uu.Mail != "" {
				got["mail"] = uu.Mail
			}
			if !maps.Equal(got, wantUser) {
				t.Errorf("%s: our userdb fields %v, Dovecot's %v", c[0], got, wantUser)
			}
		}()
	}
	wg.Wait()
	// The skipped lines were reported with file:line.
	for _, want := range []string{path + ":6: user \"dup\" exists more than once", path + ":7: user \"baduid\"", path + ":8: user \"root0\""} {
		if !slices.ContainsFunc(logs.messages(), func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("warnings do not mention %q: %q", want, logs.messages())
		}
	}
}

// captureLog is a slog.Handler keeping the messages.
type captureLog struct {
	mu   sync.Mutex
	msgs []string
}

func (c *captureLog) Enabled(context.Context, slog.Level) bool { return true }
func (c *captureLog) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, r.Message)
	return nil
}
func (c *captureLog) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *captureLog) WithGroup(string) slog.Handler      { return c }
func (c *captureLog) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPasswdFileReload: a changed file is read again at the next lookup;
// a vanished one is a temporary failure.
func TestPasswdFileReload(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, path, "u:{PLAIN}one\n")
	db, err := OpenPasswdFile(path, PasswdFileOptions{Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	check := func(want string) {
		t.Helper()
		c, err := db.LookupCredentials(ctx, "u")
		if err != nil || c.Password != want {
			t.Fatalf("password %q, %v; want %q", c.Password, err, want)
		}
	}
	check("{PLAIN}one")
	// Same size, same second: the inode of a renamed-over file differs.
	tmp := path + ".new"
	writeFile(t, tmp, "u:{PLAIN}two\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	check("{PLAIN}two")
	// Rewritten in place with another size.
	writeFile(t, path, "u:{PLAIN}three\nv:{PLAIN}x\n")
	check("{PLAIN}three")
	os.Remove(path)
	if _, err := db.LookupCredentials(ctx, "u"); !errors.Is(err, ErrTemporary) {
		t.Errorf("lookup in a vanished file: %v, want ErrTemporary", err)
	}
	writeFile(t, path, "u:{PLAIN}four\n")
	check("{PLAIN}four")
	if _, err := OpenPasswdFile(path+".missing", PasswdFileOptions{}); err == nil {
		t.Errorf("OpenPasswdFile of a missing file succeeded")
	}
}

// TestPasswdFileVariablePath: one file per domain, with username_format
// %n, and variables that would leave the directory.
func TestPasswdFileVariablePath(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "example.org"), 0o755)
	os.Mkdir(filepath.Join(dir, "example.net"), 0o755)
	writeFile(t, filepath.Join(dir, "example.org", "passwd"), "joe:{PLAIN}org:1000:1000::/home/joe::userdb_mail=maildir:/m/%d/%n\n")
	writeFile(t, filepath.Join(dir, "example.net", "passwd"), "joe:{PLAIN}net\n")
	writeFile(t, filepath.Join(dir, "passwd"), "joe:{PLAIN}top\n")
	db, err := OpenPasswdFile(dir+"/%d/passwd", PasswdFileOptions{UsernameFormat: "%n", Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, pass string
		want       error
	}{
		{"joe@example.org", "{PLAIN}org", nil},
		{"joe@example.net", "{PLAIN}net", nil},
		{"ann@example.org", "", ErrUnknownUser},
		{"joe@example.com", "", ErrUnknownUser},  // no such file
		{"joe@..", "", ErrUnknownUser},           // would read dir/../passwd
		{"joe@.", "", ErrUnknownUser},            // would read dir/./passwd
		{"joe", "", ErrUnknownUser},              // no domain
		{"joe@example.org/x", "{PLAIN}org", nil}, // Dovecot cuts at '/'
	} {
		got, err := db.LookupCredentials(ctx, c.user)
		if c.want != nil {
			if !errors.Is(err, c.want) {
				t.Errorf("%s: %+v, %v; want %v", c.user, got, err, c.want)
			}
			continue
		}
		if err != nil || got.Password != c.pass {
			t.Errorf("%s: %+v, %v; want %q", c.user, got, err, c.pass)
		}
	}
	u, err := db.LookupUser(ctx, "joe@example.org")
	if err != nil || u.Mail != "maildir:/m/example.org/joe" || u.UID != 1000 || u.Home != "/home/joe" {
		t.Errorf("LookupUser = %+v, %v", u, err)
	}
	if s := db.PasswordSchemes(); s != nil {
		t.Errorf("PasswordSchemes of a variable path = %q, want nil", s)
	}
}

// TestPasswdFileSchemes: the schemes present decide whether the
// Authenticator offers CRAM-MD5 and SCRAM-SHA-256 by default.
func TestPasswdFileSchemes(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		file    string
		schemes []string
		mechs   []string
	}{
		{"a:{PLAIN}x\nb:{CRAM-MD5}" + strings.Repeat("00", 32) + "\n", []string{"CRAM-MD5", "PLAIN"}, []string{"PLAIN", "LOGIN", "CRAM-MD5"}},
		{"a:{PLAIN}x\nb:{plain.b64}eA==\n", []string{"PLAIN"}, []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"}},
		{"a:{PLAIN}x\nb:$1$abc$def\n", []string{"MD5-CRYPT", "PLAIN"}, []string{"PLAIN", "LOGIN"}},
		{"a:secret\n", []string{"CRYPT"}, []string{"PLAIN", "LOGIN"}},
	} {
		path := filepath.Join(dir, "passwd")
		writeFile(t, path, c.file)
		db, err := OpenPasswdFile(path, PasswdFileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := db.PasswordSchemes(); !slices.Equal(got, c.schemes) {
			t.Errorf("%q: schemes %q, want %q", c.file, got, c.schemes)
		}
		a := &Authenticator{PassDB: db}
		if got := a.Mechanisms(SecurityOptions{}); !slices.Equal(got, c.mechs) {
			t.Errorf("%q: mechanisms %q, want %q", c.file, got, c.mechs)
		}
	}
}

// TestPasswdFileDefaultScheme: bare passwords get the file's scheme.
func TestPasswdFileDefaultScheme(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, path, "a:secret\nb:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\nc:"+mustCrypt("secret", "$1$saltsalt")+"\n")
	db, err := OpenPasswdFile(path, PasswdFileOptions{DefaultScheme: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{PassDB: db, FailureDelay: -1, Logger: discardLog}
	for _, u := range []string{"a", "b", "c"} {
		if _, err := a.Verify(context.Background(), u, "secret"); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if _, err := OpenPasswdFile(path, PasswdFileOptions{DefaultScheme: "NOSUCH"}); !errors.Is(err, ErrUnknownScheme) {
		t.Errorf("unknown default scheme: %v", err)
	}
}
