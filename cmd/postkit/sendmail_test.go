package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/pickup"
)

// postkitBin is the postkit command built once for the tests that run
// the real binary, as a user's program would.
var postkitBin struct {
	once      sync.Once
	dir, path string
	err       error
	out       []byte
}

func buildPostkit(t *testing.T) string {
	t.Helper()
	b := &postkitBin
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "postkit-bin")
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "postkit")
		b.out, b.err = exec.Command("go", "build", "-o", b.path, ".").CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("go build: %v\n%s", b.err, b.out)
	}
	return b.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if postkitBin.dir != "" {
		os.RemoveAll(postkitBin.dir)
	}
	os.Exit(code)
}

// smSystem is a local-submission system: main.cf, a maildrop watched by a
// pickup.Service, cleanup from main.cf, and cleanup's DirStore as the
// queue.
type smSystem struct {
	bin, etc string
	store    *cleanup.DirStore
	log      *smLog
	seen     map[string]bool
}

type smLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *smLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *smLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startSMSystem(t *testing.T, bin, mainCF string) *smSystem {
	t.Helper()
	base := t.TempDir()
	s := &smSystem{bin: bin, etc: filepath.Join(base, "etc"), log: &smLog{}, seen: map[string]bool{}}
	qdir := filepath.Join(base, "spool")
	if err := os.MkdirAll(s.etc, 0o755); err != nil {
		t.Fatal(err)
	}
	text := "compatibility_level = 3.6\nqueue_directory = " + qdir + "\n" + mainCF
	if err := os.WriteFile(filepath.Join(s.etc, "main.cf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(s.etc)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pickup.ConfigFrom(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pickup.Create(pc.Dir, 0); err != nil {
		t.Fatal(err)
	}
	s.store, err = cleanup.OpenDirStore(filepath.Join(base, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(s.log, nil))
	cc, err := cleanup.ConfigFromMain(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cc.Logger = logger
	c, err := cleanup.New(cc, s.store)
	if err != nil {
		t.Fatal(err)
	}
	pc.Logger = logger
	pc.PollInterval = time.Hour // only the wake-up from sendmail
	svc, err := pickup.New(pc, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("pickup: %v", err)
		}
	})
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := os.Stat(filepath.Join(pc.Dir, pickup.WakeupSocket)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pickup did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s
}

type smResult struct {
	stdout, stderr string
	code           int
}

func (s *smSystem) sendmail(t *testing.T, stdin string, args ...string) smResult {
	t.Helper()
	cmd := exec.Command(s.bin, append([]string{"sendmail", "-C", s.etc}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run sendmail: %v", err)
		}
		code = ee.ExitCode()
	}
	return smResult{out.String(), errb.String(), code}
}

// next waits for the next queued message and returns it.
func (s *smSystem) next(t *testing.T) (*cleanup.Envelope, string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		ids, err := s.store.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if !s.seen[id] {
				s.seen[id] = true
				env, content, err := s.store.Read(id)
				if err != nil {
					t.Fatal(err)
				}
				return env, string(content)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message queued; log:\n%s", s.log)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rcptList(env *cleanup.Envelope) string {
	var r []string
	for _, x := range env.Recipients {
		r = append(r, x.Addr)
	}
	sort.Strings(r)
	return strings.Join(r, " ")
}

const smMainCF = "myhostname = mx.example.test\nmydomain = example.test\nmyorigin = example.test\n"

// The real binary as sendmail, with pipes, into a pickup service and
// cleanup: what is stored is what the user asked for.
func TestSendmailSubmits(t *testing.T) {
	bin := buildPostkit(t)
	s := startSMSystem(t, bin, smMainCF)
	body := "Subject: s\nTo: To One <to1@example.net>, to2\nCc: cc@example.net\nBcc: hidden@example.net\n\nline 1\n.\n..\nline 2\n"
	tests := []struct {
		name        string
		stdin       string
		args        []string
		sender      string
		rcpts       string
		contains    []string
		notContains []string
		endsWith    string
	}{
		{name: "dot ends input", stdin: body, args: []string{"bob@example.net"},
			sender: "root@example.test", rcpts: "bob@example.net",
			contains: []string{"\r\nSubject: s\r\n", "\r\nFrom: root <root@example.test>\r\n"}, endsWith: "\r\n\r\nline 1\r\n"},
		{name: "-i keeps dots", stdin: body, args: []string{"-i", "bob@example.net"},
			sender: "root@example.test", rcpts: "bob@example.net", endsWith: "\r\n\r\nline 1\r\n.\r\n..\r\nline 2\r\n"},
		{name: "-oi keeps dots", stdin: body, args: []string{"-oi", "bob@example.net"},
			sender: "root@example.test", rcpts: "bob@example.net", endsWith: "\r\nline 2\r\n"},
		{name: "CRLF input", stdin: strings.ReplaceAll(body, "\n", "\r\n"), args: []string{"bob@example.net"},
			sender: "root@example.test", rcpts: "bob@example.net", endsWith: "\r\n\r\nline 1\r\n"},
		{name: "-t", stdin: body, args: []string{"-t"},
			sender: "root@example.test", rcpts: "cc@example.net hidden@example.net to1@example.net to2@example.test",
			notContains: []string{"Bcc:", "hidden"}},
		{name: "-t adds command line", stdin: body, args: []string{"-t", "extra@example.net"},
			sender: "root@example.test", rcpts: "cc@example.net extra@example.net hidden@example.net to1@example.net to2@example.test"},
		{name: "-f -F", stdin: "Subject: f\n\nx\n", args: []string{"-f", "Joe <joe@example.org>", "-F", "Joe Q. Public", "a@example.net, b@example.net"},
			sender: "joe@example.org", rcpts: "a@example.net b@example.net", contains: []string{"\r\nFrom: \"Joe Q. Public\" <joe@example.org>\r\n"}},
		{name: "-fsender -r", stdin: "Subject: f\n\nx\n", args: []string{"-fjoe", "-r", "other", "a@example.net"},
			sender: "other@example.test", rcpts: "a@example.net"},
		{name: "null sender", stdin: "Subject: n\n\nx\n", args: []string{"-f", "<>", "a@example.net"},
			sender: "", rcpts: "a@example.net", contains: []string{"\r\nFrom: MAILER-DAEMON\r\n"}},
		{name: "empty message", stdin: "", args: []string{"a@example.net"},
			sender: "root@example.test", rcpts: "a@example.net", contains: []string{"\r\nMessage-Id: <", "\r\nDate: "}},
		{name: "no headers", stdin: "just text\nno colon here\n", args: []string{"a@example.net"},
			sender: "root@example.test", rcpts: "a@example.net", endsWith: "\r\n\r\njust text\r\nno colon here\r\n"},
		{name: "From_ line dropped", stdin: "From me@x Mon Jan  1 00:00:00 2024\n>From again\nSubject: m\n\nx\n", args: []string{"a@example.net"},
			sender: "root@example.test", rcpts: "a@example.net", notContains: []string{"From me", ">From again"}},
		{name: "no final newline", stdin: "Subject: e\n\nlast", args: []string{"a@example.net"},
			sender: "root@example.test", rcpts: "a@example.net", endsWith: "\r\nlast\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := s.sendmail(t, tc.stdin, tc.args...)
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("sendmail exit %d, stderr %q", res.code, res.stderr)
			}
			env, content := s.next(t)
			if env.Sender != tc.sender {
				t.Errorf("sender %q, want %q", env.Sender, tc.sender)
			}
			if got := rcptList(env); got != tc.rcpts {
				t.Errorf("recipients %q, want %q", got, tc.rcpts)
			}
			if !strings.HasPrefix(content, "Received: by mx.example.test (Postfix, from userid ") {
				t.Errorf("no Received: header first:\n%s", content)
			}
			for _, c := range tc.contains {
				if !strings.Contains(content, c) {
					t.Errorf("content has no %q:\n%s", c, content)
				}
			}
			for _, c := range tc.notContains {
				if strings.Contains(content, c) {
					t.Errorf("content has %q:\n%s", c, content)
				}
			}
			if tc.endsWith != "" && !strings.HasSuffix(content, tc.endsWith) {
				t.Errorf("content does not end with %q:\n%q", tc.endsWith, content)
			}
		})
	}
}

// -N, -R, -V and -B reach the queued envelope (RFC 3461 DSN, RFC 6152
// BODY=).
func TestSendmailDSNOptions(t *testing.T) {
	bin := buildPostkit(t)
	s := startSMSystem(t, bin, smMainCF)
	res := s.sendmail(t, "Subject: d\n\nx\n", "-N", "success,delay", "-R", "hdrs", "-V", "env-42", "-B", "8BITMIME", "a@example.net")
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("exit %d, %q", res.code, res.stderr)
	}
	env, _ := s.next(t)
	if len(env.Recipients) != 1 || strings.Join(env.Recipients[0].Notify, ",") != "SUCCESS,DELAY" {
		t.Errorf("recipients %+v, want NOTIFY=SUCCESS,DELAY", env.Recipients)
	}
	if env.Ret != "HDRS" || env.EnvID != "env-42" || env.Body != "8BITMIME" {
		t.Errorf("RET %q ENVID %q BODY %q", env.Ret, env.EnvID, env.Body)
	}
}

// sendmail -bs: an SMTP session on stdin/stdout into the maildrop.
func TestSendmailBS(t *testing.T) {
	bin := buildPostkit(t)
	s := startSMSystem(t, bin, smMainCF)
	session := "EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.net>\r\nRCPT TO:<d>\r\nDATA\r\nSubject: bs\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n"
	res := s.sendmail(t, session, "-bs")
	if res.code != 0 {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
	for _, want := range []string{"220 mx.example.test ESMTP Postfix\r\n", "250-mx.example.test\r\n", "354 ", "250 2.0.0 Ok: queued as ", "221 2.0.0 Bye\r\n"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("session has no %q:\n%s", want, res.stdout)
		}
	}
	env, content := s.next(t)
	if env.Sender != "a@example.org" || rcptList(env) != "c@example.net d@example.test" {
		t.Errorf("envelope %q -> %q", env.Sender, rcptList(env))
	}
	// pickup's Received: on top of the session's, as with Postfix.
	lines := strings.Split(content, "\r\n")
	if len(lines) < 5 || !strings.HasPrefix(lines[0], "Received: by mx.example.test (Postfix, from userid ") ||
		!strings.HasPrefix(lines[2], "Received: from client.example (localhost [127.0.0.1])") ||
		!strings.Contains(lines[3], "by mx.example.test (Postfix) with ESMTP id ") {
		t.Errorf("Received: headers:\n%s", content)
	}
	if !strings.HasSuffix(content, "\r\n\r\nbody\r\n.dot\r\n") {
		t.Errorf("content %q", content)
	}
}

// Errors and modes that do not queue: messages and exit status.
func TestSendmailErrors(t *testing.T) {
	bin := buildPostkit(t)
	s := startSMSystem(t, bin, smMainCF)
	tests := []struct {
		args   []string
		stdin  string
		code   int
		stderr string
	}{
		{nil, "Subject: x\n\n", 75, "sendmail: fatal: root(0): Recipient addresses must be specified on the command line or via the -t option\n"},
		{[]string{"-t"}, "Subject: x\n\n", 75, "sendmail: fatal: root(0): No recipient addresses found in message header\n"},
		{[]string{"-Z", "a"}, "", 75, "sendmail: invalid option -- 'Z'\nsendmail: invalid option -- 'Z'\nsendmail: fatal: usage: sendmail [options]\n"},
		{[]string{"-f"}, "", 75, "sendmail: option requires an argument -- 'f'\nsendmail: option requires an argument -- 'f'\nsendmail: fatal: usage: sendmail [options]\n"},
		// No server and no queue yet: postqueue -p's direct listing.
		{[]string{"-bp"}, "", 0, "postqueue: warning: Mail system is down -- accessing queue directly (Connect to the postkit control service: No such file or directory)\n"},
		{[]string{"-q"}, "", 69, "postqueue: fatal: Cannot flush mail queue - mail system is down\n"},
		{[]string{"-bh"}, "", 0, ""},
		{[]string{"-q30m"}, "", 0, ""},
		{[]string{"-bs", "x@y"}, "", 75, "sendmail: fatal: stand-alone mode requires no recipient\n"},
	}
	for _, tc := range tests {
		res := s.sendmail(t, tc.stdin, tc.args...)
		if res.code != tc.code || res.stderr != tc.stderr {
			t.Errorf("sendmail %q: exit %d, stderr %q; want %d, %q", tc.args, res.code, res.stderr, tc.code, tc.stderr)
		}
	}
	if ids, _ := s.store.List(); len(ids) != 0 {
		t.Errorf("%d messages queued by failed submissions", len(ids))
	}
	// A maildrop that is not postkit's (Postfix's, say) is refused.
	other := t.TempDir()
	if err := os.MkdirAll(filepath.Join(other, "q", "maildrop"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "main.cf"), []byte("queue_directory = "+filepath.Join(other, "q")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := (&smSystem{bin: bin, etc: other}).sendmail(t, "Subject: x\n\n", "a@example.net")
	if res.code != 75 || !strings.Contains(res.stderr, "is not a postkit maildrop") {
		t.Errorf("foreign maildrop: exit %d %q", res.code, res.stderr)
	}
	if ents, _ := os.ReadDir(filepath.Join(other, "q", "maildrop")); len(ents) != 0 {
		t.Errorf("%d files written into a foreign maildrop", len(ents))
	}
	// mailq is sendmail -bp.
	cmd := exec.Command(bin, "mailq", "-C", s.etc)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(string(out), "\nMail queue is empty\n") {
		t.Errorf("mailq: %v %q", err, out)
	}
}

// A sendmail killed while it reads its input leaves no message behind:
// only an unfinished temporary file, which pickup ignores.
func TestSendmailKilled(t *testing.T) {
	bin := buildPostkit(t)
	s := startSMSystem(t, bin, smMainCF)
	cmd := exec.Command(bin, "sendmail", "-C", s.etc, "a@example.net")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte("Subject: half\n\n" + strings.Repeat("a line of the body\n", 10000))); err != nil {
		t.Fatal(err)
	}
	maildrop := filepath.Join(filepath.Dir(s.etc), "spool", "maildrop")
	// Wait until the temporary file has content, then kill.
	for deadline := time.Now().Add(10 * time.Second); ; {
		ents, _ := os.ReadDir(maildrop)
		found := false
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".tmp-") && fi.Size() > 0 {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sendmail wrote nothing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	pickup.Wake(maildrop)
	time.Sleep(200 * time.Millisecond)
	if ids, _ := s.store.List(); len(ids) != 0 {
		t.Errorf("a killed submission was queued: %q", ids)
	}
	ents, _ := os.ReadDir(filepath.Join(maildrop, pickup.CorruptDir))
	if len(ents) != 0 {
		t.Errorf("a killed submission was taken for a corrupt file")
	}
	// The next submission goes through.
	if res := s.sendmail(t, "Subject: next\n\nx\n", "b@example.net"); res.code != 0 {
		t.Fatalf("exit %d %q", res.code, res.stderr)
	}
	env, _ := s.next(t)
	if rcptList(env) != "b@example.net" {
		t.Errorf("queued %q", rcptList(env))
	}
}
