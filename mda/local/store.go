package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/mailbox"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// content returns the message as a mailbox store wants it: the delivery
// headers, then the queued content with LF line ends. The caller closes
// the returned closer.
func (x *run) content(at attr, deliveredMask int, fromLine bool) (io.Reader, io.Closer, error) {
	rc, err := x.d.Open()
	if err != nil {
		return nil, nil, err
	}
	delivered := ""
	if x.a.p.hdrMask&deliveredMask != 0 {
		delivered = at.delivered
	}
	var pre bytes.Buffer
	if fromLine {
		// The sender in external form (quoted local part), MAILER-DAEMON
		// for <>, as Postfix's mail_copy() writes it.
		pre.WriteString(mailbox.FromLine(at.sender, time.Now()) + "\n")
	}
	pre.Write(mda.DeliveryHeaders(at.sender, at.orig, delivered))
	return io.MultiReader(&pre, mda.NewLFReader(rc)), rc, nil
}

// maildir delivers to a Maildir (spec §8.3).
func (x *run) maildir(ctx context.Context, at attr, u identity, dir string) {
	r, c, err := x.content(at, hdrFile, false)
	if err != nil {
		x.deferr(at, "4.3.0", "cannot read message: %v", err)
		return
	}
	defer c.Close()
	uid, gid := -1, -1
	if x.a.root {
		uid, gid = u.uid, u.gid
	}
	// With the user's rights, as Postfix's local(8) delivers to a
	// Maildir: a directory the user replaced with a symbolic link leads
	// only where the user may write anyway.
	deliver := func() {
		_, err = mailbox.DeliverMaildir(ctx, dir, r, mailbox.MaildirOptions{
			Create: true, Hostname: x.a.hostname, SizeLimit: x.a.p.sizeLimit, UID: uid, GID: gid,
		})
	}
	if x.a.root {
		if rerr := runAs(u.uid, u.gid, deliver); rerr != nil {
			err = rerr
		}
	} else {
		deliver()
	}
	if err != nil {
		dsn, text := storeError(err, dir, "5.2.0")
		if errors.Is(err, fs.ErrPermission) {
			x.a.log.Warn(fmt.Sprintf("maildir access problem for UID/GID=%d/%d: %s", u.uid, u.gid, text), "queue_id", x.d.QueueID)
		}
		x.add(at, outcomeOf(dsn), dsn, "maildir delivery failed: "+text)
		return
	}
	x.add(at, queue.Delivered, "2.0.0", "delivered to maildir")
}

// mboxFile delivers to the user's mbox (spec §8.2). spool is the
// mail_spool_directory the mailbox is in, "" for one in the home
// directory.
func (x *run) mboxFile(ctx context.Context, at attr, u identity, path, spool string) {
	a := x.a
	fail := func(dsn, text string) {
		x.add(at, outcomeOf(dsn), dsn, fmt.Sprintf("cannot update mailbox %s for user %s. %s", path, at.user, text))
	}
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			// open(2) fails first, as in Postfix.
			fail("5.2.0", "cannot open file: Is a directory")
			return
		}
		if !fi.Mode().IsRegular() {
			fail("5.2.0", fmt.Sprintf("destination %s is not a regular file", path))
			return
		}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok && a.p.strictOwnership && int(sys.Uid) != u.uid {
			a.log.Warn("specify \"strict_mailbox_ownership = no\" to ignore mailbox ownership mismatch", "queue_id", x.d.QueueID)
			fail("4.2.0", fmt.Sprintf("destination %s is not owned by recipient", path))
			return
		}
	}
	r, c, err := x.content(at, hdrFile, false)
	if err != nil {
		x.deferr(at, "4.3.0", "cannot read message: %v", err)
		return
	}
	defer c.Close()
	uid, gid := -1, -1
	if a.root {
		uid, gid = u.uid, u.gid
	}
	// The ownership check again on the file as opened (Postfix checks the
	// descriptor): a file put in place after the look above is caught.
	notOwned := errors.New("not owned by recipient")
	check := func(st os.FileInfo, created bool) error {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && a.p.strictOwnership && !created && int(sys.Uid) != u.uid {
			return notOwned
		}
		return nil
	}
	deliver := func() {
		err = mailbox.DeliverMbox(ctx, path, at.sender, r, mailbox.MboxOptions{
			Locks: a.p.locks, Create: true, SizeLimit: a.p.sizeLimit, UID: uid, GID: gid,
			LockAttempts: a.p.lockAttempts, LockDelay: a.p.lockDelay, StaleLockTime: a.p.staleLock,
			Check: check,
		})
	}
	if a.root && spool == "" {
		// A mailbox in the home directory: with the user's rights, as
		// Postfix does (the spool is opened with root's, after the
		// ownership and link checks).
		if rerr := runAs(u.uid, u.gid, deliver); rerr != nil {
			err = rerr
		}
	} else {
		deliver()
	}
	if errors.Is(err, notOwned) {
		a.log.Warn("specify \"strict_mailbox_ownership = no\" to ignore mailbox ownership mismatch", "queue_id", x.d.QueueID)
		fail("4.2.0", fmt.Sprintf("destination %s is not owned by recipient", path))
		return
	}
	if err != nil {
		dsn, text := storeError(err, path, "5.2.0")
		fail(dsn, text)
		return
	}
	x.add(at, queue.Delivered, "2.0.0", "delivered to mailbox")
}

// storeError maps a mailbox package error for the mailbox at path to a
// DSN and Postfix's wording.
func storeError(err error, path, openDSN string) (string, string) {
	switch {
	case errors.Is(err, mailbox.ErrTooLarge):
		return "5.2.2", "error writing message: File too large"
	case errors.Is(err, mailbox.ErrLocked) && strings.HasSuffix(err.Error(), ".lock exists"):
		// The dotlock is held (mailbox reports "PATH.lock exists").
		return "4.2.0", "unable to create lock file " + path + ".lock: File exists"
	case errors.Is(err, mailbox.ErrLocked):
		return "4.2.0", "unable to lock for exclusive access: Resource temporarily unavailable"
	case errors.Is(err, mailbox.ErrUnsafeFile):
		// Postfix's safe_open text ("file has 2 hard links"), 5.2.0.
		_, why, _ := strings.Cut(err.Error(), mailbox.ErrUnsafeFile.Error()+": ")
		return openDSN, why
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Op == "open" {
		return errDSN(err, openDSN), "cannot open file: " + errnoText(err)
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return errDSN(err, "5.3.0"), "error writing message: " + errnoText(err)
	}
	return "4.3.0", err.Error()
}

// file is deliver_file(): append to /file/name in mbox format, or to a
// Maildir when the name ends in '/'.
func (x *run) file(ctx context.Context, at attr, path string) {
	a := x.a
	dup, record := x.once("file " + path)
	if dup {
		return
	}
	defer record()
	if at.expType != 0 && a.p.allowFile&at.expType == 0 {
		x.bounce(at, "5.7.1", "mail to file is restricted")
		return
	}
	if path == "/dev/null" {
		x.add(at, queue.Delivered, "2.0.0", "delivered to file: /dev/null")
		return
	}
	id, err := x.defaultRights(ctx, at.rights)
	if err != nil {
		a.log.Warn(err.Error(), "queue_id", x.d.QueueID)
		x.deferr(at, "4.3.5", "local configuration error")
		return
	}
	if strings.HasSuffix(path, "/") {
		if a.root && !mayWrite(filepath.Dir(strings.TrimSuffix(path, "/")), id) && !mayWrite(path, id) {
			x.bounce(at, "5.2.0", "maildir delivery failed: create maildir file %s: Permission denied", path)
			return
		}
		x.maildir(ctx, at, id, path)
		return
	}
	fi, statErr := os.Stat(path)
	if statErr == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		x.bounce(at, "5.7.1", "executable destination file %s", path)
		return
	}
	if a.root {
		target := path
		if statErr != nil {
			target = filepath.Dir(path)
		}
		if !mayWrite(target, id) {
			x.bounce(at, "5.2.0", "cannot append message to file %s: cannot open file: Permission denied", path)
			return
		}
	}
	r, c, err := x.content(at, hdrFile, false)
	if err != nil {
		x.deferr(at, "4.3.0", "cannot read message: %v", err)
		return
	}
	defer c.Close()
	uid, gid := -1, -1
	if a.root {
		uid, gid = id.uid, id.gid
	}
	locks := a.p.locks
	if (a.root && !mayWrite(filepath.Dir(path), id)) || (!a.root && !dirWritable(filepath.Dir(path))) {
		// A dotlock may fail for files (Postfix's MBOX_DOT_LOCK_MAY_FAIL):
		// a directory we cannot create the lock in is not an error.
		locks = without(locks, "dotlock")
	}
	// With the rights of id (Postfix's deliver_file() after set_eugid()):
	// the permission checks above look at the last component only.
	deliver := func() {
		err = mailbox.DeliverMbox(ctx, path, at.sender, r, mailbox.MboxOptions{
			Locks: locks, Create: true, SizeLimit: a.p.sizeLimit, UID: uid, GID: gid,
			LockAttempts: a.p.lockAttempts, LockDelay: a.p.lockDelay, StaleLockTime: a.p.staleLock,
		})
	}
	if a.root {
		if rerr := runAs(id.uid, id.gid, deliver); rerr != nil {
			err = rerr
		}
	} else {
		deliver()
	}
	if err != nil {
		dsn, text := storeError(err, path, "5.2.0")
		x.add(at, outcomeOf(dsn), dsn, fmt.Sprintf("cannot append message to file %s: %s", path, text))
		return
	}
	x.add(at, queue.Delivered, "2.0.0", "delivered to file: "+path)
}

func without(l []string, s string) []string {
	var out []string
	for _, v := range l {
		if v != s {
			out = append(out, v)
		}
	}
	return out
}

func dirWritable(dir string) bool {
	return syscall.Access(dir, 2 /* W_OK */) == nil
}

// mayWrite reports whether id may write path (a file, or the directory a
// new file goes in), from the permission bits: the process is root and
// checks on behalf of the identity it stands for.
func mayWrite(path string, id identity) bool {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return false
	}
	if id.uid == 0 {
		return true
	}
	mode := st.Mode
	switch {
	case int(st.Uid) == id.uid:
		return mode&0o200 != 0
	case int(st.Gid) == id.gid:
		return mode&0o020 != 0
	}
	return mode&0o002 != 0
}

// command is deliver_command(): pipe the message to a command.
func (x *run) command(ctx context.Context, at attr, command string, mailboxCommand bool) {
	a := x.a
	id, err := x.defaultRights(ctx, at.rights)
	if err != nil {
		a.log.Warn(err.Error(), "queue_id", x.d.QueueID)
		x.deferr(at, "4.3.5", "local configuration error")
		return
	}
	dup, record := x.once(fmt.Sprintf("command %s:%d %s", at.user, id.uid, command))
	if dup {
		return
	}
	defer record()
	if !mailboxCommand && at.expType != 0 && a.p.allowCmd&at.expType == 0 {
		x.bounce(at, "5.7.1", "mail to command is restricted")
		return
	}
	dir := ""
	if a.p.commandDir != "" {
		d, _, err := expandAttrs(a.p.commandDir, at.localAttrs(id), a.p.cmdFilter)
		if err != nil {
			x.deferr(at, "4.3.5", "mail system configuration error")
			return
		}
		dir = d
	}
	r, c, err := x.content(at, hdrCommand, true)
	if err != nil {
		x.deferr(at, "4.3.0", "cannot read message: %v", err)
		return
	}
	defer c.Close()
	o, dsn, reason := a.runCommand(ctx, cmdSpec{command: command, id: id, env: x.commandEnv(at, id), dir: dir, stdin: r})
	if o == queue.Delivered {
		reason = "delivered to command: " + command
	}
	x.add(at, o, dsn, reason)
}

// commandEnv is the environment of a command delivery.
func (x *run) commandEnv(at attr, id identity) []string {
	f := x.a.p.cmdFilter
	env := []string{"PATH=" + defaultPath}
	for _, name := range x.a.p.exportEnv {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	set := func(k, v string) { env = append(env, k+"="+filterChars(v, f)) }
	set("HOME", id.home)
	set("LOGNAME", id.name)
	set("USER", id.name)
	if id.shell != "" {
		set("SHELL", id.shell)
	}
	set("SENDER", at.sender)
	set("RECIPIENT", at.rcpt)
	set("LOCAL", at.local)
	set("DOMAIN", at.domain)
	if at.ext != "" {
		set("EXTENSION", at.ext)
	}
	if at.orig != "" {
		set("ORIGINAL_RECIPIENT", at.orig)
	}
	c := x.d.Envelope.Client
	for _, kv := range [][2]string{
		{"CLIENT_ADDRESS", c.Addr}, {"CLIENT_HELO", c.Helo}, {"CLIENT_HOSTNAME", c.Name},
		{"CLIENT_PROTOCOL", c.Proto}, {"SASL_METHOD", c.SASLMethod}, {"SASL_SENDER", c.SASLSender},
		{"SASL_USERNAME", c.SASLUsername},
	} {
		if kv[1] != "" {
			set(kv[0], kv[1])
		}
	}
	return env
}
