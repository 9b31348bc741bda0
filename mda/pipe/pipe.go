package pipe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/mailbox"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// Options are what New cannot read from the service or main.cf.
type Options struct {
	// Logger gets the agent's warnings; nil discards them.
	Logger *slog.Logger
	// Now is the clock for the From_ line (flag F); nil is time.Now.
	Now func() time.Time
}

// Flags are the pipe(8) flags= letters.
type Flags struct {
	FromLine    bool // F: "From sender  date" first
	ReturnPath  bool // R: Return-Path: <sender>
	DeliveredTo bool // D: Delivered-To: recipient (and the loop check)
	OriginalTo  bool // O: X-Original-To: original recipient
	Final       bool // X: final delivery (DSN action "delivered")
	DotStuff    bool // .: lines starting with '.' get another
	QuoteFrom   bool // >: lines starting with "From " get '>'
	Blank       bool // B: an empty line at the end
	FoldHost    bool // h: lower-case domains and ${nexthop}
	QuoteLocal  bool // q: RFC 822 quoting of local parts in macros
	FoldUser    bool // u: lower-case local parts in macros
}

// ParseFlags parses a flags= value.
func ParseFlags(s string) (Flags, error) {
	var f Flags
	for _, c := range s {
		switch c {
		case 'F':
			f.FromLine = true
		case 'R':
			f.ReturnPath = true
		case 'D':
			f.DeliveredTo = true
		case 'O':
			f.OriginalTo = true
		case 'X':
			f.Final = true
		case '.':
			f.DotStuff = true
		case '>':
			f.QuoteFrom = true
		case 'B':
			f.Blank = true
		case 'h':
			f.FoldHost = true
		case 'q':
			f.QuoteLocal = true
		case 'u':
			f.FoldUser = true
		default:
			return f, fmt.Errorf("unknown flag %q in flags=%s", c, s)
		}
	}
	return f, nil
}

// Agent is one pipe(8) service. It implements queue.Deliverer.
type Agent struct {
	name       string
	command    string // argv[0] as written in master.cf
	path       string // argv[0] resolved
	args       []template
	flags      Flags
	cred       *syscall.Credential
	sizeLimit  int64
	eol        string
	dir        string
	nullSender string
	timeLimit  time.Duration
	env        []string
	delims     string
	opts       Options
}

var _ queue.Deliverer = (*Agent)(nil)

// defaultPath is the PATH commands run with and the one argv[0] is
// looked up in (Postfix's _PATH_DEFPATH).
const defaultPath = "/usr/bin:/bin"

// New builds the agent of a master.cf pipe service:
//
//	dovecot unix - n n - - pipe
//	  flags=DRhu user=vmail:vmail argv=/usr/lib/dovecot/dovecot-lda -f ${sender} -d ${recipient}
//
// cfg gives the main.cf parameters, with the service's -o overrides
// applied on top: SERVICE_time_limit (default command_time_limit),
// recipient_delimiter, export_environment, queue_directory, mail_owner.
func New(svc mda.Service, cfg *config.Config, opts Options) (*Agent, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Agent{name: svc.Name, eol: "\n", nullSender: "MAILER-DAEMON", opts: opts}
	fail := func(format string, args ...any) (*Agent, error) {
		where := svc.Name
		if svc.File != "" {
			where = fmt.Sprintf("%s line %d: service %s", svc.File, svc.Line, svc.Name)
		}
		return nil, fmt.Errorf("pipe: %s: %s", where, fmt.Sprintf(format, args...))
	}
	param := func(name string) string {
		if v, ok := svc.Options[name]; ok {
			return v
		}
		v, _, _ := cfg.Lookup(name)
		return v
	}
	var userSpec, dirSet string
	haveUser, haveDir := false, false
	i := 0
	for ; i < len(svc.Args); i++ {
		name, value, ok := strings.Cut(svc.Args[i], "=")
		if !ok {
			return fail("bad attribute %q (want name=value, and argv= last)", svc.Args[i])
		}
		if name == "argv" {
			break
		}
		var err error
		switch name {
		case "flags":
			if a.flags, err = ParseFlags(value); err != nil {
				return fail("%v", err)
			}
		case "user":
			userSpec, haveUser = value, true
		case "size":
			if a.sizeLimit, err = strconv.ParseInt(value, 10, 64); err != nil || a.sizeLimit < 0 {
				return fail("bad size= value %q", value)
			}
		case "eol":
			a.eol = unescape(value)
		case "directory":
			dirSet, haveDir = value, true
		case "chroot":
			if value != "" && value != "/" {
				return fail("chroot= is not supported")
			}
		case "null_sender":
			a.nullSender = value
		default:
			return fail("unknown attribute %q", name)
		}
	}
	if i >= len(svc.Args) {
		return fail("missing argv= attribute")
	}
	argv := append([]string{strings.TrimPrefix(svc.Args[i], "argv=")}, svc.Args[i+1:]...)
	if argv[0] == "" {
		return fail("empty argv= command")
	}
	if !haveUser {
		return fail("missing user= attribute")
	}
	if err := a.setUser(userSpec, param("mail_owner")); err != nil {
		return fail("%v", err)
	}
	a.command = argv[0]
	if strings.Contains(argv[0], "/") {
		a.path = argv[0]
	} else {
		p, err := lookPath(argv[0])
		if err != nil {
			return fail("%v", err)
		}
		a.path = p
	}
	for _, s := range argv[1:] {
		t, err := parseTemplate(s)
		if err != nil {
			return fail("argv: %v", err)
		}
		a.args = append(a.args, t)
	}
	a.dir = dirSet
	if !haveDir {
		// Postfix runs commands in the queue directory; postkit's queue
		// may live elsewhere, so "/" when it does not exist.
		a.dir = "/"
		if q := param("queue_directory"); q != "" {
			if st, err := os.Stat(q); err == nil && st.IsDir() {
				a.dir = q
			}
		}
	}
	limit := param(svc.Name + "_time_limit")
	if limit == "" {
		limit = param("command_time_limit")
	}
	d, err := config.ParseDuration(limit, 's')
	if err != nil || d <= 0 {
		return fail("bad %s_time_limit %q", svc.Name, limit)
	}
	a.timeLimit = d
	a.delims = param("recipient_delimiter")
	a.env = environment(param("import_environment"), param("export_environment"), param("config_directory"))
	return a, nil
}

// setUser resolves user=name[:group]. Postfix refuses root and the mail
// owner; as root the command runs with that uid, gid and only that gid
// as its group list. Not as root, the command runs as the process's own
// user (user= is still required and checked).
func (a *Agent) setUser(spec, mailOwner string) error {
	name, group, _ := strings.Cut(spec, ":")
	if name == "" {
		return errors.New("user= attribute needs a user name")
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("user= %s: unknown user", name)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return fmt.Errorf("user= %s: unknown group %s", spec, group)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if uid == 0 {
		return errors.New("user= attribute specifies root privileges")
	}
	if gid == 0 {
		return errors.New("user= attribute specifies privileged group id 0")
	}
	if mailOwner != "" && name == mailOwner {
		return fmt.Errorf("user= attribute specifies mail system owner %s", name)
	}
	if os.Geteuid() == 0 {
		a.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}
	}
	return nil
}

// lookPath finds a command without '/' in defaultPath.
func lookPath(name string) (string, error) {
	for _, dir := range filepath.SplitList(defaultPath) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in %s", name, defaultPath)
}

// environment is what Postfix gives commands: of the variables
// import_environment makes (NAME=VALUE sets one, NAME takes it from the
// process's environment; MAIL_CONFIG is the config directory, as
// Postfix's master sets it), those export_environment names, then
// PATH=/usr/bin:/bin.
func environment(imports, export, configDir string) []string {
	have := map[string]string{}
	for _, item := range config.SplitList(imports) {
		if name, value, ok := strings.Cut(item, "="); ok {
			have[name] = value
		} else if v, ok := os.LookupEnv(item); ok {
			have[item] = v
		}
	}
	if configDir != "" {
		have["MAIL_CONFIG"] = configDir
	}
	var env []string
	for _, name := range config.SplitList(export) {
		if v, ok := have[name]; ok {
			env = append(env, name+"="+v)
		}
	}
	return append(env, "PATH="+defaultPath)
}

// unescape turns the C escapes of eol= ("\r\n") into bytes.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '\\':
			b.WriteByte('\\')
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// Name is the service name, the relay= of its log lines.
func (a *Agent) Name() string { return a.name }

// outputLimit is how much of the command's output is kept for the
// reason text (Postfix reads one VSTREAM buffer).
const outputLimit = 4096

// Deliver runs the command once for all recipients of d and gives each
// the same result.
func (a *Agent) Deliver(ctx context.Context, d *queue.Delivery) []queue.Result {
	if len(d.Recipients) == 0 {
		return nil
	}
	res := a.deliver(ctx, d)
	res.Relay = a.name
	out := make([]queue.Result, len(d.Recipients))
	for i := range out {
		out[i] = res
	}
	return out
}

func (a *Agent) fail(o queue.Outcome, dsn, reason string) queue.Result {
	return queue.Result{Outcome: o, DSN: dsn, Reason: reason}
}

func (a *Agent) deliver(ctx context.Context, d *queue.Delivery) queue.Result {
	if a.sizeLimit > 0 && d.Size > a.sizeLimit {
		return a.fail(queue.Failed, "5.2.3", "message too large")
	}
	if len(d.Recipients) > 1 && (a.flags.DeliveredTo || a.flags.OriginalTo) {
		if a.opts.Logger != nil {
			a.opts.Logger.Warn(fmt.Sprintf("%s: flags D and O require %s_destination_recipient_limit = 1", a.name, a.name), "queue_id", d.QueueID)
		}
		return a.fail(queue.Delayed, "4.3.5", "mail system configuration error")
	}
	if a.flags.DeliveredTo {
		rc, err := d.Open()
		if err != nil {
			return a.fail(queue.Delayed, "4.3.0", "cannot read message: "+err.Error())
		}
		loop, err := mda.HasDeliveredTo(rc, d.Recipients[0].Addr)
		rc.Close()
		if err != nil {
			return a.fail(queue.Delayed, "4.3.0", "cannot read message: "+err.Error())
		}
		if loop {
			return a.fail(queue.Failed, "5.4.6", "mail forwarding loop for "+d.Recipients[0].Addr)
		}
	}
	// ${size} is the queued size, CRLF line ends counted as two bytes as
	// Postfix counts them (checked against 3.7).
	m := a.macros(d, d.Size)
	argv := []string{a.command}
	for _, t := range a.args {
		argv = append(argv, t.expand(m)...)
	}
	return a.run(ctx, d, argv)
}

func (a *Agent) run(ctx context.Context, d *queue.Delivery, argv []string) queue.Result {
	rc, err := d.Open()
	if err != nil {
		return a.fail(queue.Delayed, "4.3.0", "cannot read message: "+err.Error())
	}
	defer rc.Close()
	cmd := &exec.Cmd{Path: a.path, Args: argv, Env: a.env, Dir: a.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: a.cred}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return a.fail(queue.Delayed, "4.3.0", err.Error())
	}
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A command that leaves a child holding its output open must not
	// hold up the delivery.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		// Postfix's child reports a failed execvp on its output and exits
		// with EX_TEMPFAIL; the same text here (checked against 3.7).
		return a.fail(queue.Delayed, "4.3.0", fmt.Sprintf("temporary failure. Command output: pipe: fatal: pipe_command: execvp %s: %s ",
			a.command, strerror(unwrapExec(err))))
	}
	writeDone := make(chan error, 1)
	go func() {
		err := a.copy(stdin, d, rc)
		stdin.Close()
		writeDone <- err
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	timer := time.NewTimer(a.timeLimit)
	defer timer.Stop()
	var timedOut, canceled bool
	var waitErr error
	select {
	case waitErr = <-waitDone:
	case <-timer.C:
		timedOut = true
	case <-ctx.Done():
		canceled = true
	}
	if timedOut || canceled {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		waitErr = <-waitDone
		if timedOut && a.opts.Logger != nil {
			a.opts.Logger.Warn("pipe_command_read: read time limit exceeded", "queue_id", d.QueueID)
		}
	}
	werr := <-writeDone // the writer ends once the command's stdin is closed
	output := out.text()
	withOutput := func(s string) string {
		if output == "" {
			return s
		}
		return s + ". Command output: " + output
	}
	cmdq := strconv.Quote(a.command)
	switch {
	case canceled:
		return a.fail(queue.Delayed, "4.3.0", withOutput("delivery canceled: "+cmdq))
	case timedOut:
		return a.fail(queue.Failed, "5.3.0", withOutput("Command time limit exceeded: "+cmdq))
	}
	var rerr readError
	if errors.As(werr, &rerr) {
		// The command did not get the whole message, whatever it says:
		// try again later, as Postfix's pipe(8) does.
		return a.fail(queue.Delayed, "4.3.0", "error reading message: "+rerr.err.Error())
	}
	if waitErr == nil || errors.Is(waitErr, exec.ErrWaitDelay) {
		r := queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Action: "relayed",
			Reason: "delivered via " + a.name + " service"}
		if a.flags.Final {
			r.Action = "delivered"
		}
		if t := strings.TrimRight(output, " "); t != "" {
			r.Reason += " (" + t + ")"
		}
		return r
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return a.fail(queue.Delayed, "4.3.0", fmt.Sprintf("command %s: %v", cmdq, waitErr))
	}
	ws, _ := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return a.fail(queue.Delayed, "4.3.0", withOutput(fmt.Sprintf("Command died with signal %d: %s", int(ws.Signal()), cmdq)))
	}
	// Output that starts with "X.Y.Z text" (RFC 3463) decides.
	if n := dsnPrefix(output); n > 0 {
		o := queue.Failed
		if output[0] == '4' {
			o = queue.Delayed
		}
		return a.fail(o, output[:n], output[n+1:])
	}
	code := ws.ExitStatus()
	if e, ok := sysExits[code]; ok {
		o := queue.Failed
		if e.dsn[0] == '4' {
			o = queue.Delayed
		}
		return a.fail(o, e.dsn, withOutput(e.text))
	}
	return a.fail(queue.Failed, "5.3.0", withOutput(fmt.Sprintf("Command died with status %d: %s", code, cmdq)))
}

// strerror is the C library's text for an errno: Go's with a capital.
func strerror(err error) string {
	s := err.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func unwrapExec(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// dsnPrefix returns the length of the RFC 3463 status that starts s
// and is followed by a space, or 0.
func dsnPrefix(s string) int {
	dsn, _ := mda.SplitDSN(s, "")
	if dsn == "" || !strings.HasPrefix(s, dsn+" ") {
		return 0
	}
	return len(dsn)
}

// sysExits maps sysexits.h codes to Postfix's status and text
// (sys_exits.c, spec §8.5).
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

// copy writes the message to the command: the From_, Return-Path,
// X-Original-To and Delivered-To lines the flags ask for, the content
// with eol= line ends, dot-stuffing and >From quoting, and the blank
// line of flag B. A command that exits without reading all of it is not
// an error (Postfix judges by the exit status).
func (a *Agent) copy(w io.Writer, d *queue.Delivery, r io.Reader) error {
	bw := bufio.NewWriterSize(w, 32*1024)
	eol := a.eol
	sender := d.Envelope.Sender
	if a.flags.FromLine {
		bw.WriteString(mailbox.FromLine(sender, a.opts.Now()) + eol)
	}
	if a.flags.ReturnPath {
		bw.WriteString("Return-Path: <" + quoteAddr(sender) + ">" + eol)
	}
	if a.flags.OriginalTo {
		orig := d.Recipients[0].Original
		if orig == "" {
			orig = d.Recipients[0].Addr
		}
		bw.WriteString("X-Original-To: " + quoteAddr(orig) + eol)
	}
	if a.flags.DeliveredTo {
		bw.WriteString("Delivered-To: " + quoteAddr(d.Recipients[0].Addr) + eol)
	}
	br := bufio.NewReaderSize(r, 32*1024)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			full := err == nil
			body := bytes.TrimSuffix(line, []byte("\n"))
			body = bytes.TrimSuffix(body, []byte("\r"))
			if a.flags.DotStuff && len(body) > 0 && body[0] == '.' {
				bw.WriteByte('.')
			}
			if a.flags.QuoteFrom && bytes.HasPrefix(body, []byte("From ")) {
				bw.WriteByte('>')
			}
			bw.Write(body)
			if full {
				bw.WriteString(eol)
			} else if err == bufio.ErrBufferFull {
				// A long line continues in the next read: no quoting
				// there, as Postfix treats the rest of a long record.
				if err := a.copyRest(bw, br, eol); err != nil {
					return err
				}
				continue
			}
		}
		if err == io.EOF {
			if len(line) > 0 {
				bw.WriteString(eol)
			}
			break
		}
		if err != nil {
			return readError{err}
		}
	}
	if a.flags.Blank {
		bw.WriteString(eol)
	}
	return bw.Flush()
}

// copyRest copies the rest of a line longer than the reader's buffer.
func (a *Agent) copyRest(bw *bufio.Writer, br *bufio.Reader, eol string) error {
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			bw.Write(line)
			continue
		}
		body := bytes.TrimSuffix(line, []byte("\n"))
		if len(body) < len(line) {
			body = bytes.TrimSuffix(body, []byte("\r"))
			bw.Write(body)
			bw.WriteString(eol)
			return nil
		}
		bw.Write(body)
		if err == io.EOF {
			bw.WriteString(eol)
			return nil
		}
		if err != nil {
			return readError{err}
		}
	}
}

// readError is a failure to read the queued message (as opposed to the
// command not reading its input, which is not an error).
type readError struct{ err error }

func (e readError) Error() string { return "read message: " + e.err.Error() }

func quoteAddr(a string) string {
	if a == "" {
		return ""
	}
	return address.Quote(a)
}

// limitedBuffer keeps the first outputLimit bytes of the command's
// output and discards the rest (the command is never blocked).
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := outputLimit - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// text is the output as Postfix puts it in a reason: tabs and newlines
// become spaces, other unprintable bytes '_' (so no trimming: "try
// later\n" gives "try later ").
func (l *limitedBuffer) text() string {
	b := make([]byte, len(l.b))
	for i, c := range l.b {
		switch {
		case c == '\n' || c == '\t':
			b[i] = ' '
		case c < ' ' || c >= 127:
			b[i] = '_'
		default:
			b[i] = c
		}
	}
	return string(b)
}
