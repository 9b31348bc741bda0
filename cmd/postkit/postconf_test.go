package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// pcDerived are parameters whose values come from other settings or the
// host; every corpus file is checked for them with -x.
var pcDerived = []string{
	"myorigin", "mydestination", "mydomain", "myhostname", "mynetworks", "mynetworks_style",
	"relay_domains", "smtpd_relay_restrictions", "append_dot_mydomain", "smtputf8_enable",
	"smtpd_relay_before_recipient_restrictions", "smtpd_tls_fingerprint_digest",
	"compatibility_level", "local_transport", "local_recipient_maps", "config_directory",
}

// pcConfigDir makes a world-searchable scratch dir holding main.cf.
func pcConfigDir(t *testing.T, maincf []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), maincf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pcJobs bounds how many real postconf processes run at once, over all
// tests. Each one costs ~40 ms of CPU, mostly dynamic linking; running
// many at once hides their start-up latency, which dominates the
// differential tests (the in-process side takes ~2 ms a call).
var pcJobs = make(chan struct{}, 8)

// pcOracleAll runs the real postconf once for each argument list,
// concurrently, and returns the results in the same order. Like
// oracle.Run it sets LANG=C; env adds variables (e.g. MAIL_CONFIG).
func pcOracleAll(t *testing.T, env []string, calls [][]string) []oracle.Result {
	t.Helper()
	path := oracle.Require(t, "postconf")
	res := make([]oracle.Result, len(calls))
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, args := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pcJobs <- struct{}{}
			defer func() { <-pcJobs }()
			cmd := exec.Command(path, args...)
			cmd.Env = append(append(os.Environ(), "LANG=C", "LC_ALL=C"), env...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			res[i] = oracle.Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
			var ee *exec.ExitError
			switch {
			case err == nil:
			case errors.As(err, &ee):
				res[i].Code = ee.ExitCode()
			default:
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("oracle: run postconf %v: %v", calls[i], err)
		}
	}
	return res
}

// pcRunOurs runs postkit postconf in-process.
func pcRunOurs(args ...string) oracle.Result {
	var out, errb bytes.Buffer
	code := postconfMain(args, nil, &out, &errb)
	return oracle.Result{Stdout: out.Bytes(), Stderr: errb.Bytes(), Code: code}
}

// pcLines returns the distinct lines of b, sorted: Postfix emits some
// warnings in hash-table order and some twice, so stderr is compared as a
// set.
func pcLines(b []byte) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if l != "" && !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// pcCompare runs postkit's postconf with args and compares its stdout
// byte for byte, the exit code, and stderr as a set of lines with want,
// the real postconf's result for the same args.
func pcCompare(t *testing.T, want oracle.Result, args ...string) {
	t.Helper()
	got := pcRunOurs(args...)
	if !bytes.Equal(got.Stdout, want.Stdout) {
		t.Errorf("postconf %v stdout:\n got: %q\nwant: %q", args, got.Stdout, want.Stdout)
	}
	if got.Code != want.Code {
		t.Errorf("postconf %v exit code %d, want %d (stderr %q)", args, got.Code, want.Code, got.Stderr)
	}
	pcCompareStderr(t, args, got.Stderr, want.Stderr)
}

// pcCompareStderr checks that every warning we print is one Postfix
// prints too, and that we print the same fatal error. Postfix reads main.cf
// twice and scans values more than once, so it repeats some warnings (and
// "overriding earlier entry" for the re-read), in hash-table order; those
// repeats are not required.
func pcCompareStderr(t *testing.T, args []string, got, want []byte) {
	t.Helper()
	w := map[string]bool{}
	var wantFatal, gotFatal string
	for _, l := range pcLines(bytes.ReplaceAll(want, []byte("/usr/sbin/postconf:"), []byte("postconf:"))) {
		w[l] = true
		if strings.HasPrefix(l, "postconf: fatal:") {
			wantFatal = l
		}
	}
	for _, l := range pcLines(got) {
		if strings.HasPrefix(l, "postconf: fatal:") {
			gotFatal = l
		}
		if !w[l] {
			t.Errorf("postconf %v: we print %q, Postfix does not (Postfix: %q)", args, l, want)
		}
	}
	if gotFatal != wantFatal {
		t.Errorf("postconf %v: fatal %q, want %q", args, gotFatal, wantFatal)
	}
}

// pcNamesIn returns the parameter names a main.cf sets.
func pcNamesIn(t *testing.T, file string, data []byte) []string {
	cfg, err := config.Parse(file, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var names []string
	for _, n := range cfg.Names() {
		if n != "process_id" { // a different process each run
			names = append(names, n)
		}
	}
	return names
}

func TestPostconfOracleCorpus(t *testing.T) {
	t.Parallel()
	oracle.Require(t, "postconf")
	files, err := filepath.Glob("../../config/testdata/maincf/*.cf")
	if err != nil || len(files) < 25 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	// Per file: -n, -x and -h of every name set plus the derived ones.
	// All real postconf runs go first, concurrently.
	var calls [][]string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dir := pcConfigDir(t, data)
		names := append(pcNamesIn(t, file, data), pcDerived...)
		calls = append(calls,
			[]string{"-c", dir, "-n"},
			append([]string{"-c", dir, "-x"}, names...),
			append([]string{"-c", dir, "-h"}, names...))
	}
	want := pcOracleAll(t, nil, calls)
	for i, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			for j := 3 * i; j < 3*i+3; j++ {
				pcCompare(t, want[j], calls[j]...)
			}
		})
	}
}

func TestPostconfOracleAll(t *testing.T) {
	t.Parallel()
	oracle.Require(t, "postconf")
	// Every parameter, raw and expanded, for one ordinary main.cf.
	dir := pcConfigDir(t, []byte("compatibility_level = 3.6\nmyhostname = mx.example.com\n"))
	calls := [][]string{{"-c", dir}, {"-c", dir, "-x"}}
	for i, want := range pcOracleAll(t, nil, calls) {
		got := pcRunOurs(calls[i]...)
		if got.Code != want.Code {
			t.Errorf("postconf %v: exit %d, want %d (stderr %q)", calls[i], got.Code, want.Code, got.Stderr)
		}
		pcDiffLines(t, calls[i], got.Stdout, want.Stdout)
	}
}

// pcDiffLines compares outputs line by line, ignoring process_id (a
// different process each run), and reports each differing line.
func pcDiffLines(t *testing.T, args []string, got, want []byte) {
	t.Helper()
	drop := func(b []byte) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			name, _, _ := strings.Cut(l, " =")
			if name != "process_id" && l != "" {
				m[name] = l
			}
		}
		return m
	}
	g, w := drop(got), drop(want)
	if len(w) == 0 {
		// Two empty outputs would compare equal and prove nothing.
		t.Errorf("postconf %v: Postfix printed no parameter", args)
	}
	bad := 0
	for name, wl := range w {
		if g[name] != wl {
			bad++
			if bad <= 20 {
				t.Errorf("postconf %v: got %q, want %q", args, g[name], wl)
			}
		}
	}
	for name, gl := range g {
		if _, ok := w[name]; !ok {
			t.Errorf("postconf %v: extra %q", args, gl)
		}
	}
	if bad > 20 {
		t.Errorf("postconf %v: %d lines differ", args, bad)
	}
}

func TestPostconfOracleDefaults(t *testing.T) {
	t.Parallel()
	oracle.Require(t, "postconf")
	dir := pcConfigDir(t, nil)
	// All defaults in one run, raw and expanded: a mismatch is a bug in
	// the default table or in the computed defaults.
	calls := [][]string{
		{"-c", dir, "-d"},
		{"-c", dir, "-dx"},
		{"-c", dir, "-d", "myhostname", "mydomain", "mynetworks", "nosuch_parameter"},
		{"-c", dir, "-dh", "mynetworks_style", "relay_domains"},
	}
	want := pcOracleAll(t, nil, calls)
	for i, args := range calls[:2] {
		got := pcRunOurs(args...)
		if got.Code != want[i].Code {
			t.Errorf("postconf %v: exit %d, want %d", args, got.Code, want[i].Code)
		}
		pcDiffLines(t, args, got.Stdout, want[i].Stdout)
	}
	for i := 2; i < len(calls); i++ {
		pcCompare(t, want[i], calls[i]...)
	}
}

func TestPostconfOracleErrors(t *testing.T) {
	t.Parallel()
	oracle.Require(t, "postconf")
	files, _ := filepath.Glob("../../config/testdata/maincf-errors/*.cf")
	if len(files) == 0 {
		t.Fatal("no error corpus")
	}
	var calls [][]string
	for _, file := range files {
		data, _ := os.ReadFile(file)
		dir := pcConfigDir(t, data)
		calls = append(calls, []string{"-c", dir, "-n"}, []string{"-c", dir, "-x", "myorigin", "mynetworks"})
	}
	want := pcOracleAll(t, nil, calls)
	for i, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			for j := 2 * i; j < 2*i+2; j++ {
				args := calls[j]
				got := pcRunOurs(args...)
				if got.Code != want[j].Code || !bytes.Equal(got.Stdout, want[j].Stdout) {
					t.Errorf("postconf %v: exit %d stdout %q, want exit %d stdout %q (stderr %q)", args, got.Code, got.Stdout, want[j].Code, want[j].Stdout, got.Stderr)
				}
				// The same problem is named: the last line (the fatal
				// error) and every distinct warning match.
				pcCompareStderr(t, args, got.Stderr, want[j].Stderr)
			}
		})
	}
}

func TestPostconfOracleUsage(t *testing.T) {
	t.Parallel()
	oracle.Require(t, "postconf")
	dir := pcConfigDir(t, []byte("myorigin = x\n"))
	calls := [][]string{
		{"-c", dir, "-n", "-d"},
		{"-c", dir, "-e", "-X", "a"},
		{"-c", dir, "-n", "-e", "a=1"},
		{"-c", dir, "-e"},
		{"-c", dir, "-e", "foo"},
		{"-c", dir, "-e", "=v"},
		{"-c", dir, "-m", "-n"},
		{"-c", dir + "/nonexistent", "-n"},
		{"-c", dir, "-n", "nosuch", "myorigin", "mydomain"},
		{"-c", dir, "-h", "myorigin", "relay_domains"},
	}
	for i, want := range pcOracleAll(t, nil, calls) {
		args := calls[i]
		got := pcRunOurs(args...)
		if got.Code != want.Code || !bytes.Equal(got.Stdout, want.Stdout) {
			t.Errorf("postconf %v: exit %d stdout %q, want exit %d stdout %q", args, got.Code, got.Stdout, want.Code, want.Stdout)
		}
		pcCompareStderr(t, args, got.Stderr, want.Stderr)
	}
}

func TestPostconfOracleEdit(t *testing.T) {
	t.Parallel()
	oracle.Require(t, "postconf")
	const base = "# head comment\n\nmyorigin = 1\n  cont\n# mid\n\tcont2\nmydomain = 2 # x\n\n  \nrelayhost=3\nmyorigin = again\n# tail"
	cases := []struct {
		file string
		args []string
	}{
		{base, []string{"-e", "myorigin=new value", "mydomain="}},
		{base, []string{"-e", "mynetworks = 10.0.0.0/8"}},
		{base + "\n", []string{"-e", "mynetworks = 10.0.0.0/8"}},
		{base, []string{"-X", "myorigin", "nosuch"}},
		{base, []string{"-#", "myorigin", "relayhost"}},
		{base, []string{"myorigin=implied", "relayhost = [mx]:25"}},
		{base, []string{"-e", "myorigin=a", "myorigin=b"}},
		{"", []string{"-e", "myorigin=x"}},
		{"myorigin = x\n  y\n  z\nmydomain = d\n", []string{"-X", "myorigin"}},
	}
	// Each case edits its own pair of directories: the real postconf's
	// edits all run first, concurrently.
	ours := make([]string, len(cases))
	theirs := make([]string, len(cases))
	calls := make([][]string, len(cases))
	for i, tc := range cases {
		ours[i] = pcConfigDir(t, []byte(tc.file))
		theirs[i] = pcConfigDir(t, []byte(tc.file))
		calls[i] = append([]string{"-c", theirs[i]}, tc.args...)
	}
	for i, want := range pcOracleAll(t, nil, calls) {
		tc := cases[i]
		got := pcRunOurs(append([]string{"-c", ours[i]}, tc.args...)...)
		if got.Code != want.Code {
			t.Errorf("%v: exit %d, want %d", tc.args, got.Code, want.Code)
		}
		pcCompareStderr(t, tc.args, got.Stderr, bytes.ReplaceAll(want.Stderr, []byte(theirs[i]), []byte(ours[i])))
		g, _ := os.ReadFile(filepath.Join(ours[i], "main.cf"))
		w, _ := os.ReadFile(filepath.Join(theirs[i], "main.cf"))
		if !bytes.Equal(g, w) {
			t.Errorf("%v on %q:\n got: %q\nwant: %q", tc.args, tc.file, g, w)
		}
	}
}

func TestPostconfMapTypes(t *testing.T) {
	t.Parallel()
	got := pcRunOurs("-m")
	if got.Code != 0 {
		t.Fatalf("exit %d: %s", got.Code, got.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(got.Stdout)), "\n")
	if !sort.StringsAreSorted(lines) {
		t.Errorf("-m not sorted: %q", lines)
	}
	for _, typ := range []string{"hash", "cidr", "regexp", "texthash"} {
		if !strings.Contains("\n"+string(got.Stdout), "\n"+typ+"\n") {
			t.Errorf("-m lacks %s: %q", typ, got.Stdout)
		}
	}
}

func TestPostconfMailConfigEnv(t *testing.T) {
	oracle.Require(t, "postconf")
	dir := pcConfigDir(t, []byte("myorigin = env.example\n"))
	calls := [][]string{{"-n"}, {"-x", "myorigin"}}
	want := pcOracleAll(t, []string{"MAIL_CONFIG=" + dir}, calls)
	t.Setenv("MAIL_CONFIG", dir)
	for i, args := range calls {
		pcCompare(t, want[i], args...)
	}
}
