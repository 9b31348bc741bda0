package pipe_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/mda/pipe"
	"github.com/postkit-mail/postkit/queue"
)

const content = "Subject: t\r\n\r\nFrom here\r\n.line\r\nend\r\n"

// agent builds a pipe service from its master.cf arguments.
func agent(t testing.TB, main string, args ...string) (*pipe.Agent, error) {
	t.Helper()
	cfg, err := config.Parse("main.cf", strings.NewReader(main))
	if err != nil {
		t.Fatal(err)
	}
	return pipe.New(mda.Service{Name: "test", Type: "unix", Command: "pipe", Args: args}, cfg,
		pipe.Options{Now: func() time.Time { return time.Date(2026, 11, 26, 17, 1, 1, 0, time.Local) }})
}

func mustAgent(t testing.TB, main string, args ...string) *pipe.Agent {
	t.Helper()
	a, err := agent(t, main, args...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func request(sender, data string, rcpts ...string) *queue.Delivery {
	d := &queue.Delivery{QueueID: "4Yxk3B5xWJzBq2", Transport: "test", Nexthop: "example.net",
		Envelope: &cleanup.Envelope{Sender: sender}, Size: int64(len(data)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil }}
	for i, r := range rcpts {
		d.Recipients = append(d.Recipients, queue.Recipient{Index: i, Addr: r, Recipient: cleanup.Recipient{Addr: r}})
	}
	return d
}

// outDir is a directory the command (run as nobody when root) can write.
func outDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "gpipeu")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestContentFlagsAndEOL(t *testing.T) {
	dir := outDir(t)
	out := filepath.Join(dir, "msg")
	a := mustAgent(t, "", "flags=FRB.>", "eol=\\r\\n", "user=nobody", "argv=/bin/dd", "of="+out, "status=none")
	res := a.Deliver(context.Background(), request("", content, "u@example.net"))
	if r := res[0]; r.Outcome != queue.Delivered || r.DSN != "2.0.0" || r.Reason != "delivered via test service" || r.Relay != "test" || r.Action != "relayed" {
		t.Fatalf("%+v", r)
	}
	got, _ := os.ReadFile(out)
	want := "From MAILER-DAEMON  Thu Nov 26 17:01:01 2026\r\nReturn-Path: <>\r\nSubject: t\r\n\r\n>From here\r\n..line\r\nend\r\n\r\n"
	if string(got) != want {
		t.Errorf("command got %q, want %q", got, want)
	}
}

func TestFinalDeliveryAction(t *testing.T) {
	a := mustAgent(t, "", "flags=X", "user=nobody", "argv=/bin/cat")
	if r := a.Deliver(context.Background(), request("s@x", content, "u@example.net"))[0]; r.Action != "delivered" || r.Outcome != queue.Delivered {
		t.Errorf("%+v", r)
	}
}

func TestPerRecipientArguments(t *testing.T) {
	dir := outDir(t)
	out := filepath.Join(dir, "args")
	a := mustAgent(t, "recipient_delimiter = +\n", "user=nobody", "argv=/bin/sh", "-c", `printf '%s\n' "$$@" > `+out, "sh",
		"${sender}", "-r${recipient}", "${user}/${extension}", "${nexthop}", "$$x")
	res := a.Deliver(context.Background(), request("", content, "A+b@X.net", "c@x.net"))
	if len(res) != 2 || res[1].Outcome != queue.Delivered {
		t.Fatalf("%+v", res)
	}
	got, _ := os.ReadFile(out)
	want := "MAILER-DAEMON\n-rA+b@X.net\n-rc@x.net\nA/b\nc/\nexample.net\n$x\n"
	if string(got) != want {
		t.Errorf("argv %q, want %q", got, want)
	}
}

func TestResults(t *testing.T) {
	tests := []struct {
		script  string
		outcome queue.Outcome
		dsn     string
		reason  string
	}{
		{"exit 0", queue.Delivered, "2.0.0", "delivered via test service"},
		{"echo fine; exit 0", queue.Delivered, "2.0.0", "delivered via test service (fine)"},
		{"exit 75", queue.Delayed, "4.3.0", "temporary failure"},
		{"echo busy; exit 71", queue.Delayed, "4.3.0", "system resource problem. Command output: busy "},
		{"exit 67", queue.Failed, "5.1.1", "user unknown"},
		{"exit 78", queue.Failed, "5.3.5", "local configuration error"},
		{"exit 3", queue.Failed, "5.3.0", `Command died with status 3: "/bin/sh"`},
		{"echo 4.2.2 mailbox full; exit 1", queue.Delayed, "4.2.2", "mailbox full "},
		{"echo 5.2.2 mailbox full; exit 75", queue.Failed, "5.2.2", "mailbox full "},
		{"kill -TERM $$$$", queue.Delayed, "4.3.0", `Command died with signal 15: "/bin/sh"`},
	}
	for _, tt := range tests {
		a := mustAgent(t, "", "user=nobody", "argv=/bin/sh", "-c", "cat >/dev/null; "+tt.script)
		r := a.Deliver(context.Background(), request("s@x", content, "u@example.net"))[0]
		if r.Outcome != tt.outcome || r.DSN != tt.dsn || r.Reason != tt.reason {
			t.Errorf("%s: got %v %s %q, want %v %s %q", tt.script, r.Outcome, r.DSN, r.Reason, tt.outcome, tt.dsn, tt.reason)
		}
	}
}

func TestOutputLimit(t *testing.T) {
	a := mustAgent(t, "", "user=nobody", "argv=/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' y; exit 1")
	r := a.Deliver(context.Background(), request("s@x", content, "u@example.net"))[0]
	if got := strings.Count(r.Reason, "y"); got != 4096 {
		t.Errorf("reason keeps %d bytes of output, want 4096", got)
	}
}

func TestTimeLimit(t *testing.T) {
	a := mustAgent(t, "test_time_limit = 1s\n", "user=nobody", "argv=/bin/sh", "-c", "echo waiting; sleep 30")
	start := time.Now()
	r := a.Deliver(context.Background(), request("s@x", content, "u@example.net"))[0]
	if r.Outcome != queue.Failed || r.DSN != "5.3.0" || r.Reason != `Command time limit exceeded: "/bin/sh". Command output: waiting ` {
		t.Errorf("%+v", r)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("the command was not killed at the time limit")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	a = mustAgent(t, "", "user=nobody", "argv=/bin/sleep", "30")
	if r := a.Deliver(ctx, request("s@x", content, "u@example.net"))[0]; r.Outcome != queue.Delayed {
		t.Errorf("canceled: %+v", r)
	}
}

func TestSizeLoopAndRecipientLimit(t *testing.T) {
	a := mustAgent(t, "", "size=10", "user=nobody", "argv=/bin/cat")
	if r := a.Deliver(context.Background(), request("s@x", content, "u@x"))[0]; r.Outcome != queue.Failed || r.DSN != "5.2.3" || r.Reason != "message too large" {
		t.Errorf("size: %+v", r)
	}
	a = mustAgent(t, "", "flags=D", "user=nobody", "argv=/bin/cat")
	if r := a.Deliver(context.Background(), request("s@x", "Delivered-To: U@X\r\n"+content, "u@x"))[0]; r.Outcome != queue.Failed || r.DSN != "5.4.6" || r.Reason != "mail forwarding loop for u@x" {
		t.Errorf("loop: %+v", r)
	}
	res := a.Deliver(context.Background(), request("s@x", content, "u@x", "v@x"))
	if r := res[1]; r.Outcome != queue.Delayed || r.DSN != "4.3.5" {
		t.Errorf("D with two recipients: %+v", r)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"user=nobody"}, "missing argv= attribute"},
		{[]string{"argv=/bin/cat"}, "missing user= attribute"},
		{[]string{"user=root", "argv=/bin/cat"}, "user= attribute specifies root privileges"},
		{[]string{"user=nobody:root", "argv=/bin/cat"}, "privileged group id 0"},
		{[]string{"user=postfix", "argv=/bin/cat"}, "mail system owner postfix"},
		{[]string{"user=no-such-user-here", "argv=/bin/cat"}, "unknown user"},
		{[]string{"flags=Z", "user=nobody", "argv=/bin/cat"}, `unknown flag 'Z'`},
		{[]string{"user=nobody", "argv=/bin/cat", "${nosuch}"}, `unknown macro name "nosuch"`},
		{[]string{"user=nobody", "argv=/bin/cat", "${recipient"}, `missing '}'`},
		{[]string{"user=nobody", "argv=/bin/cat", "x$"}, `'$' at the end`},
		{[]string{"colour=blue", "user=nobody", "argv=/bin/cat"}, `unknown attribute "colour"`},
		{[]string{"size=big", "user=nobody", "argv=/bin/cat"}, `bad size= value "big"`},
		{[]string{"user=nobody", "argv=no-such-command-here"}, "not found in /usr/bin:/bin"},
		{[]string{"bare", "argv=/bin/cat"}, `bad attribute "bare"`},
	}
	for _, tt := range tests {
		_, err := agent(t, "", tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "pipe: test: ") {
			t.Errorf("%q: error %v, want %q", tt.args, err, tt.want)
		}
	}
	a := mustAgent(t, "", "user=nobody", "argv=cat") // found in PATH
	if r := a.Deliver(context.Background(), request("s@x", content, "u@x"))[0]; r.Outcome != queue.Delivered {
		t.Errorf("cat from PATH: %+v", r)
	}
	a = mustAgent(t, "", "user=nobody", "argv=/no/such/command")
	if r := a.Deliver(context.Background(), request("s@x", content, "u@x"))[0]; r.Outcome != queue.Delayed || r.DSN != "4.3.0" ||
		r.Reason != "temporary failure. Command output: pipe: fatal: pipe_command: execvp /no/such/command: No such file or directory " {
		t.Errorf("missing command: %+v", r)
	}
}

func FuzzArgv(f *testing.F) {
	f.Add("flags=FRDO.>Bhqu", "${user}@$domain-$(extension)$$ {x}")
	f.Add("flags=", "$")
	f.Fuzz(func(t *testing.T, flags, argv string) {
		args := []string{flags, "user=nobody", "argv=/bin/cat"}
		args = append(args, strings.Fields(argv)...)
		a, err := agent(t, "recipient_delimiter = +\n", args...)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "pipe: test: ") {
				t.Fatalf("error without the service name: %v", err)
			}
			return
		}
		if a.Name() != "test" {
			t.Fatal("wrong name")
		}
	})
}

func TestDirectoryAndUser(t *testing.T) {
	dir := outDir(t)
	out := filepath.Join(dir, "who")
	a := mustAgent(t, "", "directory="+dir, "user=nobody:nogroup", "argv=/bin/sh", "-c", `{ pwd; id -u; id -G; } > `+out)
	if r := a.Deliver(context.Background(), request("s@x", content, "u@x"))[0]; r.Outcome != queue.Delivered {
		t.Fatalf("%+v", r)
	}
	got, _ := os.ReadFile(out)
	want := dir + "\n"
	if os.Geteuid() == 0 {
		want += "65534\n65534\n" // nobody, with nogroup as its only group
	} else {
		want = dir + "\n" + strconv.Itoa(os.Getuid()) + "\n"
		got = []byte(strings.Join(strings.SplitN(string(got), "\n", 3)[:2], "\n") + "\n")
	}
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestCommandThatReadsNothing: a command that exits 0 without reading a
// large message is a delivery (Postfix 3.7 logs "delivered via SERVICE
// service" for /bin/true and 200 KB), and the writer does not hang.
func TestCommandThatReadsNothing(t *testing.T) {
	a := mustAgent(t, "", "user=nobody", "argv=/bin/true")
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789012345678901234567890123456789\r\n", 5000)
	if r := a.Deliver(context.Background(), request("s@x", big, "u@x"))[0]; r.Outcome != queue.Delivered || r.Reason != "delivered via test service" {
		t.Errorf("%+v", r)
	}
}
