package restrictions_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/restrictions"
)

// The built-in resolver against Postfix 3.7's own trivial-rewrite daemon:
// for every address of testdata/resolve/*.txt and for generated ones,
// Postfix rewrites the address in the local context and resolves the
// result (smtpd's two requests, over the private/rewrite socket), and the
// Checker built from the same main.cf resolves the address. The address,
// class, routed and invalid flags, transport and next hop must agree.

// resolveAnswer is one resolver answer in the form both sides are
// compared in.
type resolveAnswer struct {
	Address, Transport, Nexthop string
	Class                       restrictions.AddressClass
	Routed, Invalid, Fail       bool
}

// postfixAnswer turns trivial-rewrite's reply into smtpd's view: the
// recipient folded as smtpd does, the class from the flags.
func postfixAnswer(r oracle.Resolution) resolveAnswer {
	a := resolveAnswer{Address: maps.FoldKey(r.Recipient), Transport: r.Transport, Nexthop: r.Nexthop}
	switch r.Flags & oracle.ResolveClassMask {
	case oracle.ResolveLocal:
		a.Class = restrictions.ClassLocal
	case oracle.ResolveAlias:
		a.Class = restrictions.ClassVirtualAlias
	case oracle.ResolveVirtual:
		a.Class = restrictions.ClassVirtualMailbox
	case oracle.ResolveRelay:
		a.Class = restrictions.ClassRelay
	default:
		a.Class = restrictions.ClassDefault
	}
	a.Routed = r.Flags&oracle.ResolveRouted != 0
	a.Invalid = r.Flags&oracle.ResolveError != 0
	a.Fail = r.Flags&oracle.ResolveFail != 0
	return a.normalize()
}

func checkerAnswer(r restrictions.Resolved, err error) resolveAnswer {
	if err != nil {
		return resolveAnswer{Fail: true}
	}
	return resolveAnswer{Address: r.Address, Transport: r.Transport, Nexthop: r.Nexthop, Class: r.Class,
		Routed: r.Routed, Invalid: r.Invalid}.normalize()
}

// normalize drops what is not meaningful: the transport and next hop of
// an invalid address (Postfix fills in placeholders), everything of a
// lookup failure.
func (a resolveAnswer) normalize() resolveAnswer {
	if a.Fail {
		return resolveAnswer{Fail: true}
	}
	if a.Invalid {
		a.Transport, a.Nexthop = "", ""
	}
	return a
}

// postfixResolve asks Postfix what smtpd would: rewrite, then resolve.
// The rewrite request takes and gives the external (quoted) form
// (rewrite_clnt_internal quotes and unquotes around it), the resolve
// request the internal form.
func postfixResolve(t *testing.T, rc *oracle.RewriteClient, addr string) oracle.Resolution {
	t.Helper()
	rw, err := rc.Rewrite("local", address.Quote(addr))
	if err != nil {
		t.Fatalf("Postfix rewrite <%s>: %v", addr, err)
	}
	res, err := rc.Resolve("s@sender.example", address.Unquote(rw))
	if err != nil {
		t.Fatalf("Postfix resolve <%s>: %v", rw, err)
	}
	return res
}

var updateGolden = flag.Bool("update", false, "write Postfix's answers to testdata/resolve/*.golden")

// resolveCases reads testdata/resolve: the scenarios and, per scenario,
// its listed addresses.
func resolveCases(t *testing.T) ([]oracle.Scenario, [][]string) {
	t.Helper()
	scs, err := oracle.LoadScenarios("testdata/resolve")
	if err != nil {
		t.Fatal(err)
	}
	addrs := make([][]string, len(scs))
	for i, sc := range scs {
		for _, d := range sc.Dialogues {
			for _, c := range d.Commands {
				if !strings.HasPrefix(c.Text, "<") || !strings.HasSuffix(c.Text, ">") {
					t.Fatalf("%s line %d: want <address>: %q", sc.Path, c.Line, c.Text)
				}
				addrs[i] = append(addrs[i], c.Text[1:len(c.Text)-1])
			}
		}
	}
	return scs, addrs
}

// TestResolveGolden compares the built-in resolver with the answers
// Postfix gave for testdata/resolve (recorded by TestOracleResolve
// -update), so the comparison also runs where Postfix is not installed.
func TestResolveGolden(t *testing.T) {
	scs, addrs := resolveCases(t)
	ctx := context.Background()
	total := 0
	for i, sc := range scs {
		data, err := os.ReadFile(strings.TrimSuffix(sc.Path, ".txt") + ".golden")
		if err != nil {
			t.Fatalf("%s: %v (run go test -run TestOracleResolve -update)", sc.Name, err)
		}
		want := map[string]oracle.Resolution{}
		for line := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
			f := strings.Split(line, "\t")
			flags, err := 0, error(nil)
			if len(f) == 5 {
				flags, err = strconv.Atoi(f[4])
			}
			if len(f) != 5 || err != nil {
				t.Fatalf("%s.golden: bad line %q", sc.Name, line)
			}
			want[f[0]] = oracle.Resolution{Transport: f[1], Nexthop: f[2], Recipient: f[3], Flags: flags}
		}
		// The main.cf the instance had: the harness's settings, then the
		// scenario's (the last setting of a name wins).
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(oracle.DefaultMainCF(dir)+sc.Main), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		chk, err := restrictions.FromConfig(ctx, cfg, restrictions.Options{})
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
		r := chk.Resolver()
		for _, addr := range addrs[i] {
			w, ok := want["<"+addr+">"]
			if !ok {
				t.Errorf("%s: <%s> has no golden answer (run go test -run TestOracleResolve -update)", sc.Name, addr)
				continue
			}
			got := checkerAnswer(r.Resolve(ctx, "s@sender.example", addr))
			if pw := postfixAnswer(w); got != pw {
				t.Errorf("%s: <%s>\n  Postfix: %+v\n  postkit: %+v", sc.Name, addr, pw, got)
			}
			total++
		}
		chk.Close()
	}
	if total < 100 {
		t.Errorf("only %d golden cases", total)
	}
}

func TestOracleResolve(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	scs, addrs := resolveCases(t)
	oracle.Require(t, "postfix")
	locals := []string{"joe", "a b", "joe+ext", "-joe", "MAILER-DAEMON", "", "j.o", `"q"`, "x(c)", "u\\v", "Postmaster"}
	domains := []string{"example.com", "localhost", "mx.oracle.test", "remote.example", "relay.example", "sub.relay.example",
		"valias.example", "vmbox.example", "[127.0.0.1]", "[127.0.0.2]", "127.0.0.1", "[IPv6:::1]", "a..b", "", "Example.COM",
		"origin.example", "bücher.example", "host", "-x.example", "a.parent.example", "[192.0.2.25]", "192.0.2.25"}
	var p *oracle.Postfix
	ctx := context.Background()
	total, generated := 0, 0
	for i, sc := range scs {
		if p == nil {
			p = oracle.StartPostfix(t, sc.Options())
		} else {
			p.Reconfigure(t, sc.Main, sc.Files)
		}
		rc := p.DialRewrite(t)
		cfg, err := config.Load(p.ConfigDir)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Set("config_directory", p.ConfigDir)
		chk, err := restrictions.FromConfig(ctx, cfg, restrictions.Options{})
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
		r := chk.Resolver()
		var golden strings.Builder
		for _, addr := range addrs[i] {
			res := postfixResolve(t, rc, addr)
			fmt.Fprintf(&golden, "<%s>\t%s\n", addr, res)
			want := postfixAnswer(res)
			got := checkerAnswer(r.Resolve(ctx, "s@sender.example", addr))
			if got != want {
				t.Errorf("%s: <%s>\n  Postfix: %+v\n  postkit: %+v", sc.Path, addr, want, got)
			}
			total++
		}
		gpath := strings.TrimSuffix(sc.Path, ".txt") + ".golden"
		if *updateGolden {
			if err := os.WriteFile(gpath, []byte(golden.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if data, err := os.ReadFile(gpath); err != nil || string(data) != golden.String() {
			t.Errorf("%s: Postfix's answers differ from %s (run go test -run TestOracleResolve -update)", sc.Name, gpath)
		}
		rng := rand.New(rand.NewPCG(11, uint64(i)))
		diffs := 0
		for n := 0; n < 400; n++ {
			addr := oracle.RandomAddress(rng, locals, domains)
			want := postfixAnswer(postfixResolve(t, rc, addr))
			got := checkerAnswer(r.Resolve(ctx, "s@sender.example", addr))
			generated++
			if got != want {
				if diffs++; diffs <= 20 {
					t.Errorf("%s generated: <%s>\n  Postfix: %+v\n  postkit: %+v", sc.Name, addr, want, got)
				}
			}
		}
		chk.Close()
		rc.Close()
	}
	t.Logf("%d listed and %d generated addresses compared with Postfix's trivial-rewrite", total, generated)
}
