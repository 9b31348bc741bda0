package route

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// TestGolden compares postkit with the answers Postfix's trivial-rewrite
// gave for testdata/oracle (recorded by TestOracleResolve -update), so the
// comparison also runs where Postfix is not installed.
func TestGolden(t *testing.T) {
	total := 0
	for _, sc := range loadCases(t) {
		data, err := os.ReadFile(strings.TrimSuffix(sc.Path, ".txt") + ".golden")
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
		want := map[string]answer{}
		for line := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
			f := strings.Split(line, "\t")
			if len(f) != 5 {
				t.Fatalf("%s.golden: bad line %q", sc.Name, line)
			}
			flags, err := strconv.Atoi(f[4])
			if err != nil {
				t.Fatalf("%s.golden: bad flags in %q", sc.Name, line)
			}
			want[f[0]] = answer{Transport: f[1], Nexthop: f[2], Recipient: f[3], Flags: flags}
		}

		// The same main.cf as the instance had (the harness's settings,
		// then the case's; the last setting of a name wins) and the table
		// sources, which postkit reads without postmap.
		dir := t.TempDir()
		main := oracle.DefaultMainCF(dir) + sc.Main
		if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, f := range sc.Files {
			if err := os.WriteFile(filepath.Join(dir, f.Name), []byte(f.Data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		r := postkitResolver(t, dir)
		qs := queries(t, sc)
		if len(qs) != len(want) {
			t.Errorf("%s: %d queries, %d golden answers: run TestOracleResolve -update", sc.Name, len(qs), len(want))
		}
		for _, q := range qs {
			w, ok := want[q.String()]
			if !ok {
				t.Errorf("%s line %d: %s has no golden answer", sc.Name, q.Line, q)
				continue
			}
			got := normalize(postkitAnswer(r.Resolve(context.Background(), q.Sender, q.Rcpt)))
			if got != w {
				t.Errorf("%s line %d: %s\n  Postfix: %s\n  postkit: %s", sc.Name, q.Line, q, w, got)
			}
			total++
		}
	}
	if total < 100 {
		t.Errorf("only %d golden cases", total)
	}
}
