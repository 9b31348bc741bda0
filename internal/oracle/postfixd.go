package oracle

// A private Postfix instance on a loopback port, used as the reference for
// SMTP replies: tests speak SMTP to it (with XCLIENT to pose as any client)
// and compare its replies and log lines with postkit's.
//
// The instance lives in its own directory with its own config, queue and
// data directories, so /etc/postfix and the system's mail are never
// touched, and several instances run side by side on different ports.
// See /work/shared/docs/real-peers.md for the traps this works around.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/smtpwire"
)

// PostfixOptions configure a private Postfix instance.
type PostfixOptions struct {
	// Main is main.cf text appended to the harness's settings. A parameter
	// set here replaces the harness's setting of the same name (see
	// DefaultMainCF), so a test can, for example, give mydestination a
	// value. Table files are referred to as $config_directory/NAME.
	Main string
	// Files are written into the config directory before Postfix starts.
	Files []File
	// StartTimeout bounds start-up (Postfix's start plus the first 220
	// banner); zero means 60 seconds.
	StartTimeout time.Duration
}

// File is a file written into the instance's config directory.
type File struct {
	// Name is the path relative to the config directory; it must stay
	// inside it.
	Name string
	// Data is the content, written as is.
	Data string
	// Postmap, when not empty, is the indexed table type ("hash", "cdb",
	// "lmdb", "btree") to build from the file with "postmap TYPE:FILE".
	Postmap string
}

// Postfix is a running private Postfix instance. It is stopped by the
// cleanup of the test that started it.
type Postfix struct {
	// Dir holds everything: etc/, spool/, data/ and maillog.
	Dir string
	// ConfigDir is the config directory (main.cf, master.cf, tables).
	ConfigDir string
	// QueueDir is queue_directory.
	QueueDir string
	// Addr is the SMTP service's address, 127.0.0.1:PORT.
	Addr string
	// Port is the SMTP service's port.
	Port int
	// StartTime is how long "postfix start" plus the first banner took.
	StartTime time.Duration
	// StartWarnings are the warnings of "postfix start" (its "postfix
	// check" part) and of the daemons until the first banner.
	StartWarnings []string

	mainCF  string // the main.cf last written
	stopped bool
	// portClaim is the locked claim file of Port (see claimPort).
	portClaim *os.File
	logPath   string
	log       maillog
	marks     atomic.Int64
}

// postfixDefaults are the harness's main.cf settings, in order. Values
// with {DIR} get the instance directory. Every one can be replaced through
// PostfixOptions.Main.
var postfixDefaults = []struct{ name, value string }{
	{"compatibility_level", "3.6"},
	{"queue_directory", "{DIR}/spool"},
	{"data_directory", "{DIR}/data"},
	// Postfix's own log file (postlogd), readable by the test. Postfix
	// refuses a maillog_file outside maillog_file_prefixes.
	{"maillog_file", "{DIR}/maillog"},
	{"maillog_file_prefixes", "{DIR}"},
	{"inet_interfaces", "127.0.0.1"},
	{"inet_protocols", "ipv4"},
	// A fixed name: replies and logs must not depend on the host.
	{"myhostname", "mx.oracle.test"},
	{"mynetworks", "127.0.0.0/8"},
	{"smtpd_authorized_xclient_hosts", "127.0.0.0/8"},
	// No reverse DNS for the real peer; XCLIENT supplies the client.
	{"smtpd_peername_lookup", "no"},
	// Nothing is ever delivered.
	{"default_transport", "discard"},
	{"relay_transport", "discard"},
	{"alias_maps", ""},
	{"alias_database", ""},
	{"mydestination", ""},
	// Many rejected commands in one dialogue must not slow it down
	// (smtpd sleeps after smtpd_soft_error_limit errors).
	{"smtpd_error_sleep_time", "0"},
}

// DefaultMainCF returns the main.cf the harness writes for an instance in
// dir when the caller sets nothing.
func DefaultMainCF(dir string) string {
	return buildMainCF(dir, "")
}

// buildMainCF merges the harness's defaults and the caller's text: the
// defaults whose names the caller sets are left out, so the file has one
// entry per name (postfix check warns about duplicates).
func buildMainCF(dir, extra string) string {
	set := mainCFNames(extra)
	var b strings.Builder
	b.WriteString("# main.cf written by postkit's oracle harness\n")
	for _, d := range postfixDefaults {
		if set[d.name] {
			continue
		}
		fmt.Fprintf(&b, "%s = %s\n", d.name, strings.ReplaceAll(d.value, "{DIR}", dir))
	}
	if extra != "" {
		b.WriteString("# caller's settings\n")
		b.WriteString(extra)
		if !strings.HasSuffix(extra, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// mainCFNames returns the parameter names main.cf text assigns: lines that
// start in column 0 and are neither blank nor comments (postconf(5)).
func mainCFNames(text string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' || line[0] == '#' {
			continue
		}
		if name, _, ok := strings.Cut(line, "="); ok {
			names[strings.TrimSpace(name)] = true
		}
	}
	return names
}

// Services of Debian's master.cf that the oracle never needs: pipe(8)
// transports run as users that may not exist, and pickup only serves local
// submission.
var droppedServices = map[string]bool{
	"pickup": true, "maildrop": true, "uucp": true, "ifmail": true, "bsmtp": true,
	"scalemail-backend": true, "mailman": true, "postscreen": true, "smtpd": true,
	"dnsblog": true, "tlsproxy": true, "submission": true, "submissions": true, "smtps": true,
}

// masterCF derives the instance's master.cf from Postfix's: no chroot for
// any service (a chrooted daemon cannot see a private spool), the public
// smtp service on 127.0.0.1:port, and the unneeded services removed.
func masterCF(system string, port int) (string, error) {
	var b strings.Builder
	skip := false
	haveSMTP := false
	for line := range strings.SplitSeq(system, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			// A continuation (-o options) of the previous entry.
			if !skip {
				b.WriteString(line)
				b.WriteByte('\n')
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 8 {
			return "", fmt.Errorf("master.cf entry %q has %d fields, want at least 8", line, len(f))
		}
		if f[1] == "inet" && f[0] != "smtp" || droppedServices[f[0]] {
			skip = true
			continue
		}
		skip = false
		if f[0] == "smtp" && f[1] == "inet" {
			f[0] = "127.0.0.1:" + strconv.Itoa(port)
			haveSMTP = true
		}
		f[4] = "n"
		b.WriteString(strings.Join(f, " "))
		b.WriteByte('\n')
	}
	if !haveSMTP {
		return "", errors.New("master.cf has no \"smtp inet\" service")
	}
	return b.String(), nil
}

// StartPostfix starts a private Postfix instance for the test and stops it
// when the test ends. It fails the test (with Postfix's own reason) when
// Postfix does not start; it skips the test when Postfix is not installed
// (fails under CI=true; see Require).
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	p, err := TryStartPostfix(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TryStartPostfix is StartPostfix for a configuration Postfix may refuse:
// it returns the reason (from postfix(1) or the log: "fatal: ...")
// instead of failing the test. Problems of the harness itself still fail
// the test.
func TryStartPostfix(t testing.TB, opts PostfixOptions) (*Postfix, error) {
	t.Helper()
	postfix := Require(t, "postfix")
	Require(t, "postmap")
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	system, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatalf("oracle: read Postfix's master.cf: %v", err)
	}
	owner, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("oracle: look up user postfix: %v", err)
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)

	// Not t.TempDir(): its path holds the test name, and Postfix's UNIX
	// sockets under spool/private must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "pfx")
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Every directory on the way must be searchable by user postfix.
	for _, d := range []string{dir, filepath.Join(dir, "etc"), filepath.Join(dir, "spool"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("oracle: %v", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("oracle: %v", err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "data"), uid, gid); err != nil {
		t.Fatalf("oracle: chown data directory: %v", err)
	}
	p := &Postfix{
		Dir:       dir,
		ConfigDir: filepath.Join(dir, "etc"),
		QueueDir:  filepath.Join(dir, "spool"),
		logPath:   filepath.Join(dir, "maillog"),
	}
	p.log.path = p.logPath
	if err := p.writeConfig(opts.Main, opts.Files); err != nil {
		return nil, fmt.Errorf("oracle: %w", err)
	}

	// The kernel's port 0 gives a port no socket listens on; Postfix's
	// master binds with SO_REUSEPORT, so another instance that picked the
	// same port would silently share connections with this one. Retry on
	// such a clash (checked after start).
	start := time.Now()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, claim, err := claimPort()
		if err != nil {
			t.Fatalf("oracle: %v", err)
		}
		if lastErr = p.start(postfix, system, port, start.Add(timeout)); lastErr == nil {
			p.portClaim = claim
			break
		}
		claim.Close()
		if !errors.Is(lastErr, errPortShared) {
			break
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("oracle: start Postfix in %s: %w", dir, lastErr)
	}
	p.StartTime = time.Since(start)
	for _, w := range p.StartWarnings {
		t.Logf("oracle: Postfix in %s: %s", dir, w)
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("oracle: stop Postfix in %s: %v", dir, err)
		}
		// Only a stopped instance gives its port back.
		p.portClaim.Close()
	})
	return p, nil
}

var errPortShared = errors.New("another socket listens on the port")

// start writes master.cf for port, runs "postfix start" and waits for the
// first 220 banner.
func (p *Postfix) start(postfix string, system []byte, port int, deadline time.Time) error {
	mcf, err := masterCF(string(system), port)
	if err != nil {
		return err
	}
	mpath := filepath.Join(p.ConfigDir, "master.cf")
	if err := os.WriteFile(mpath, []byte(mcf), 0o644); err != nil {
		return err
	}
	if err := backdate(mpath); err != nil {
		return err
	}
	p.Port = port
	p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p.stopped = false

	out, err := p.postfixCmd(postfix, "start")
	if err != nil {
		return fmt.Errorf("postfix start: %v\n%s%s", err, out, p.logTail(20))
	}
	if err := p.waitBanner(deadline); err != nil {
		p.stop()
		return err
	}
	if err := p.checkListener(); err != nil {
		p.stop()
		return err
	}
	// What "postfix check" and the daemons found wrong is only a warning
	// to Postfix; keep it, since a test may depend on what was ignored.
	p.StartWarnings = nil
	for l := range strings.SplitSeq(out+"\n"+p.Log(), "\n") {
		if strings.Contains(l, "warning: ") {
			p.StartWarnings = append(p.StartWarnings, strings.TrimRight(l, "\r"))
		}
	}
	return nil
}

// postfixCmd runs "postfix -c ETC cmd". postfix(1) writes its errors to
// the terminal only when it has one, and otherwise only to the log, so it
// runs under script(1) when that is installed.
func (p *Postfix) postfixCmd(postfix, cmd string) (string, error) {
	var c *exec.Cmd
	if scr, err := exec.LookPath("script"); err == nil {
		c = exec.Command(scr, "-qec", postfix+" -c "+p.ConfigDir+" "+cmd, "/dev/null")
	} else {
		c = exec.Command(postfix, "-c", p.ConfigDir, cmd)
	}
	c.Env = append(os.Environ(), "LANG=C", "LC_ALL=C")
	out, err := c.CombinedOutput()
	return string(out), err
}

// waitBanner connects until a 220 greeting arrives. A refused connection
// is retried (the master may still be binding). While it waits for the
// greeting it watches the log: an smtpd that exits with a fatal error
// (a configuration smtpd refuses) leaves the connection open while the
// master throttles the service, and the reason is only in the log.
func (p *Postfix) waitBanner(deadline time.Time) error {
	logStart := len(p.Log())
	for {
		conn, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err != nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("no SMTP service on %s: %v\n%s", p.Addr, err, p.logTail(20))
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		var line string
		for {
			conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			part, rerr := r.ReadString('\n')
			line += part
			if rerr == nil {
				break
			}
			var ne net.Error
			if !errors.As(rerr, &ne) || !ne.Timeout() {
				return fmt.Errorf("no 220 greeting from %s (got %q, %v)\n%s", p.Addr, line, rerr, p.logTail(20))
			}
			if fatal := fatalLines(p.Log(), logStart); fatal != "" {
				return fmt.Errorf("smtpd does not start:\n%s", fatal)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no 220 greeting from %s\n%s", p.Addr, p.logTail(20))
			}
		}
		if !strings.HasPrefix(line, "220") {
			return fmt.Errorf("greeting from %s is %q, not 220\n%s", p.Addr, line, p.logTail(20))
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "QUIT\r\n")
		r.ReadString('\n')
		return nil
	}
}

// fatalLines returns the log lines after byte offset from that report a
// daemon's fatal error or a throttled service.
func fatalLines(log string, from int) string {
	var b strings.Builder
	for l := range strings.SplitSeq(log[min(from, len(log)):], "\n") {
		if strings.Contains(l, " fatal: ") || strings.Contains(l, " panic: ") || strings.Contains(l, "-- throttling") {
			b.WriteString("\t" + l + "\n")
		}
	}
	return b.String()
}

// checkListener makes sure this instance's master is the only listener on
// its port (see errPortShared).
func (p *Postfix) checkListener() error {
	inodes, err := listenInodes(p.Port)
	if err != nil {
		return err
	}
	pid, err := p.masterPID()
	if err != nil {
		return err
	}
	own, err := socketInodes(pid)
	if err != nil {
		return err
	}
	for _, ino := range inodes {
		if !own[ino] {
			return fmt.Errorf("port %d: %w", p.Port, errPortShared)
		}
	}
	return nil
}

// stop ends the instance and waits until the master is gone and the port
// is closed, so that the port can be reused. It signals the master as
// "postfix stop" does, but without that script's one-second polling.
func (p *Postfix) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	pid, err := p.masterPID()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal master %d: %w", pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("master %d still running", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p.waitStopped(deadline)
}

func (p *Postfix) waitStopped(deadline time.Time) error {
	for {
		inodes, err := listenInodes(p.Port)
		if err != nil {
			return err
		}
		if len(inodes) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d still open", p.Port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeConfig writes main.cf and the files, and builds indexed tables.
func (p *Postfix) writeConfig(main string, files []File) error {
	p.mainCF = buildMainCF(p.Dir, main)
	mpath := filepath.Join(p.ConfigDir, "main.cf")
	if err := os.WriteFile(mpath, []byte(p.mainCF), 0o644); err != nil {
		return err
	}
	// Postfix's programs wait for a main.cf or table that changed in the
	// last second or two to settle (postmap included); backdating saves
	// that wait on every start.
	if err := backdate(mpath); err != nil {
		return err
	}
	var paths []string
	for _, f := range files {
		clean := filepath.Clean(f.Name)
		if f.Name == "" || filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("file name %q is not inside the config directory", f.Name)
		}
		path := filepath.Join(p.ConfigDir, clean)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(f.Data), 0o644); err != nil {
			return err
		}
		if err := backdate(path); err != nil {
			return err
		}
		if f.Postmap != "" {
			res, err := Exec(postmapPath(), nil, "-c", p.ConfigDir, f.Postmap+":"+path)
			if err != nil {
				return fmt.Errorf("postmap %s:%s: %w", f.Postmap, path, err)
			}
			if res.Code != 0 {
				return fmt.Errorf("postmap %s:%s: exit %d: %s", f.Postmap, path, res.Code, res.Stderr)
			}
			matches, _ := filepath.Glob(path + ".*")
			paths = append(paths, matches...)
		}
	}
	return backdate(paths...)
}

func postmapPath() string {
	if p, err := exec.LookPath("postmap"); err == nil {
		return p
	}
	return "/usr/sbin/postmap"
}

func backdate(paths ...string) error {
	past := time.Now().Add(-10 * time.Second)
	for _, p := range paths {
		if err := os.Chtimes(p, past, past); err != nil {
			return err
		}
	}
	return nil
}

// WriteConfigDir writes into dir the main.cf and files an instance started
// with opts would get (dir standing for the instance directory), and
// builds the indexed tables. It lets a test read the same configuration
// as Postfix when Postfix refused to start (TryStartPostfix).
func WriteConfigDir(dir string, opts PostfixOptions) error {
	p := &Postfix{Dir: dir, ConfigDir: dir}
	if err := p.writeConfig(opts.Main, opts.Files); err != nil {
		return fmt.Errorf("oracle: write config into %s: %w", dir, err)
	}
	return nil
}

// MainCF returns the main.cf text the instance runs with: the harness's
// settings and the caller's.
func (p *Postfix) MainCF() string { return p.mainCF }

// Reconfigure replaces the caller's main.cf text and writes files (as in
// PostfixOptions), runs "postfix reload" and returns once every daemon of
// the old configuration has exited, so the next session sees the new one.
func (p *Postfix) Reconfigure(t testing.TB, main string, files []File) {
	t.Helper()
	postfix := Require(t, "postfix")
	if err := p.writeConfig(main, files); err != nil {
		t.Fatalf("oracle: reconfigure %s: %v", p.Dir, err)
	}
	master, err := p.masterPID()
	if err != nil {
		t.Fatalf("oracle: reconfigure %s: %v", p.Dir, err)
	}
	old := childPIDs(master)
	if out, err := p.postfixCmd(postfix, "reload"); err != nil {
		t.Fatalf("oracle: postfix reload: %v\n%s%s", err, out, p.logTail(20))
	}
	// Idle daemons leave "at their earliest convenience"; one that is
	// still there could take the next connection with the old settings.
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range old {
		for processAlive(pid) && processParent(pid) == master {
			if time.Now().After(deadline) {
				t.Fatalf("oracle: reconfigure %s: daemon %d of the old configuration still running", p.Dir, pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := p.waitBanner(deadline); err != nil {
		t.Fatalf("oracle: after reload: %v", err)
	}
}

// Log returns what the instance has logged so far (its maillog_file),
// without the harness's own markers.
func (p *Postfix) Log() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for line := range strings.SplitAfterSeq(string(data), "\n") {
		if !strings.HasPrefix(line, markPrefix) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// logTail returns the last n log lines, indented, for error messages.
func (p *Postfix) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	b.WriteString("maillog:\n")
	for _, l := range lines {
		b.WriteString("\t" + l + "\n")
	}
	return b.String()
}

// markPrefix starts the lines the harness writes into the log through
// postlogd to know that everything logged before is in the file.
const markPrefix = "postkit-oracle-mark "

// maillog follows the instance's log file.
type maillog struct {
	mu      sync.Mutex
	path    string
	off     int64
	partial string
	lines   []string
}

// refresh reads what was appended since the last call.
func (m *maillog) refresh() error {
	f, err := os.Open(m.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(m.off, 0); err != nil {
		return err
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(f)
	if err != nil {
		return err
	}
	m.off += n
	text := m.partial + buf.String()
	lines := strings.Split(text, "\n")
	m.partial = lines[len(lines)-1]
	m.lines = append(m.lines, lines[:len(lines)-1]...)
	return nil
}

// sync writes a marker through postlogd and waits until it is in the
// file. A daemon logs before it replies, and postlogd reads its socket in
// order, so once the marker is there every line logged before the last
// reply is too. It returns the number of log lines up to the marker.
func (p *Postfix) sync() (int, error) {
	mark := fmt.Sprintf("%s%d", markPrefix, p.marks.Add(1))
	conn, err := net.Dial("unixgram", filepath.Join(p.QueueDir, "public", "postlog"))
	if err != nil {
		return 0, fmt.Errorf("log marker: %w", err)
	}
	_, err = conn.Write([]byte(mark))
	conn.Close()
	if err != nil {
		return 0, fmt.Errorf("log marker: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	m := &p.log
	m.mu.Lock()
	defer m.mu.Unlock()
	from := 0
	for {
		if err := m.refresh(); err != nil {
			return 0, err
		}
		for i := from; i < len(m.lines); i++ {
			if m.lines[i] == mark {
				return i + 1, nil
			}
		}
		from = len(m.lines)
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("log marker %q did not reach %s", mark, m.path)
		}
		time.Sleep(time.Millisecond)
	}
}

// linesOf returns the messages of the log lines [from, to) written by
// process pid (all processes when pid is 0), without the timestamp, host
// and program prefix.
func (p *Postfix) linesOf(from, to, pid int) []string {
	m := &p.log
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	tag := ""
	if pid != 0 {
		tag = "[" + strconv.Itoa(pid) + "]: "
	}
	for _, l := range m.lines[from:to] {
		if strings.HasPrefix(l, markPrefix) {
			continue
		}
		if tag != "" {
			i := strings.Index(l, tag)
			if i < 0 {
				continue
			}
			out = append(out, l[i+len(tag):])
			continue
		}
		if i := strings.Index(l, "]: "); i >= 0 {
			l = l[i+3:]
		}
		out = append(out, l)
	}
	return out
}

// Reply is an SMTP reply.
type Reply struct {
	// Code is the reply code; 0 when the server closed the connection
	// without a reply.
	Code int
	// Lines are the texts of the reply lines, without "250-" or "250 ".
	Lines []string
	// Log holds the messages (the part after "postfix/smtpd[PID]: ") that
	// the session's smtpd logged while handling the command.
	Log []string
	// Closed: the connection was closed, before or after this reply.
	Closed bool
}

// String returns the reply as it was sent, one line per line, without
// CRLFs: "250-mx.example.com\n250 PIPELINING". A closed connection without
// reply is "(connection closed)".
func (r Reply) String() string {
	if r.Code == 0 {
		return "(connection closed)"
	}
	var b strings.Builder
	for i, l := range r.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		sep := "-"
		if i == len(r.Lines)-1 {
			sep = " "
		}
		b.WriteString(strconv.Itoa(r.Code))
		if l != "" || sep == "-" {
			b.WriteString(sep + l)
		}
	}
	return b.String()
}

// SMTPConn is an SMTP session with the instance.
type SMTPConn struct {
	p      *Postfix
	t      testing.TB
	conn   net.Conn
	r      *bufio.Reader
	pid    int // the smtpd serving the session; 0 when unknown
	logAt  int // log lines already attributed
	banner Reply
	closed bool
	// sawDisconnect: the session's "disconnect from" line was collected.
	sawDisconnect bool
}

// Session connects to the instance and reads the greeting. The session
// is closed (QUIT) when the test ends if Close was not called.
func (p *Postfix) Session(t testing.TB) *SMTPConn {
	t.Helper()
	c, err := p.dial(t)
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func (p *Postfix) dial(t testing.TB) (*SMTPConn, error) {
	start, err := p.sync()
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", p.Addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to Postfix at %s: %w", p.Addr, err)
	}
	c := &SMTPConn{p: p, t: t, conn: conn, r: bufio.NewReader(conn), logAt: start}
	c.banner, err = c.read()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting from %s: %w\n%s", p.Addr, err, p.logTail(10))
	}
	if master, err := p.masterPID(); err == nil {
		local := conn.LocalAddr().(*net.TCPAddr)
		c.pid = serverPID(master, p.Port, local.Port)
	}
	c.banner.Log = c.collectLog()
	return c, nil
}

// Banner returns the greeting.
func (c *SMTPConn) Banner() Reply { return c.banner }

// PID returns the process ID of the smtpd that serves the session, or 0
// when it could not be found.
func (c *SMTPConn) PID() int { return c.pid }

// Cmd sends one command line (without CRLF) and returns the reply with
// the log lines it caused. After the server closed the connection it
// returns a Reply with Code 0 and Closed set.
func (c *SMTPConn) Cmd(line string) Reply {
	c.t.Helper()
	return c.Pipeline(line)[0]
}

// Pipeline sends the command lines in one write, as a client using
// PIPELINING does, and then reads one reply per line. Log lines are
// attached to the last reply.
func (c *SMTPConn) Pipeline(lines ...string) []Reply {
	c.t.Helper()
	replies := make([]Reply, len(lines))
	if c.closed {
		for i := range replies {
			replies[i] = Reply{Closed: true}
		}
		return replies
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write([]byte(b.String())); err != nil {
		c.closed = true
	}
	for i := range replies {
		if c.closed {
			replies[i] = Reply{Closed: true}
			continue
		}
		r, err := c.read()
		if err != nil {
			c.closed = true
			if !errors.Is(err, errClosed) {
				c.t.Errorf("oracle: reply to %q: %v", lines[i], err)
			}
			replies[i] = Reply{Closed: true}
			continue
		}
		replies[i] = r
		// 421 and 521 end the session (RFC 5321 3.8).
		if r.Code == 421 || r.Code == 521 {
			replies[i].Closed = true
			c.closed = true
		}
	}
	replies[len(replies)-1].Log = c.collectLog()
	return replies
}

// Message sends a message body after a 354 reply: the lines are
// dot-stuffed, CRLF-terminated and followed by ".". It returns the reply
// to the final dot.
func (c *SMTPConn) Message(body string) Reply {
	c.t.Helper()
	if c.closed {
		return Reply{Closed: true}
	}
	var b strings.Builder
	body = strings.ReplaceAll(body, "\r\n", "\n")
	body = strings.TrimSuffix(body, "\n")
	for l := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l + "\r\n")
	}
	// The final "." is sent as a command, so that its reply and log
	// lines are collected like any other.
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write([]byte(b.String())); err != nil {
		c.closed = true
		return Reply{Closed: true}
	}
	return c.Cmd(".")
}

// Close ends the session with QUIT.
func (c *SMTPConn) Close() {
	if c.conn == nil {
		return
	}
	if !c.closed {
		c.conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c.conn, "QUIT\r\n")
		c.read()
	}
	c.conn.Close()
	c.conn = nil
	c.closed = true
}

var errClosed = smtpwire.ErrClosed

func (c *SMTPConn) read() (Reply, error) {
	r, err := ReadReply(c.r)
	if err != nil {
		return r, err
	}
	return r, nil
}

// collectLog returns the session's log lines since the last call. When
// the server has closed the connection, smtpd may still be logging what
// made it close (HANGUP shuts the socket before it logs), so it waits for
// the session's "disconnect from" line.
func (c *SMTPConn) collectLog() []string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := c.p.sync()
		if err != nil {
			c.t.Errorf("oracle: %v", err)
			return nil
		}
		lines := c.p.linesOf(c.logAt, n, c.pid)
		done := !c.closed || c.pid == 0 || c.sawDisconnect || time.Now().After(deadline)
		for _, l := range lines {
			if strings.HasPrefix(l, "disconnect from ") {
				done = true
				// A reply the server sends unasked (a 421) may come
				// after the session's last line was already collected.
				c.sawDisconnect = true
			}
		}
		if done {
			c.logAt = n
			return lines
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ReadReply reads one SMTP reply, single- or multi-line (RFC 5321 4.2).
func ReadReply(r *bufio.Reader) (Reply, error) {
	code, lines, err := smtpwire.ReadReply(r)
	return Reply{Code: code, Lines: lines}, err
}

// freePort asks the kernel for a loopback port nothing listens on.
// claimPort picks a free port and claims it for this instance against
// every other test process on the machine: a lock (flock) on a file named
// after the port, held until the instance has stopped. Without it two
// instances started at the same moment by different test binaries could
// be given the same port by the kernel (each probe closes its socket
// before Postfix binds), and since Postfix's master binds with
// SO_REUSEPORT the kernel would then spread one test's connections over
// both instances until the later one noticed the clash: a session would
// meet another test's configuration.
func claimPort() (int, *os.File, error) {
	dir := filepath.Join(os.TempDir(), "postkit-oracle-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, nil, fmt.Errorf("port claims: %w", err)
	}
	for range 100 {
		port, err := freePort()
		if err != nil {
			return 0, nil, err
		}
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return 0, nil, fmt.Errorf("port claims: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // claimed by another instance: pick another port
			continue
		}
		return port, f, nil
	}
	return 0, nil, errors.New("port claims: no unclaimed free port in 100 tries")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port, nil
}

func (p *Postfix) masterPID() (int, error) {
	data, err := os.ReadFile(filepath.Join(p.QueueDir, "pid", "master.pid"))
	if err != nil {
		return 0, fmt.Errorf("master pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("master pid file: %w", err)
	}
	return pid, nil
}

// /proc helpers: Linux only, like Debian's Postfix packages.

// tcpSockets calls fn for each IPv4 socket in /proc/net/tcp with its local
// and remote ports (on 127.0.0.1 only), state and inode.
func tcpSockets(fn func(lport, rport int, state, inode string)) error {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[0] == "sl" {
			continue
		}
		lhost, lp, ok1 := strings.Cut(f[1], ":")
		_, rp, ok2 := strings.Cut(f[2], ":")
		if !ok1 || !ok2 || lhost != "0100007F" {
			continue
		}
		l, err1 := strconv.ParseInt(lp, 16, 32)
		r, err2 := strconv.ParseInt(rp, 16, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		fn(int(l), int(r), f[3], f[9])
	}
	return nil
}

// listenInodes returns the inodes of the sockets listening on 127.0.0.1:port.
func listenInodes(port int) ([]string, error) {
	var out []string
	err := tcpSockets(func(l, _ int, state, inode string) {
		if l == port && state == "0A" {
			out = append(out, inode)
		}
	})
	return out, err
}

// socketInodes returns the inodes of the sockets process pid has open.
func socketInodes(pid int) (map[string]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			out[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return out, nil
}

// processParent returns the parent of pid, or 0.
func processParent(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || f[0] == "Z" {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func processAlive(pid int) bool { return processParent(pid) != 0 }

// childPIDs returns the processes whose parent is pid.
func childPIDs(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if processParent(n) == pid {
			out = append(out, n)
		}
	}
	return out
}

// serverPID finds the master's child that holds the server side of the
// connection from clientPort to port.
func serverPID(master, port, clientPort int) int {
	var inode string
	tcpSockets(func(l, r int, _ string, ino string) {
		if l == port && r == clientPort {
			inode = ino
		}
	})
	if inode == "" || inode == "0" {
		return 0
	}
	for _, pid := range childPIDs(master) {
		if own, err := socketInodes(pid); err == nil && own[inode] {
			return pid
		}
	}
	return 0
}

// Scenario is one file of a scenario corpus: a main.cf fragment, table
// files and SMTP dialogues without expected replies, which a Postfix
// instance started with the fragment and files produces. A scenario
// without dialogues only asks whether smtpd accepts the configuration. The format is
// described in restrictions/testdata/oracle/README.md:
//
//	@@ main.cf
//	smtpd_recipient_restrictions = check_recipient_access hash:$config_directory/rcpt, reject_unauth_destination
//	@@ file rcpt hash
//	blocked@example.com REJECT
//	@@ dialogue blocked-recipient
//	XCLIENT NAME=mail.example.net ADDR=192.0.2.7
//	EHLO mail.example.net
//	MAIL FROM:<a@example.net>
//	RCPT TO:<blocked@example.com>
//	DATA
type Scenario struct {
	Name      string // the file name without ".txt"
	Path      string
	Main      string // the main.cf fragment
	Files     []File // tables and other files, written into the config directory
	Dialogues []Dialogue
}

// Dialogue is one SMTP session of a scenario.
type Dialogue struct {
	Name     string
	Line     int // line of the "@@ dialogue" header
	Commands []Command
}

// Command is one command line of a dialogue.
type Command struct {
	Text string // the line sent, without CRLF
	Line int    // line number in the scenario file
	// Pipelined: sent in the same write as the command before it (a
	// line starting with "+ ").
	Pipelined bool
}

// Options returns the options that start an instance for the scenario.
func (s Scenario) Options() PostfixOptions {
	return PostfixOptions{Main: s.Main, Files: s.Files}
}

// LoadScenarios parses every *.txt file in dir, in name order.
func LoadScenarios(dir string) ([]Scenario, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, fmt.Errorf("oracle: list scenarios in %s: %w", dir, err)
	}
	var out []Scenario
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("oracle: read scenario: %w", err)
		}
		s, err := ParseScenario(p, data)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("oracle: no scenario files (*.txt) in %s", dir)
	}
	return out, nil
}

// ParseScenario parses one scenario file; path names it in errors and
// gives the scenario its name.
func ParseScenario(path string, data []byte) (Scenario, error) {
	s := Scenario{Name: strings.TrimSuffix(filepath.Base(path), ".txt"), Path: path}
	fail := func(line int, format string, args ...any) (Scenario, error) {
		return Scenario{}, fmt.Errorf("oracle: scenario %s line %d: %s", path, line, fmt.Sprintf(format, args...))
	}
	const (
		inPreamble = iota
		inMain
		inFile
		inDialogue
	)
	state := inPreamble
	var body []string // lines of the current main.cf or file section
	haveMain := false
	files := map[string]bool{}
	dialogues := map[string]bool{}
	flush := func() {
		// Trailing blank lines only separate sections.
		for len(body) > 0 && strings.TrimSpace(body[len(body)-1]) == "" {
			body = body[:len(body)-1]
		}
		text := ""
		if len(body) > 0 {
			text = strings.Join(body, "\n") + "\n"
		}
		switch state {
		case inMain:
			s.Main = text
		case inFile:
			s.Files[len(s.Files)-1].Data = text
		}
		body = nil
	}
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if rest, ok := strings.CutPrefix(line, "@@"); ok {
			flush()
			f := strings.Fields(rest)
			if len(f) == 0 {
				return fail(n, "section header without a kind")
			}
			switch f[0] {
			case "main.cf":
				if len(f) != 1 {
					return fail(n, "\"@@ main.cf\" takes no arguments")
				}
				if haveMain {
					return fail(n, "second main.cf section")
				}
				haveMain = true
				state = inMain
			case "file":
				if len(f) < 2 || len(f) > 3 {
					return fail(n, "want \"@@ file NAME [TYPE]\"")
				}
				name := f[1]
				clean := filepath.Clean(name)
				if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") ||
					clean == "main.cf" || clean == "master.cf" {
					return fail(n, "file name %q is not allowed", name)
				}
				if files[clean] {
					return fail(n, "second file named %q", name)
				}
				files[clean] = true
				file := File{Name: clean}
				if len(f) == 3 {
					switch f[2] {
					case "hash", "btree", "cdb", "lmdb", "dbm":
						file.Postmap = f[2]
					default:
						return fail(n, "unknown indexed table type %q", f[2])
					}
				}
				s.Files = append(s.Files, file)
				state = inFile
			case "dialogue":
				if len(f) != 2 {
					return fail(n, "want \"@@ dialogue NAME\"")
				}
				if dialogues[f[1]] {
					return fail(n, "second dialogue named %q", f[1])
				}
				dialogues[f[1]] = true
				s.Dialogues = append(s.Dialogues, Dialogue{Name: f[1], Line: n})
				state = inDialogue
			default:
				return fail(n, "unknown section kind %q", f[0])
			}
			continue
		}
		switch state {
		case inPreamble:
			if t := strings.TrimSpace(line); t != "" && t[0] != '#' {
				return fail(n, "text before the first section: %q", line)
			}
		case inMain, inFile:
			body = append(body, line)
		case inDialogue:
			t := strings.TrimRight(line, " \t")
			if strings.TrimSpace(t) == "" || strings.HasPrefix(strings.TrimSpace(t), "#") {
				continue
			}
			d := &s.Dialogues[len(s.Dialogues)-1]
			cmd := Command{Text: t, Line: n}
			if rest, ok := strings.CutPrefix(t, "+ "); ok {
				if len(d.Commands) == 0 {
					return fail(n, "a pipelined command (\"+ \") needs a command before it")
				}
				cmd.Text, cmd.Pipelined = rest, true
			}
			if strings.ContainsAny(cmd.Text, "\r\n\x00") {
				return fail(n, "control character in command")
			}
			d.Commands = append(d.Commands, cmd)
		}
	}
	flush()
	if len(s.Dialogues) == 0 && !haveMain {
		return fail(1, "neither a main.cf section nor dialogues")
	}
	for _, d := range s.Dialogues {
		if len(d.Commands) == 0 {
			return fail(d.Line, "dialogue %q has no commands", d.Name)
		}
	}
	return s, nil
}

// Step is one command of a dialogue and the reply to it. After a DATA
// that got 354, the harness sends a short message; its final "." is a
// step of its own (Cmd.Text "."), whose reply is the end-of-data result.
type Step struct {
	Cmd   Command
	Reply Reply
}

// Transcript is what a dialogue produced.
type Transcript struct {
	Dialogue Dialogue
	Banner   Reply
	Steps    []Step
}

// String prints the transcript: each command, then its reply lines and
// the log lines it caused (indented with "log: ").
func (tr Transcript) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dialogue %s (line %d)\n", tr.Dialogue.Name, tr.Dialogue.Line)
	write := func(cmd string, r Reply) {
		if cmd != "" {
			fmt.Fprintf(&b, "> %s\n", cmd)
		}
		for l := range strings.SplitSeq(r.String(), "\n") {
			fmt.Fprintf(&b, "< %s\n", l)
		}
		for _, l := range r.Log {
			fmt.Fprintf(&b, "  log: %s\n", l)
		}
	}
	write("", tr.Banner)
	for _, st := range tr.Steps {
		write(st.Cmd.Text, st.Reply)
	}
	return b.String()
}

// MessageBody is the message the harness sends after a 354 reply.
const MessageBody = "Subject: postkit oracle test\n\nThis is a test message.\n"

// RunDialogue runs one dialogue in a new session and closes it with QUIT.
func (p *Postfix) RunDialogue(t testing.TB, d Dialogue) Transcript {
	t.Helper()
	c, err := p.dial(t)
	if err != nil {
		t.Fatalf("oracle: dialogue %s: %v", d.Name, err)
	}
	defer c.Close()
	tr := Transcript{Dialogue: d, Banner: c.Banner()}
	for i := 0; i < len(d.Commands); {
		j := i + 1
		for j < len(d.Commands) && d.Commands[j].Pipelined {
			j++
		}
		group := d.Commands[i:j]
		texts := make([]string, len(group))
		for k, cmd := range group {
			texts[k] = cmd.Text
		}
		replies := c.Pipeline(texts...)
		for k, cmd := range group {
			tr.Steps = append(tr.Steps, Step{Cmd: cmd, Reply: replies[k]})
			if strings.EqualFold(cmd.Text, "DATA") && replies[k].Code == 354 {
				end := c.Message(MessageBody)
				tr.Steps = append(tr.Steps, Step{Cmd: Command{Text: ".", Line: cmd.Line}, Reply: end})
			}
		}
		i = j
	}
	return tr
}

// RunScenario runs the scenario's dialogues one after the other.
func (p *Postfix) RunScenario(t testing.TB, s Scenario) []Transcript {
	t.Helper()
	out := make([]Transcript, 0, len(s.Dialogues))
	for _, d := range s.Dialogues {
		out = append(out, p.RunDialogue(t, d))
	}
	return out
}

// XCLIENTAttrs returns the attributes of an "XCLIENT NAME=value ..."
// command line with their xtext encoding (RFC 3461 4: "+XX") decoded, and
// false when line is not an XCLIENT command.
func XCLIENTAttrs(line string) (map[string]string, bool) {
	f := strings.Fields(line)
	if len(f) == 0 || !strings.EqualFold(f[0], "XCLIENT") {
		return nil, false
	}
	attrs := map[string]string{}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		attrs[strings.ToUpper(k)] = xtextDecode(v)
	}
	return attrs, true
}

func xtextDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '+' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
