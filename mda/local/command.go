package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/postkit-mail/postkit/queue"
)

// sysexits.h codes with their Postfix texts and DSNs (sys_exits(3)).
var sysExits = map[int]struct{ dsn, text string }{
	64: {"5.3.0", "command line usage error"},
	65: {"5.6.0", "data format error"},
	66: {"5.3.0", "cannot open input"},
	67: {"5.1.1", "user unknown"},
	68: {"5.1.2", "host name unknown"},
	69: {"5.3.0", "service unavailable"},
	70: {"5.3.0", "internal software error"},
	71: {"4.3.0", "system resource problem"},
	72: {"5.3.0", "critical OS file missing"},
	73: {"5.2.0", "can't create user output file"},
	74: {"5.3.0", "input/output error"},
	75: {"4.3.0", "temporary failure"},
	76: {"5.5.0", "remote error in protocol"},
	77: {"5.7.0", "permission denied"},
	78: {"5.3.5", "local configuration error"},
}

// defaultPath is the PATH commands get (Postfix resets it to _PATH_DEFPATH).
const defaultPath = "/usr/bin:/bin"

// outputLimit bounds how much command output goes into the reason text.
const outputLimit = 2048

// cmdSpec is one command delivery.
type cmdSpec struct {
	command string
	id      identity
	env     []string
	dir     string
	stdin   io.Reader
}

// runCommand runs a command for local delivery and maps its ending to a
// status the way Postfix's pipe_command(3) does (spec §8.5): exit 0 is
// success; output that starts with a D.S.N code decides by itself; a
// sysexits code gives its DSN (4.x defers, 5.x bounces); any other exit
// status bounces with 5.3.0; death by a signal defers with 4.3.0; the
// time limit bounces with 5.3.0.
func (a *Agent) runCommand(ctx context.Context, c cmdSpec) (queue.Outcome, string, string) {
	var argv []string
	switch {
	case a.p.commandShell != "":
		argv = []string{a.p.commandShell, "-c", c.command}
	default:
		// Postfix executes a command without shell metacharacters
		// directly; through /bin/sh it runs the same way, and shell
		// builtins ("exit 75") work too.
		// Postfix's daemons run with umask 077, and so do the commands
		// they start; "eval" keeps the command's own shell semantics.
		argv = []string{"/bin/sh", "-c", "umask 077 && eval \"$1\"", "sh", c.command}
	}
	if len(argv) == 0 {
		return queue.Failed, "5.3.0", "command line usage error"
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, a.p.commandTimeLimit)
	defer cancel()
	path := argv[0]
	if !strings.Contains(path, "/") {
		// Look the program up in the reset PATH, not ours.
		for _, d := range strings.Split(defaultPath, ":") {
			if st, err := os.Stat(d + "/" + path); err == nil && st.Mode().IsRegular() {
				path = d + "/" + path
				break
			}
		}
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = c.env
	cmd.Dir = c.dir
	cmd.Stdin = c.stdin
	var out limitedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if a.root {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(c.id.uid), Gid: uint32(c.id.gid)}
	}
	// The time limit kills the whole process group: a shell's children
	// must not outlive it holding the output pipe open.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return queue.Delayed, "4.3.0", fmt.Sprintf("cannot execute command %q: %v", c.command, err)
	}
	err := cmd.Wait()
	timedOut := err != nil && parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded)
	output := cleanOutput(out.Bytes())
	suffix := ""
	if output != "" {
		suffix = ". Command output: " + output
	}
	if timedOut {
		return queue.Failed, "5.3.0", fmt.Sprintf("Command time limit exceeded: %q%s", c.command, suffix)
	}
	if parent.Err() != nil && err != nil {
		// The caller's context ended (scheduler stopping): try again later.
		return queue.Delayed, "4.3.0", fmt.Sprintf("Command interrupted: %q", c.command)
	}
	if err == nil {
		return queue.Delivered, "2.0.0", ""
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return queue.Delayed, "4.3.0", fmt.Sprintf("Command failed: %v: %q", err, c.command)
	}
	ws, _ := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return queue.Delayed, "4.3.0", fmt.Sprintf("Command died with signal %d: %q%s", int(ws.Signal()), c.command, suffix)
	}
	if dsn, text, ok := leadingDSN(output); ok {
		if dsn[0] == '4' {
			return queue.Delayed, dsn, text
		}
		return queue.Failed, dsn, text
	}
	code := ws.ExitStatus()
	if se, ok := sysExits[code]; ok {
		o := queue.Failed
		if se.dsn[0] == '4' {
			o = queue.Delayed
		}
		return o, se.dsn, se.text + suffix
	}
	return queue.Failed, "5.3.0", fmt.Sprintf("Command died with status %d: %q%s", code, c.command, suffix)
}

// leadingDSN recognises command output that starts with an RFC 3463 code
// ("4.2.2 mailbox full"): Postfix uses it as the status and reason.
func leadingDSN(s string) (dsn, text string, ok bool) {
	code, rest, _ := strings.Cut(s, " ")
	parts := strings.Split(code, ".")
	if len(parts) != 3 || (parts[0] != "4" && parts[0] != "5") {
		return "", "", false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return "", "", false
		}
	}
	return code, strings.TrimLeft(rest, " "), true
}

// cleanOutput makes command output fit for a log line as Postfix does:
// newlines and tabs become spaces (a final newline leaves a trailing
// space, as in Postfix's logs) and other non-printable bytes become '_'.
func cleanOutput(b []byte) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t' || r == '\r':
			return ' '
		case r == utf8RuneError || !unicode.IsPrint(r):
			return '_'
		}
		return r
	}, string(b))
	return s
}

const utf8RuneError = '\uFFFD'

// limitedBuffer keeps the first outputLimit bytes written and discards the
// rest (the command must not block on a full pipe).
type limitedBuffer struct{ bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := outputLimit - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
