package local

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/postkit-mail/postkit/auth"
)

// passwdFile is the system user database SystemUsers reads.
var passwdFile = "/etc/passwd"

// SystemUsers returns the system's user database: /etc/passwd, read at each
// lookup as Postfix's getpwnam() calls do, so that new accounts are seen
// without a restart. User.Extra["shell"] holds the login shell (for
// $shell in forward_path and the SHELL variable of commands).
func SystemUsers() auth.UserDB { return passwdDB{path: passwdFile} }

type passwdDB struct{ path string }

func (p passwdDB) LookupUser(ctx context.Context, name string) (auth.User, error) {
	u, ok, err := p.find(func(u auth.User) bool { return u.Name == name })
	if err != nil {
		return auth.User{}, err
	}
	if !ok {
		return auth.User{}, fmt.Errorf("%w: %q", auth.ErrUnknownUser, name)
	}
	return u, nil
}

// byUID finds the first account with uid (getpwuid).
func (p passwdDB) byUID(uid int) (auth.User, bool, error) {
	return p.find(func(u auth.User) bool { return u.UID == uid })
}

func (p passwdDB) find(match func(auth.User) bool) (auth.User, bool, error) {
	f, err := os.Open(p.path)
	if err != nil {
		return auth.User{}, false, fmt.Errorf("local: read user database: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		u, ok := parsePasswdLine(sc.Text())
		if ok && match(u) {
			return u, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return auth.User{}, false, fmt.Errorf("local: read %s: %w", p.path, err)
	}
	return auth.User{}, false, nil
}

// parsePasswdLine parses one passwd(5) line:
// name:password:UID:GID:GECOS:directory:shell. Comments, NIS "+"/"-"
// entries and malformed lines are skipped (ok false).
func parsePasswdLine(line string) (auth.User, bool) {
	if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
		return auth.User{}, false
	}
	f := strings.Split(line, ":")
	if len(f) != 7 || f[0] == "" {
		return auth.User{}, false
	}
	uid, err1 := strconv.Atoi(f[2])
	gid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return auth.User{}, false
	}
	return auth.User{Name: f[0], UID: uid, GID: gid, Home: f[5], Extra: map[string]string{"shell": f[6]}}, true
}
