package auth

import (
	"fmt"
	"path/filepath"
	"strings"
)

// MaildirPath finds a user's Maildir from the userdb entry, as
// Dovecot reads mail_location: u.Mail "maildir:PATH" (options after a
// further ':' are ignored) with "~" standing for u.Home and %u, %n, %d,
// %% expanded (the user name, its local part and its domain); an empty
// u.Mail means HOME/Maildir. The expanded user name parts may not hold '/',
// NUL or be "." or "..", and the result must be an absolute path, so no
// user name leads outside the configured tree. Other mail formats (mbox:)
// are refused: the IMAP and POP3 servers read Maildirs.
func MaildirPath(u User) (string, error) {
	loc := u.Mail
	if loc == "" {
		if u.Home == "" {
			return "", fmt.Errorf("auth: user %q has neither mail nor home", u.Name)
		}
		loc = "maildir:~/Maildir"
	}
	format, path, ok := strings.Cut(loc, ":")
	if !ok {
		format, path = "maildir", loc
	}
	if format != "maildir" {
		return "", fmt.Errorf("auth: user %q: mail location %q: only maildir is supported", u.Name, loc)
	}
	path, _, _ = strings.Cut(path, ":")
	if path == "~" || strings.HasPrefix(path, "~/") {
		if u.Home == "" || !filepath.IsAbs(u.Home) {
			return "", fmt.Errorf("auth: user %q: mail location %q needs an absolute home", u.Name, loc)
		}
		path = u.Home + path[1:]
	}
	local, domain, _ := strings.Cut(u.Name, "@")
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if path[i] != '%' || i+1 == len(path) {
			b.WriteByte(path[i])
			continue
		}
		i++
		var v string
		switch path[i] {
		case '%':
			b.WriteByte('%')
			continue
		case 'u':
			v = u.Name
		case 'n':
			v = local
		case 'd':
			v = domain
		default:
			return "", fmt.Errorf("auth: mail location %q: unknown variable %%%c", loc, path[i])
		}
		if err := safePathPart(v); err != nil {
			return "", fmt.Errorf("auth: user %q: %w", u.Name, err)
		}
		b.WriteString(v)
	}
	path = b.String()
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("auth: user %q: mail location %q is not an absolute path", u.Name, loc)
	}
	return filepath.Clean(path), nil
}

// safePathPart refuses a user name part that would change the directory
// structure of a path it is put into.
func safePathPart(v string) error {
	if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\x00") {
		return fmt.Errorf("user name part %q cannot be used in a path", v)
	}
	return nil
}
