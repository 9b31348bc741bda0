package route

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// answer is one resolve reply in the form both sides are compared in.
type answer = oracle.Resolution

// Postfix's resolve reply flags that are compared.
const (
	flagRouted   = oracle.ResolveRouted
	flagError    = oracle.ResolveError
	flagFail     = oracle.ResolveFail
	comparedMask = oracle.ResolveClassMask | flagRouted | flagError | flagFail
)

// postkitAnswer turns Resolve's result into Postfix's reply form.
func postkitAnswer(res Result, err error) answer {
	if err != nil {
		return answer{Flags: flagFail}
	}
	a := answer{Recipient: res.Recipient}
	switch res.Class {
	case Local:
		a.Flags |= oracle.ResolveLocal
	case VirtualAlias:
		a.Flags |= oracle.ResolveAlias
	case VirtualMailbox:
		a.Flags |= oracle.ResolveVirtual
	case Relay:
		a.Flags |= oracle.ResolveRelay
	case Default:
		a.Flags |= oracle.ResolveDefault
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
func normalize(a answer) answer {
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
		rc := p.DialRewrite(t)
		r := postkitResolver(t, p.ConfigDir)
		var golden strings.Builder
		for _, q := range queries(t, sc) {
			want, err := rc.Resolve(q.Sender, q.Rcpt)
			if err != nil {
				t.Fatalf("%s line %d: Postfix: %v", sc.Name, q.Line, err)
			}
			want = normalize(want)
			got := normalize(postkitAnswer(r.Resolve(context.Background(), q.Sender, q.Rcpt)))
			if got != want {
				t.Errorf("%s line %d: %s\n  Postfix: %s\n  postkit: %s", sc.Name, q.Line, q, want, got)
			}
			fmt.Fprintf(&golden, "%s\t%s\n", q, want)
			total++
		}
		rc.Close()
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
