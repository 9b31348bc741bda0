package auth

// Dovecot's passwd-file database
// (doc.dovecot.org/2.3/configuration_manual/authentication/passwd_file/):
//
//	user:password:uid:gid:(gecos):home:(shell):extra_fields
//
// One user per line. Empty lines and lines starting with '#' or ':' are
// skipped. Fields after the password may be left out; the extra fields
// are space-separated "key=value" (or bare "key") words, and may contain
// %-variables. The old form with an empty 8th field puts the mail
// location in the 9th (read as userdb_mail). A password written as
// "hash[13]", "hash[34]" or "hash[56]" is libpam-pwdfile's notation for
// CRYPT, PLAIN-MD5 and DIGEST-MD5.
//
// As in Dovecot, the file is checked on every lookup and read again when
// its size, modification time or inode changed. A line that cannot be used
// (a user listed twice, a bad uid or gid, a bad extra field) is logged
// with file:line and skipped; the rest of the file is used.
//
// Where postkit differs: a path with variables ("/etc/mail/%d/passwd")
// whose file does not exist answers "unknown user" (Dovecot: a temporary
// failure), and a variable in a path that would be empty, "." or ".." also
// answers "unknown user" rather than reading another directory's file.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PasswdFileOptions configure a passwd-file database.
type PasswdFileOptions struct {
	// UsernameFormat is Dovecot's username_format: the key looked up in
	// the file, "%u" (the whole user name) when empty. "%n" looks up the
	// part before the @, for per-domain files.
	UsernameFormat string
	// DefaultScheme is the scheme of passwords written without a
	// "{SCHEME}" prefix (Dovecot's scheme= parameter), CRYPT when empty.
	DefaultScheme string
	// Logger receives the warnings about lines that are skipped; nil means
	// slog.Default().
	Logger *slog.Logger
}

// PasswdFile is a passwd-file database; it is both a PassDB and a UserDB,
// safe for concurrent use.
type PasswdFile struct {
	path    *varTemplate
	userKey *varTemplate
	scheme  string
	log     *slog.Logger
	mu      sync.Mutex
	files   map[string]*pwFile // by expanded path
	fixed   string             // the path when it has no variables
}

// pwFile is one loaded file.
type pwFile struct {
	path    string
	mu      sync.Mutex
	stamp   fileStamp
	users   map[string]*pwEntry
	schemes []string
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// pwEntry is one user's line.
type pwEntry struct {
	line     int
	password string // with a {SCHEME} prefix
	uid, gid int    // -1 when not given
	home     string
	extra    []pwExtra
}

type pwExtra struct {
	key   string
	value *varTemplate // nil for a bare key
}

// OpenPasswdFile opens a passwd-file. A path without variables is read
// now, and an error is returned when it cannot be; a path with variables
// ("/etc/dovecot/%d/passwd") is expanded per lookup, each file read when
// first needed.
func OpenPasswdFile(path string, opts PasswdFileOptions) (*PasswdFile, error) {
	pt, err := parseTemplate(path)
	if err != nil {
		return nil, fmt.Errorf("auth: passwd-file path: %w", err)
	}
	format := opts.UsernameFormat
	if format == "" {
		format = "%u"
	}
	ut, err := parseTemplate(format)
	if err != nil {
		return nil, fmt.Errorf("auth: passwd-file %s username_format: %w", path, err)
	}
	scheme := opts.DefaultScheme
	if scheme == "" {
		scheme = DefaultPasswordScheme
	}
	if _, _, _, err := lookupScheme(scheme); err != nil {
		return nil, fmt.Errorf("auth: passwd-file %s: default scheme: %w", path, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	db := &PasswdFile{path: pt, userKey: ut, scheme: strings.ToUpper(scheme), log: log, files: map[string]*pwFile{}}
	if !pt.hasVars() {
		db.fixed = pt.expand(&varValues{}, nil)
		f := db.file(db.fixed)
		if err := f.sync(db); err != nil {
			return nil, err
		}
	}
	return db, nil
}

// file returns the loaded-or-not file for an expanded path.
func (db *PasswdFile) file(path string) *pwFile {
	db.mu.Lock()
	defer db.mu.Unlock()
	f := db.files[path]
	if f == nil {
		f = &pwFile{path: path}
		db.files[path] = f
	}
	return f
}

// errNoFile marks a variable path whose file does not exist.
var errNoFile = errors.New("no such passwd-file")

// sync reads the file again when it changed since the last read.
func (f *pwFile) sync(db *PasswdFile) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil {
		f.users = nil
		f.stamp = fileStamp{}
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("auth: passwd-file %s: %w: %w", f.path, errNoFile, err)
		}
		return fmt.Errorf("auth: passwd-file %s: %w: %w", f.path, ErrTemporary, err)
	}
	stamp := fileStamp{size: st.Size(), mtime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		stamp.ino = sys.Ino
	}
	if f.users != nil && stamp == f.stamp {
		return nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("auth: passwd-file %s: %w: %w", f.path, ErrTemporary, err)
	}
	users, schemes := parsePasswdFile(data, db.scheme, func(line int, msg string) {
		db.log.Warn(fmt.Sprintf("auth: passwd-file %s:%d: %s; line skipped", f.path, line, msg),
			"file", f.path, "line", line)
	})
	f.users, f.schemes, f.stamp = users, schemes, stamp
	return nil
}

// parsePasswdFile reads a whole file. Bad lines go to warn and are left
// out. schemes lists the password schemes used (upper case, no suffix).
func parsePasswdFile(data []byte, defScheme string, warn func(line int, msg string)) (map[string]*pwEntry, []string) {
	users := map[string]*pwEntry{}
	var schemes []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" || line[0] == '#' || line[0] == ':' {
			continue
		}
		fields := strings.Split(line, ":")
		name := fields[0]
		if _, dup := users[name]; dup {
			warn(n, fmt.Sprintf("user %q exists more than once (line %d is used)", name, users[name].line))
			continue
		}
		e, err := parsePasswdLine(fields, defScheme)
		if err != nil {
			warn(n, fmt.Sprintf("user %q: %v", name, err))
			continue
		}
		e.line = n
		users[name] = e
		if e.password != "" {
			s, _ := SplitScheme(e.password, defScheme)
			s, _, _ = strings.Cut(s, ".")
			if !slices.Contains(schemes, s) {
				schemes = append(schemes, s)
			}
		}
	}
	slices.Sort(schemes)
	return users, schemes
}

// parsePasswdLine reads the fields of one line after the user name.
func parsePasswdLine(fields []string, defScheme string) (*pwEntry, error) {
	e := &pwEntry{uid: -1, gid: -1}
	get := func(i int) (string, bool) {
		if i < len(fields) {
			return fields[i], true
		}
		return "", false
	}
	pass, _ := get(1)
	if l := len(pass); l > 4 && pass[0] != '{' && pass[0] != '$' && pass[l-1] == ']' && pass[l-4] == '[' {
		// libpam-pwdfile: "hash[NN]".
		switch pass[l-3 : l-1] {
		case "34":
			pass = "{PLAIN-MD5}" + pass[:l-4]
		case "56":
			pass = "{DIGEST-MD5}" + pass[:l-4]
		default:
			pass = "{CRYPT}" + pass[:l-4]
		}
	}
	if pass != "" {
		if s, v := SplitScheme(pass, defScheme); !strings.HasPrefix(pass, "{") {
			pass = "{" + s + "}" + v
		}
	}
	e.password = pass
	var err error
	if v, _ := get(2); v != "" {
		if e.uid, err = parseID(v, true); err != nil {
			return nil, err
		}
	}
	if v, _ := get(3); v != "" {
		if e.gid, err = parseID(v, false); err != nil {
			return nil, err
		}
	}
	e.home, _ = get(5)
	if len(fields) > 7 {
		var words []string
		if fields[7] == "" {
			// Old form: the next field is the mail location.
			if len(fields) > 8 && fields[8] != "" {
				words = []string{"userdb_mail=" + strings.Join(fields[8:], ":")}
			}
		} else {
			words = strings.Fields(strings.Join(fields[7:], ":"))
		}
		for _, w := range words {
			k, v, hasValue := strings.Cut(w, "=")
			if k == "" {
				return nil, fmt.Errorf("extra field %q has no name", w)
			}
			x := pwExtra{key: k}
			if hasValue {
				if x.value, err = parseTemplate(v); err != nil {
					return nil, fmt.Errorf("extra field %s: %v", k, err)
				}
			}
			e.extra = append(e.extra, x)
		}
	}
	return e, nil
}

// parseID reads a uid or gid: a number, or a name from the system's
// user or group database. 0 (root) is refused, as Dovecot does.
func parseID(s string, isUID bool) (int, error) {
	what := "gid"
	if isUID {
		what = "uid"
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		var id string
		if isUID {
			u, lerr := user.Lookup(s)
			if lerr == nil {
				id = u.Uid
			}
		} else {
			g, lerr := user.LookupGroup(s)
			if lerr == nil {
				id = g.Gid
			}
		}
		if n, err = strconv.Atoi(id); err != nil {
			return 0, fmt.Errorf("invalid %s %q", what, s)
		}
	}
	if n <= 0 {
		return 0, fmt.Errorf("invalid %s %q (must be above 0)", what, s)
	}
	return n, nil
}

// lookup finds a user's entry, reading the file if needed.
func (db *PasswdFile) lookup(ctx context.Context, name string) (*pwEntry, *varValues, error) {
	info, _ := ClientInfoFrom(ctx)
	vals := &varValues{user: name, info: info}
	path := db.fixed
	if db.path.hasVars() {
		bad := false
		path = db.path.expand(vals, func(v string) string {
			// Dovecot cuts a value at its first '/'; postkit also refuses
			// values that would name another directory.
			v, _, _ = strings.Cut(v, "/")
			if v == "" || v == "." || v == ".." {
				bad = true
			}
			return v
		})
		if bad {
			return nil, nil, fmt.Errorf("auth: passwd-file %s: user %q: %w", db.path.raw, name, ErrUnknownUser)
		}
	}
	f := db.file(path)
	if err := f.sync(db); err != nil {
		if errors.Is(err, errNoFile) && db.path.hasVars() {
			return nil, nil, fmt.Errorf("auth: passwd-file %s: user %q: %w", path, name, ErrUnknownUser)
		}
		if !errors.Is(err, ErrTemporary) {
			err = fmt.Errorf("%w: %w", ErrTemporary, err)
		}
		return nil, nil, err
	}
	f.mu.Lock()
	users := f.users
	f.mu.Unlock()
	key := db.userKey.expand(vals, nil)
	e := users[key]
	if e == nil {
		return nil, nil, fmt.Errorf("auth: passwd-file %s: user %q: %w", path, key, ErrUnknownUser)
	}
	return e, vals, nil
}

// LookupCredentials implements PassDB. Extra fields are expanded with the
// request's variables; a password without a scheme prefix gets the
// file's default scheme.
func (db *PasswdFile) LookupCredentials(ctx context.Context, user string) (Credentials, error) {
	e, vals, err := db.lookup(ctx, user)
	if err != nil {
		return Credentials{}, err
	}
	c := Credentials{User: user, Password: e.password}
	vals.home = e.home
	if len(e.extra) > 0 {
		c.Extra = make(map[string]string, len(e.extra))
		for _, x := range e.extra {
			v := ""
			if x.value != nil {
				v = x.value.expand(vals, nil)
			}
			c.Extra[x.key] = extraValue(x.key, v)
		}
		if u := c.Extra["user"]; u != "" {
			c.User = u
		}
	}
	return c, nil
}

// LookupUser implements UserDB: uid, gid and home from their fields (a
// line without a uid is a passdb-only entry: unknown user, as in Dovecot;
// GID is -1 when empty), and the "userdb_" extra fields without their
// prefix; userdb_mail is the mail location,
// userdb_uid, userdb_gid and userdb_home override the fields.
func (db *PasswdFile) LookupUser(ctx context.Context, user string) (User, error) {
	e, vals, err := db.lookup(ctx, user)
	if err != nil {
		return User{}, err
	}
	if e.uid < 0 {
		// Dovecot: a line without a uid is a passdb-only entry.
		return User{}, fmt.Errorf("auth: passwd-file %s: user %q has no uid: %w", db.path.raw, user, ErrUnknownUser)
	}
	vals.home = e.home
	u := User{Name: user, UID: e.uid, GID: e.gid, Home: e.home}
	for _, x := range e.extra {
		k, ok := strings.CutPrefix(x.key, "userdb_")
		if !ok {
			continue
		}
		v := ""
		if x.value != nil {
			v = x.value.expand(vals, nil)
		}
		if err := u.setField(k, v); err != nil {
			return User{}, fmt.Errorf("auth: passwd-file %s: user %q: %w: %w", db.path.raw, user, ErrTemporary, err)
		}
	}
	return u, nil
}

// setField stores one userdb field: uid, gid, home and mail go to their
// struct fields, the rest to Extra.
func (u *User) setField(k, v string) error {
	switch k {
	case "uid", "gid":
		n, err := parseID(v, k == "uid")
		if err != nil {
			return err
		}
		if k == "uid" {
			u.UID = n
		} else {
			u.GID = n
		}
	case "home":
		u.Home = v
	case "user":
		u.Name = v
	case "mail":
		u.Mail = v
	default:
		if u.Extra == nil {
			u.Extra = map[string]string{}
		}
		u.Extra[k] = v
	}
	return nil
}

// PasswordSchemes implements SchemeLister for a path without variables:
// the schemes the file's passwords use. A path with variables answers nil
// (unknown).
func (db *PasswdFile) PasswordSchemes() []string {
	if db.path.hasVars() {
		return nil
	}
	f := db.file(db.fixed)
	if err := f.sync(db); err != nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.schemes)
}

// extraValue is the value Dovecot keeps for a passdb extra field: nologin
// is a flag whose value is dropped ("nologin=Y" from SQL is "nologin").
func extraValue(key, v string) string {
	if key == "nologin" {
		return ""
	}
	return v
}
