package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/smtpserver"
)

// The files the mailserver keeps in its data directory.
const (
	passwdFile     = "passwd"           // Dovecot passwd-file: the users, for AUTH and delivery
	recipientsFile = "local_recipients" // texthash: of the user names, for local_recipient_maps
	demoUser       = "demo"
)

// firstStart creates what a new data directory needs: the directory
// itself, a self-signed certificate for localhost and 127.0.0.1 (when
// certFile does not exist yet) and the user demo with a random password,
// printed once to out. Later starts find the files and keep them.
func firstStart(dataDir, certFile, keyFile string, out io.Writer) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
		cert, err := smtpserver.SelfSigned("localhost", "127.0.0.1", "::1")
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
			return err
		}
		if err := smtpserver.WriteCertificatePEM(cert, certFile, keyFile); err != nil {
			return err
		}
		fmt.Fprintf(out, "created certificate %s (self-signed, localhost)\n", certFile)
	}
	pw := filepath.Join(dataDir, passwdFile)
	if _, err := os.Stat(pw); errors.Is(err, os.ErrNotExist) {
		password := rand.Text()[:16]
		hash, err := auth.HashPassword("SHA512-CRYPT", password)
		if err != nil {
			return err
		}
		home := filepath.Join(dataDir, "mail", demoUser)
		// user:password:uid:gid:gecos:home:shell. The mail belongs to the
		// user running the server; under root (which a passwd-file may not
		// name, as in Dovecot) to nobody:nogroup.
		uid, gid := os.Getuid(), os.Getgid()
		if uid == 0 {
			uid, gid = 65534, 65534
		}
		if err := os.MkdirAll(home, 0o700); err != nil {
			return err
		}
		if os.Getuid() == 0 {
			// The local agent delivers as the user: nobody must be able
			// to pass through DATA and DATA/mail (not to list them).
			for _, d := range []string{dataDir, filepath.Dir(home)} {
				if err := os.Chmod(d, 0o711); err != nil {
					return err
				}
			}
		}
		if err := os.Lchown(home, uid, gid); err != nil && os.Getuid() == 0 {
			return err
		}
		line := fmt.Sprintf("%s:%s:%d:%d::%s::\n", demoUser, hash, uid, gid, home)
		if err := writeFileSync(pw, []byte(line), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(out, "created user %s with password %s (stored hashed in %s)\n", demoUser, password, pw)
	}
	return writeRecipients(dataDir)
}

// writeRecipients derives the local_recipient_maps table from the
// passwd-file: one line per user, so the SMTP server rejects unknown
// local users at RCPT TO as Postfix does with its passwd table.
func writeRecipients(dataDir string) error {
	f, err := os.Open(filepath.Join(dataDir, passwdFile))
	if err != nil {
		return err
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, ":")
		if name != "" && !strings.ContainsAny(name, " \t") {
			fmt.Fprintf(&b, "%s\tOK\n", name)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dataDir, recipientsFile), []byte(b.String()), 0o600)
}

// writeFileSync replaces path with data: a temporary file, fsync, rename.
func writeFileSync(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
