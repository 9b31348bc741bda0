package main

// postkit sendmail: Postfix's sendmail(1), the Sendmail-compatible way for
// local programs to submit mail. It writes the message into the maildrop
// directory ($queue_directory/maildrop, package pickup's file format),
// from which pickup.Service feeds it to cleanup. There is no postdrop
// helper: the maildrop directory is group-writable (pickup.DirMode) and
// the command writes the file itself, durably, before it exits 0.
//
// Behaviour checked against Postfix 3.7's sendmail: option parsing
// (getopt that stops at the first non-option; -q, -V and -XV handled
// before it), "sendmail: fatal: ..." messages, and the exit status 75
// (EX_TEMPFAIL) of every fatal error: Postfix's sendmail installs a
// run-time error handler that exits with EX_TEMPFAIL before the status a
// fatal message asks for (EX_USAGE and so on) can take effect.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/pickup"
	"github.com/postkit-mail/postkit/smtpserver"
)

// sysexits(3) codes.
const (
	exOK          = 0
	exUnavailable = 69
	exSoftware    = 70
	exOSErr       = 71
	exTempFail    = 75
)

// smGetoptList is Postfix's sendmail option string: a letter followed by
// ':' takes an argument.
const smGetoptList = "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx"

// Modes of operation (sendmail -b...).
type smMode int

const (
	smEnqueue smMode = iota
	smNewAlias
	smMailq
	smDaemon
	smUser // -bs
	smFlushQ
	smIgnore
)

// smFatal is a fatal error: its message is printed as
// "sendmail: fatal: MSG" and the command exits with code.
type smFatal struct {
	code int
	msg  string
}

func (e *smFatal) Error() string { return e.msg }

func fatalf(code int, format string, args ...any) error {
	return &smFatal{code: code, msg: fmt.Sprintf(format, args...)}
}

// smOptions is the parsed command line.
type smOptions struct {
	mode       smMode
	configDir  string
	sender     *string // -f / -r; nil: the login name
	fullName   *string // -F
	extract    bool    // -t
	dotEnds    bool    // without -i / -oi
	gateway    bool    // -G
	verbose    int
	verify     bool // -bv
	verp       bool // -XV
	body       string
	ret        string
	envID      string
	notify     []string
	recipients []string
	aliasDB    string // -oA
	flushArg   bool   // -qR / -qI
	flushMode  byte   // with flushArg: postqueue's 's' (-qR) or 'i' (-qI)
	flushValue string // the site or queue ID
	qtime      bool   // -q<interval>
}

// sendmailMain runs "postkit sendmail ARGS...".
func sendmailMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return smRun("sendmail", args, stdin, stdout, stderr)
}

// mailqMain runs "postkit mailq": sendmail -bp.
func mailqMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return smRun("mailq", args, stdin, stdout, stderr)
}

func smRun(prog string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	warn := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", prog, fmt.Sprintf(format, a...))
	}
	fail := func(err error) int {
		var f *smFatal
		if errors.As(err, &f) {
			fmt.Fprintf(stderr, "%s: fatal: %s\n", prog, f.msg)
			return f.code
		}
		fmt.Fprintf(stderr, "%s: fatal: %v\n", prog, err)
		return exTempFail
	}
	opts, err := smParse(prog, args, stderr, warn)
	if err != nil {
		return fail(err)
	}
	if prog == "mailq" {
		opts.mode = smMailq
	}

	dir := opts.configDir
	if dir == "" {
		dir = os.Getenv("MAIL_CONFIG")
	}
	if dir == "" {
		dir = "/etc/postfix"
	}
	if opts.mode == smNewAlias {
		// newaliases reads the same command line (-C, -v, -oA).
		return newaliasesMain(args, stdin, stdout, stderr)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return fail(fatalf(exTempFail, "%s", pmConfigError(dir, err)))
	}
	ctx := context.Background()

	// Conflicts, in Postfix's order.
	switch {
	case opts.extract && opts.mode != smEnqueue:
		return fail(fatalf(exTempFail, "-t can be used only in delivery mode"))
	case opts.verify && opts.extract:
		return fail(fatalf(exTempFail, "-t option cannot be used with -bv"))
	}
	if opts.qtime && opts.mode != smDaemon {
		return exOK
	}
	switch opts.mode {
	case smIgnore:
		return exOK
	case smMailq:
		if len(opts.recipients) > 0 {
			return fail(fatalf(exTempFail, "display queue mode requires no recipient"))
		}
		// Postfix runs postqueue -p, whose messages these are.
		return smPostqueue(cfg, 'p', "", stdout, stderr)
	case smFlushQ:
		if len(opts.recipients) > 0 {
			return fail(fatalf(exTempFail, "flush queue mode requires no recipient"))
		}
		return smPostqueue(cfg, 'f', "", stdout, stderr)
	case smDaemon:
		if len(opts.recipients) > 0 {
			return fail(fatalf(exTempFail, "daemon mode requires no recipient"))
		}
		return fail(fatalf(exUnavailable, "daemon mode (-bd) is not available: postkit has no master daemon; run a program that composes smtpserver, cleanup and pickup"))
	case smUser:
		if len(opts.recipients) > 0 {
			return fail(fatalf(exTempFail, "stand-alone mode requires no recipient"))
		}
	}
	if opts.flushArg {
		return smPostqueue(cfg, opts.flushMode, opts.flushValue, stdout, stderr)
	}
	if opts.verify {
		// Postfix queues a probe and mails a delivery report; that
		// needs delivery agents.
		return fail(fatalf(exUnavailable, "-bv: address verification reports are not built yet"))
	}
	if opts.verp {
		return fail(fatalf(exUnavailable, "-XV: VERP is not supported yet"))
	}

	qdir, _, err := cfg.Lookup("queue_directory")
	if err != nil {
		return fail(fatalf(exTempFail, "%v", err))
	}
	maildrop := filepath.Join(qdir, "maildrop")
	uid := os.Getuid()
	login, gecos, err := smLogin(uid)
	if opts.mode == smEnqueue {
		// Postfix enforces this in postdrop; sendmail checks first for a
		// friendlier message. Here the check is sendmail's alone: a user
		// who bypasses it can write into a group-writable maildrop
		// anyway, so the directory's group is the real gate.
		if denied, aerr := smSubmitDenied(ctx, cfg, uid, login, err == nil); aerr != nil {
			return fail(fatalf(exTempFail, "%v", aerr))
		} else if denied != "" {
			return fail(fatalf(exTempFail, "User %s(%d) is not allowed to submit mail", denied, uid))
		}
	}
	if err := pickup.Check(maildrop); err != nil {
		return fail(fatalf(exTempFail, "%v", err))
	}
	if opts.mode == smUser {
		if err != nil {
			login = strconv.Itoa(uid)
		}
		return smStandalone(ctx, cfg, maildrop, uid, login, opts, stdin, stdout, stderr)
	}

	sender := ""
	if opts.sender != nil {
		s, n := smFirstAddress(*opts.sender)
		sender = s
		if n > 1 {
			warn("-f option specified malformed sender: %s", *opts.sender)
		}
	} else {
		if err != nil {
			return fail(fatalf(exOSErr, "no login name found for user ID %d", uid))
		}
		sender = login
	}
	fullName := ""
	switch {
	case opts.fullName != nil:
		fullName = *opts.fullName
	case os.Getenv("NAME") != "":
		fullName = os.Getenv("NAME")
	default:
		fullName = smGecosName(gecos, login)
	}
	fixEOL := cfg.Get("sendmail_fix_line_endings")
	switch fixEOL {
	case "always", "strict", "never":
	default:
		return fail(fatalf(exTempFail, "invalid sendmail_fix_line_endings value: %s", fixEOL))
	}
	env := &pickup.Envelope{
		Arrival:           time.Now(),
		UID:               uid,
		User:              login,
		Sender:            sender,
		FullName:          fullName,
		ExtractRecipients: opts.extract,
		Local:             !opts.gateway,
		Proto:             "local",
		Body:              opts.body,
		Ret:               opts.ret,
		EnvID:             opts.envID,
	}
	for _, arg := range opts.recipients {
		addrs := smAddresses(arg)
		if len(addrs) == 0 {
			// Postfix keeps an argument without an address as an
			// empty recipient, which cleanup turns into
			// $empty_address_recipient.
			addrs = []string{""}
		}
		for _, a := range addrs {
			env.Recipients = append(env.Recipients, pickup.Recipient{Addr: a, Notify: opts.notify})
		}
	}
	who := fmt.Sprintf("%s(%d)", sender, uid)

	w, err := pickup.NewWriter(maildrop, env.Arrival)
	if err != nil {
		return fail(fatalf(exTempFail, "%s: %v", who, err))
	}
	rd := &smReader{
		in:      bufio.NewReaderSize(stdin, 64<<10),
		dotEnds: opts.dotEnds,
		fixEOL:  fixEOL,
		keepHdr: opts.extract,
	}
	if err := rd.copy(w); err != nil {
		w.Abort()
		if errors.Is(err, errSMWrite) {
			return fail(fatalf(exTempFail, "%s: error writing queue file: %v", who, err))
		}
		return fail(fatalf(exTempFail, "%s: error reading input: %v", who, err))
	}
	if len(env.Recipients) == 0 {
		// Read to the end first, as Postfix does, then refuse.
		if !opts.extract {
			w.Abort()
			return fail(fatalf(exTempFail, "%s: Recipient addresses must be specified on the command line or via the -t option", who))
		}
		if smHeaderRecipients(rd.headers.Bytes()) == 0 {
			w.Abort()
			return fail(fatalf(exTempFail, "%s: No recipient addresses found in message header", who))
		}
	}
	if err := w.Commit(ctx, env); err != nil {
		return fail(fatalf(exTempFail, "%s: %v", who, err))
	}
	pickup.Wake(maildrop)
	if opts.verbose > 0 {
		fmt.Fprintf(stderr, "%s: queued as %s in %s\n", prog, w.Name(), maildrop)
	}
	return exOK
}

// smParse parses the command line as Postfix's sendmail does: a pre-scan
// (which prints getopt's complaints once), then the real scan (which
// prints them again and stops at the first).
func smParse(prog string, args []string, stderr io.Writer, warn func(string, ...any)) (*smOptions, error) {
	pre := &smGetopt{args: args, prog: prog, stderr: stderr}
	for pre.more() {
		if pre.j == 0 && pre.i < len(args) && args[pre.i] == "-q" {
			pre.i++
			continue
		}
		if _, _, ok := pre.next(); !ok {
			break
		}
	}
	o := &smOptions{dotEnds: true}
	g := &smGetopt{args: args, prog: prog, stderr: stderr}
	for g.more() {
		cur := args[g.i]
		// -q alone is not getopt-compatible.
		if cur == "-q" {
			o.mode = smFlushQ
			g.i++
			continue
		}
		if cur == "-V" && g.i+1 < len(args) && len(args[g.i+1]) == 2 {
			warn("option -V is deprecated with Postfix 2.3; specify -XV instead")
			o.verp = true
			g.i += 2
			continue
		}
		if strings.HasPrefix(cur, "-V") && len(cur) == 4 {
			warn("option %s is deprecated with Postfix 2.3; specify -X%s instead", cur, cur[1:])
			o.verp = true
			g.i++
			continue
		}
		if cur == "-XV" {
			o.verp = true
			g.i++
			continue
		}
		c, arg, ok := g.next()
		if !ok {
			break
		}
		switch c {
		case '?':
			return nil, fatalf(exTempFail, "usage: %s [options]", prog)
		case 'n':
			return nil, fatalf(exTempFail, "-%c option not supported", c)
		case 'B':
			switch arg {
			case "8BITMIME", "7BIT":
				o.body = arg
			default:
				return nil, fatalf(exTempFail, "-B option needs 8BITMIME or 7BIT")
			}
		case 'C':
			o.configDir = arg
			if filepath.Base(arg) == "main.cf" {
				o.configDir = filepath.Dir(arg)
			}
		case 'F':
			s := arg
			o.fullName = &s
		case 'G':
			o.gateway = true
		case 'I':
			o.mode = smNewAlias
		case 'N':
			n, err := smNotify(arg)
			if err != nil {
				warn("%v", err)
				warn("bad -N option value -- ignored")
			} else {
				o.notify = n
			}
		case 'R':
			switch strings.ToLower(arg) {
			case "hdrs":
				o.ret = "HDRS"
			case "full":
				o.ret = "FULL"
			default:
				warn("bad -R option value -- ignored")
			}
		case 'V':
			switch {
			case len(arg) > 100:
				warn("too long -V option value -- ignored")
			case !smAllPrint(arg):
				warn("bad syntax in -V option value -- ignored")
			default:
				o.envID = arg
			}
		case 'X':
			if arg == "" || arg[0] != 'V' {
				return nil, fatalf(exTempFail, "unsupported: -%c%c", c, firstByte(arg))
			}
			o.verp = true
		case 'b':
			switch firstByte(arg) {
			case 'd', 'l':
				o.mode = smDaemon
			case 'h', 'H':
				o.mode = smIgnore
			case 'i':
				o.mode = smNewAlias
			case 'm':
				o.mode = smEnqueue
			case 'p':
				o.mode = smMailq
			case 's':
				o.mode = smUser
			case 'v':
				o.verify = true
			default:
				return nil, fatalf(exTempFail, "unsupported: -%c%c", c, firstByte(arg))
			}
		case 'f', 'r':
			s := arg
			o.sender = &s
		case 'i':
			o.dotEnds = false
		case 'o':
			switch firstByte(arg) {
			case 'A':
				if len(arg) == 1 {
					return nil, fatalf(exTempFail, "-oA requires pathname")
				}
				o.aliasDB = arg[1:]
			case 'i':
				o.dotEnds = false
			}
		case 'q':
			switch {
			case arg != "" && arg[0] >= '0' && arg[0] <= '9':
				o.qtime = true
			case firstByte(arg) == 'R':
				if len(arg) == 1 {
					return nil, fatalf(exTempFail, "specify: -qRsitename")
				}
				o.flushArg, o.flushMode, o.flushValue = true, 's', arg[1:]
			case firstByte(arg) == 'I':
				if len(arg) == 1 {
					return nil, fatalf(exTempFail, "specify: -qIqueueid")
				}
				o.flushArg, o.flushMode, o.flushValue = true, 'i', arg[1:]
			default:
				return nil, fatalf(exTempFail, "-q%c is not implemented", firstByte(arg))
			}
		case 't':
			o.extract = true
		case 'v':
			o.verbose++
		default:
			// A, L, O, U, c, e, h, m, p, x: accepted and ignored,
			// as Postfix does.
		}
	}
	o.recipients = args[g.i:]
	if o.flushArg && o.mode != smEnqueue {
		return nil, fatalf(exTempFail, "-qR can be used only in delivery mode")
	}
	return o, nil
}

func firstByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

// smGetopt is POSIX getopt(3) with Postfix's option string: it stops at
// the first argument that is not an option (Postfix asks glibc for that
// with a leading '+'), and at "--".
type smGetopt struct {
	args   []string
	i, j   int // argument, and byte within it (0: at its start)
	prog   string
	stderr io.Writer
}

func (g *smGetopt) more() bool {
	if g.j != 0 {
		return true
	}
	return g.i < len(g.args)
}

// next returns the next option letter and its argument; ok is false when
// options end. An unknown option or a missing argument prints glibc's
// complaint and returns '?'.
func (g *smGetopt) next() (byte, string, bool) {
	if g.j == 0 {
		if g.i >= len(g.args) {
			return 0, "", false
		}
		a := g.args[g.i]
		if a == "--" {
			g.i++
			return 0, "", false
		}
		if len(a) < 2 || a[0] != '-' {
			return 0, "", false
		}
		g.j = 1
	}
	a := g.args[g.i]
	c := a[g.j]
	g.j++
	k := strings.IndexByte(smGetoptList, c)
	if k < 0 || c == ':' {
		fmt.Fprintf(g.stderr, "%s: invalid option -- '%c'\n", g.prog, c)
		g.advanceIfDone()
		return '?', "", true
	}
	if k+1 < len(smGetoptList) && smGetoptList[k+1] == ':' {
		if g.j < len(a) {
			arg := a[g.j:]
			g.i, g.j = g.i+1, 0
			return c, arg, true
		}
		g.i, g.j = g.i+1, 0
		if g.i >= len(g.args) {
			fmt.Fprintf(g.stderr, "%s: option requires an argument -- '%c'\n", g.prog, c)
			return '?', "", true
		}
		arg := g.args[g.i]
		g.i++
		return c, arg, true
	}
	g.advanceIfDone()
	return c, "", true
}

func (g *smGetopt) advanceIfDone() {
	if g.j >= len(g.args[g.i]) {
		g.i, g.j = g.i+1, 0
	}
}

// smNotify parses a -N value as Postfix's dsn_notify_mask: a comma or
// space separated list of never, success, failure, delay (any case);
// never cannot be combined.
func smNotify(s string) ([]string, error) {
	var out []string
	never := false
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		switch strings.ToLower(w) {
		case "never":
			never = true
			out = append(out, "NEVER")
		case "success", "failure", "delay":
			out = append(out, strings.ToUpper(w))
		default:
			return nil, fmt.Errorf("unknown DSN NOTIFY command value %q in %q", w, s)
		}
	}
	if len(out) == 0 || never && len(out) > 1 {
		return nil, fmt.Errorf("bad DSN NOTIFY value %q", s)
	}
	return out, nil
}

func smAllPrint(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// smAddresses parses a command-line recipient as an RFC 5322 address
// list, as Postfix does ("a@x, b@y", "Name <a@x>"), and returns the
// addresses in internal form. Text that does not parse is taken as one
// address, unchanged.
func smAddresses(s string) []string {
	list, err := address.ParseList(s)
	if err != nil {
		if t := strings.TrimSpace(s); t != "" {
			return []string{strings.TrimSuffix(strings.TrimPrefix(t, "<"), ">")}
		}
		return nil
	}
	out := make([]string, 0, len(list))
	for _, m := range list {
		out = append(out, m.Address.Internal())
	}
	return out
}

// smFirstAddress is the -f sender: the first address of the argument
// ("" for "<>" or an empty argument), and how many there were.
func smFirstAddress(s string) (string, int) {
	addrs := smAddresses(s)
	if len(addrs) == 0 {
		return "", 0
	}
	return addrs[0], len(addrs)
}

// smLogin returns the login name and the GECOS full-name field of uid.
func smLogin(uid int) (string, string, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return "", "", err
	}
	return u.Username, u.Name, nil
}

// smSubmitDenied checks authorized_submit_users (default static:anyone)
// for the user, by login name or "uid:N" when the uid has none, and
// returns the name that was refused, or "".
func smSubmitDenied(ctx context.Context, cfg *config.Config, uid int, login string, haveLogin bool) (string, error) {
	acl := cfg.Get("authorized_submit_users")
	if acl == "static:anyone" {
		return "", nil
	}
	name := login
	if !haveLogin {
		name = "uid:" + strconv.Itoa(uid)
	}
	ml, err := maps.NewMatchList(ctx, maps.MatchListConfig{Name: "authorized_submit_users", Kind: maps.StringMatch}, []string{acl})
	if err != nil {
		return "", err
	}
	ok, err := ml.Match(ctx, name)
	if err != nil {
		return "", err
	}
	if !ok {
		return name, nil
	}
	return "", nil
}

// smGecosName is Postfix's fullname(): the GECOS field up to the first
// comma, with '&' standing for the login name with a capital first
// letter.
func smGecosName(gecos, login string) string {
	if i := strings.IndexByte(gecos, ','); i >= 0 {
		gecos = gecos[:i]
	}
	if strings.Contains(gecos, "&") && login != "" {
		gecos = strings.ReplaceAll(gecos, "&", strings.ToUpper(login[:1])+login[1:])
	}
	return gecos
}

var errSMWrite = errors.New("write")

// smReader copies standard input to the maildrop file the way Postfix's
// sendmail reads it:
//   - leading "From " lines (also ">From ") are dropped (mbox separators);
//   - with sendmail_fix_line_endings = always (the default) trailing CRs
//     are removed from every line, with strict only when the first line
//     ends in CR LF, with never not at all; every line is then written
//     with CR LF, so bare LF and CR LF input give the same content;
//   - without -i, a line holding a single "." ends the input (there is no
//     dot-unstuffing: ".." stays "..");
//   - a last line without a newline is kept (it gets one).
//
// With keepHdr it keeps the header block for the -t recipient check.
type smReader struct {
	in      *bufio.Reader
	dotEnds bool
	fixEOL  string
	keepHdr bool
	headers bytes.Buffer
}

func (r *smReader) copy(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	skipFrom := true
	strip := r.fixEOL == "always"
	decided := r.fixEOL != "strict"
	inHeaders := r.keepHdr
	var line []byte
	for {
		line = line[:0]
		complete := false
		for {
			frag, err := r.in.ReadSlice('\n')
			line = append(line, frag...)
			if err == nil {
				complete = true
				break
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		if len(line) == 0 && !complete {
			break
		}
		text := line
		if complete {
			text = text[:len(text)-1]
			if !decided {
				strip = len(text) > 0 && text[len(text)-1] == '\r'
				decided = true
			}
		}
		if skipFrom {
			if complete && bytes.HasPrefix(bytes.TrimLeft(text, ">"), []byte("From ")) {
				continue
			}
			skipFrom = false
		}
		if complete && strip {
			text = bytes.TrimRight(text, "\r")
		}
		if r.dotEnds && len(text) == 1 && text[0] == '.' {
			break
		}
		if inHeaders {
			if len(text) == 0 || r.headers.Len() > 1<<20 {
				inHeaders = false
			} else {
				r.headers.Write(text)
				r.headers.WriteByte('\n')
			}
		}
		if _, err := bw.Write(text); err != nil {
			return fmt.Errorf("%w: %v", errSMWrite, err)
		}
		if _, err := bw.WriteString("\r\n"); err != nil {
			return fmt.Errorf("%w: %v", errSMWrite, err)
		}
		if !complete {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("%w: %v", errSMWrite, err)
	}
	return nil
}

// smHeaderRecipients counts the addresses sendmail -t would take from the
// primary headers: To, Cc, Bcc, or the Resent- ones when there are any.
// Only for the "No recipient addresses found" check: cleanup does the
// extraction itself.
func smHeaderRecipients(hdr []byte) int {
	normal, resent := 0, 0
	var name string
	var value strings.Builder
	flush := func() {
		if name == "" {
			return
		}
		n := 0
		if l, err := address.ParseList(value.String()); err == nil {
			n = len(l)
		}
		switch strings.ToLower(name) {
		case "to", "cc", "bcc":
			normal += n
		case "resent-to", "resent-cc", "resent-bcc":
			resent += n
		}
		name = ""
		value.Reset()
	}
	sawResent := false
	for line := range strings.SplitSeq(string(hdr), "\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			value.WriteString(" " + line)
			continue
		}
		flush()
		n, v, ok := strings.Cut(line, ":")
		if !ok {
			break // not a header: the body starts here
		}
		name = strings.TrimRight(n, " \t")
		if strings.HasPrefix(strings.ToLower(name), "resent-") && (strings.EqualFold(name, "resent-to") || strings.EqualFold(name, "resent-cc") || strings.EqualFold(name, "resent-bcc")) {
			sawResent = true
		}
		value.WriteString(v)
	}
	flush()
	if sawResent {
		return resent
	}
	return normal
}

// smStandalone is sendmail -bs: an SMTP session on standard input and
// output, as Postfix runs smtpd in stand-alone mode. The client is
// localhost[127.0.0.1]; access restrictions are off (Postfix disables
// them when smtpd runs stand-alone without mail_owner privileges); each
// message goes into the maildrop like any other submission.
func smStandalone(ctx context.Context, cfg *config.Config, maildrop string, uid int, login string, opts *smOptions, stdin io.Reader, stdout, stderr io.Writer) int {
	log := slog.New(slog.DiscardHandler)
	if opts.verbose > 0 {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	r := config.NewReader(cfg)
	scfg := smtpserver.Config{
		Hostname:         cfg.Get("myhostname"),
		MailName:         cfg.Get("mail_name"),
		Banner:           cfg.Get("smtpd_banner"),
		MessageSizeLimit: r.Size("message_size_limit"),
		RecipientLimit:   r.Int("smtpd_recipient_limit"),
		LineLengthLimit:  r.Int("line_length_limit"),
		Timeout:          r.Duration("smtpd_timeout"),
		SMTPUTF8Enable:   r.Bool("smtputf8_enable"),
		ErrorSleepTime:   -1,
		Handoff:          &smHandoff{dir: maildrop, uid: uid, login: login},
		Logger:           log,
	}
	if err := r.Err(); err != nil {
		fmt.Fprintf(stderr, "sendmail: fatal: %v\n", err)
		return exTempFail
	}
	if scfg.MessageSizeLimit == 0 {
		scfg.MessageSizeLimit = -1
	}
	srv, err := smtpserver.New(scfg)
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: fatal: %v\n", err)
		return exSoftware
	}
	conn := newStdioConn(stdin, stdout)
	srv.ServeConn(conn)
	<-conn.closed
	srv.Close()
	return exOK
}

// smHandoff writes the messages of a -bs session into the maildrop.
type smHandoff struct {
	dir   string
	uid   int
	login string
}

func (h *smHandoff) Open(ctx context.Context, env *smtpserver.Envelope) (smtpserver.Message, error) {
	w, err := pickup.NewWriter(h.dir, time.Now())
	if err != nil {
		return nil, err
	}
	return &smMessage{h: h, w: w, arrival: time.Now()}, nil
}

type smMessage struct {
	h       *smHandoff
	w       *pickup.Writer
	arrival time.Time
}

// ID is the maildrop file name, which the session reports as "queued as";
// pickup gives the message its queue ID later, as Postfix's does.
func (m *smMessage) ID() string                  { return m.w.Name() }
func (m *smMessage) Write(p []byte) (int, error) { return m.w.Write(p) }
func (m *smMessage) Abort() error                { return m.w.Abort() }

func (m *smMessage) Commit(ctx context.Context, env *smtpserver.Envelope) error {
	pe := &pickup.Envelope{
		Arrival:  m.arrival,
		UID:      m.h.uid,
		User:     m.h.login,
		Sender:   env.Sender,
		Local:    true,
		Proto:    "ESMTP",
		Body:     env.Body,
		Ret:      env.Ret,
		EnvID:    env.EnvID,
		SMTPUTF8: env.SMTPUTF8,
	}
	if s := env.Session; s != nil {
		pe.Helo = s.Helo
		if !s.ESMTP {
			pe.Proto = "SMTP"
		}
	}
	for _, r := range env.Recipients {
		pe.Recipients = append(pe.Recipients, pickup.Recipient{Addr: r.Addr, Notify: r.Notify})
	}
	if err := m.w.Commit(ctx, pe); err != nil {
		return err
	}
	pickup.Wake(m.h.dir)
	return nil
}

// stdioConn is a net.Conn over standard input and output. Its addresses
// are not IP addresses, so the SMTP server takes the client for
// localhost[127.0.0.1], as Postfix's stand-alone smtpd does.
type stdioConn struct {
	r      io.Reader
	w      io.Writer
	closed chan struct{}
	once   sync.Once
}

func newStdioConn(r io.Reader, w io.Writer) *stdioConn {
	return &stdioConn{r: r, w: w, closed: make(chan struct{})}
}

func (c *stdioConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *stdioConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}
func (c *stdioConn) LocalAddr() net.Addr  { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr { return stdioAddr{} }

// Deadlines reach standard input when it is a pipe or socket (os.File
// supports them there); on a terminal or regular file they are ignored.
func (c *stdioConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return nil
}

func (c *stdioConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.r.(interface{ SetReadDeadline(time.Time) error }); ok {
		d.SetReadDeadline(t)
	}
	return nil
}

func (c *stdioConn) SetWriteDeadline(t time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdio" }

// smPostqueue runs postqueue's mode (p: sendmail -bp and mailq; f: -q;
// s: -qRsite; i: -qIqueueid), as Postfix's sendmail runs postqueue.
func smPostqueue(cfg *config.Config, mode byte, arg string, stdout, stderr io.Writer) int {
	return pqRun("postqueue", cfg, mode, arg, stdout, stderr)
}
