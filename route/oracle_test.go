package route

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// The differential test asks a private Postfix 3.7 instance's own
// trivial-rewrite daemon, over its private/rewrite socket, to resolve each
// address of testdata/oracle/*.txt (the request qmgr sends it: sender and
// recipient in, transport, nexthop, recipient and flags out), and compares
// postkit's Resolve given the same main.cf and tables. With -update the
// answers are written to testdata/oracle/*.golden, which TestGolden checks
// on machines without Postfix.

var update = flag.Bool("update", false, "write Postfix's answers to testdata/oracle/*.golden")

// Postfix's resolve reply flags (resolve_clnt.h).
const (
	flagRouted   = 1 << 1
	flagError    = 1 << 2
	flagFail     = 1 << 3
	flagLocal    = 1 << 8
	flagAlias    = 1 << 9
	flagVirtual  = 1 << 10
	flagRelay    = 1 << 11
	flagDefault  = 1 << 12
	classMask    = flagLocal | flagAlias | flagVirtual | flagRelay | flagDefault
	comparedMask = classMask | flagRouted | flagError | flagFail
)

// answer is one resolve reply in the form both sides are compared in.
type answer struct {
	Transport, Nexthop, Recipient string
	Flags                         int
}

func (a answer) String() string {
	return fmt.Sprintf("%s\t%s\t%s\t%d", a.Transport, a.Nexthop, a.Recipient, a.Flags)
}

// postkitAnswer turns Resolve's result into Postfix's reply form.
func postkitAnswer(res Result, err error) answer {
	if err != nil {
		return answer{Flags: flagFail}
	}
	a := answer{Recipient: res.Recipient}
	switch res.Class {
	case Local:
		a.Flags |= flagLocal
	case VirtualAlias:
		a.Flags |= flagAlias
	case VirtualMailbox:
		a.Flags |= flagVirtual
	case Relay:
		a.Flags |= flagRelay
	case Default:
		a.Flags |= flagDefault
	}
	if res.Routed {
		a.Flags |= flagRouted
	}
	if res.Invalid {
		a.Flags |= flagError
	} else {
		a.Transport, a.Nexthop = res.Transport, res.Nexthop
	}
	return a
}

// normalize keeps what is compared: for an invalid address or a lookup
// failure Postfix's transport and next hop are placeholders.
func (a answer) normalize() answer {
	a.Flags &= comparedMask
	if a.Flags&(flagError|flagFail) != 0 {
		a.Transport, a.Nexthop = "", ""
	}
	if a.Flags&flagFail != 0 {
		a.Recipient = ""
		a.Flags = flagFail
	}
	return a
}

// query is one line of a case file: "<sender> <recipient>", or
// "<recipient>" for the sender s@sender.example.
type query struct {
	Sender, Rcpt string
	Line         int
}

func (q query) String() string { return "<" + q.Sender + "> <" + q.Rcpt + ">" }

func parseQuery(text string, line int) (query, error) {
	if !strings.HasPrefix(text, "<") || !strings.HasSuffix(text, ">") {
		return query{}, fmt.Errorf("line %d: want <sender> <recipient> or <recipient>: %q", line, text)
	}
	inner := text[1 : len(text)-1]
	if s, r, ok := strings.Cut(inner, "> <"); ok {
		return query{Sender: s, Rcpt: r, Line: line}, nil
	}
	return query{Sender: "s@sender.example", Rcpt: inner, Line: line}, nil
}

// loadCases reads the case files: oracle scenarios whose dialogues are
// lists of queries.
func loadCases(t *testing.T) []oracle.Scenario {
	t.Helper()
	scs, err := oracle.LoadScenarios(filepath.Join("testdata", "oracle"))
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) == 0 {
		t.Fatal("no case files in testdata/oracle")
	}
	return scs
}

func queries(t *testing.T, sc oracle.Scenario) []query {
	t.Helper()
	var qs []query
	for _, d := range sc.Dialogues {
		for _, c := range d.Commands {
			q, err := parseQuery(c.Text, c.Line)
			if err != nil {
				t.Fatalf("%s: %v", sc.Path, err)
			}
			qs = append(qs, q)
		}
	}
	return qs
}

// rewriteClient talks to trivial-rewrite's resolve service: attributes as
// NUL-terminated name/value pairs, a request ends with an empty name.
type rewriteClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialRewrite(t testing.TB, p *oracle.Postfix) *rewriteClient {
	t.Helper()
	c, err := net.Dial("unix", filepath.Join(p.QueueDir, "private", "rewrite"))
	if err != nil {
		t.Fatalf("connect to trivial-rewrite: %v", err)
	}
	rc := &rewriteClient{c: c, r: bufio.NewReader(c)}
	// The server announces its protocol first.
	hello, err := rc.read()
	if err != nil || hello["protocol"] != "trivial_rewrite_protocol" {
		t.Fatalf("trivial-rewrite greeting: %v %v", hello, err)
	}
	return rc
}

func (rc *rewriteClient) read() (map[string]string, error) {
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	m := map[string]string{}
	for {
		name, err := rc.r.ReadString(0)
		if err != nil {
			return m, err
		}
		name = name[:len(name)-1]
		if name == "" {
			return m, nil
		}
		val, err := rc.r.ReadString(0)
		if err != nil {
			return m, err
		}
		// The reply holds "flags" twice: the server's flags (always 0
		// here), then the resolve flags; keep the last.
		m[name] = val[:len(val)-1]
	}
}

func (rc *rewriteClient) resolve(sender, rcpt string) (answer, error) {
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(rc.c, "request\x00resolve\x00sender\x00%s\x00address\x00%s\x00\x00", sender, rcpt); err != nil {
		return answer{}, err
	}
	m, err := rc.read()
	if err != nil {
		return answer{}, err
	}
	flags, err := strconv.Atoi(m["flags"])
	if err != nil {
		return answer{}, fmt.Errorf("resolve reply %v: %v", m, err)
	}
	return answer{Transport: m["transport"], Nexthop: m["nexthop"], Recipient: m["recipient"], Flags: flags}, nil
}

// postkitResolver builds a Resolver from the instance's configuration
// directory, as a user pointing postkit at /etc/postfix would.
func postkitResolver(t testing.TB, dir string) *Resolver {
	t.Helper()
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := FromConfig(context.Background(), cfg, Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestOracleResolve(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	scs := loadCases(t)
	oracle.Require(t, "postfix")
	var p *oracle.Postfix
	total := 0
	for _, sc := range scs {
		if p == nil {
			p = oracle.StartPostfix(t, sc.Options())
		} else {
			p.Reconfigure(t, sc.Main, sc.Files)
		}
		rc := dialRewrite(t, p)
		r := postkitResolver(t, p.ConfigDir)
		var golden strings.Builder
		for _, q := range queries(t, sc) {
			want, err := rc.resolve(q.Sender, q.Rcpt)
			if err != nil {
				t.Fatalf("%s line %d: Postfix: %v", sc.Name, q.Line, err)
			}
			want = want.normalize()
			got := postkitAnswer(r.Resolve(context.Background(), q.Sender, q.Rcpt)).normalize()
			if got != want {
				t.Errorf("%s line %d: %s\n  Postfix: %s\n  postkit: %s", sc.Name, q.Line, q, want, got)
			}
			fmt.Fprintf(&golden, "%s\t%s\n", q, want)
			total++
		}
		rc.c.Close()
		gpath := strings.TrimSuffix(sc.Path, ".txt") + ".golden"
		if *update {
			if err := os.WriteFile(gpath, []byte(golden.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if data, err := os.ReadFile(gpath); err != nil || string(data) != golden.String() {
			t.Errorf("%s: Postfix's answers differ from %s (run go test -run TestOracleResolve -update)", sc.Name, gpath)
		}
	}
	t.Logf("%d addresses compared with Postfix's trivial-rewrite", total)
}
