package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// TestPostaliasQuery builds the aliases corpus with both programs (comparing
// warnings) and compares -q - and -q KEY, for hash and cdb (postkit's cdb
// file read by postalias too).
func TestPostaliasQuery(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	src := pmTestdata(t, "aliases")
	keys := pmTestdata(t, "aliases.keys")
	for _, typ := range []string{"hash", "lmdb", "cdb"} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			dir := pmWorkDir(t)
			file := pmWrite(t, dir, "aliases", src)
			spec := typ + ":" + file
			kit := pmKit(nil, "postalias", "-c", conf, spec)
			if typ == "cdb" {
				// Without postkit's file both programs would fail alike.
				if _, err := os.Stat(file + ".cdb"); err != nil {
					t.Fatalf("postkit postalias %s wrote no cdb file: %v (stderr %s)", spec, err, kit.Stderr)
				}
				pmQueryAll(t, "postalias", conf, spec, keys)
			}
			real := oracle.Run(t, nil, "postalias", "-c", conf, spec)
			pmSame(t, "build "+spec, kit, real)
			pmQueryAll(t, "postalias", conf, spec, keys)
		})
	}
}

// TestPostaliasDump compares -s (sorted; Postfix's extra @ and YP_ entries
// are left out).
func TestPostaliasDump(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	dir := pmWorkDir(t)
	file := pmWrite(t, dir, "aliases", pmTestdata(t, "aliases"))
	oracle.Run(t, nil, "postalias", "-c", conf, "hash:"+file)
	pmSortedDump(t, "postalias", "-c", conf, "-s", "hash:"+file)
}

// TestPostaliasUpdate compares -d and -i on an aliases table.
func TestPostaliasUpdate(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	keys := append(pmTestdata(t, "aliases.keys"), "new\nweird new\nroot\n"...)
	for i, c := range []struct {
		args  []string
		stdin string
	}{
		{args: []string{"-d", "list"}},
		{args: []string{"-d", "Weird Name"}},
		{args: []string{"-d", "-"}, stdin: "root\nmissing\ndup\n"},
		{args: []string{"-i"}, stdin: "new: a, b,\n  c\n\"weird new\": x\nroot: again\nbad line\n"},
		{args: []string{"-ir"}, stdin: "root: replaced\n"},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			dir := pmWorkDir(t)
			file := pmWrite(t, dir, "aliases", pmTestdata(t, "aliases"))
			spec := "hash:" + file
			oracle.Run(t, nil, "postalias", "-c", conf, spec)
			pmCompare(t, []byte(c.stdin), "postalias", append(append([]string{"-c", conf}, c.args...), spec)...)
			pmCompareHits(t, keys, "postalias", "-c", conf, "-q", "-", spec)
		})
	}
}

// TestPostaliasErrors compares usage errors and bad arguments.
func TestPostaliasErrors(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	dir := pmWorkDir(t)
	file := pmWrite(t, dir, "aliases", []byte("a: b\n"))
	var all [][]string
	for _, args := range [][]string{
		{},
		{"-q", "x"},
		{"-b", file},
		{"-F", file},
		{"-q"},
		{"-q", "a", "-s", file},
		{"-q", "a", "hash:" + filepath.Join(dir, "missing")},
		{"hash:" + filepath.Join(dir, "missing")},
		{"bogus:" + file},
		{"regexp:" + file},
	} {
		all = append(all, append([]string{"-c", conf}, args...))
	}
	pmCompareMany(t, nil, "postalias", all)
}

// TestNewaliases builds every table in alias_database, as newaliases does,
// and compares the messages and exit status; the cdb file postkit wrote is
// then read by postalias.
func TestNewaliases(t *testing.T) {
	t.Parallel()
	dir := pmWorkDir(t)
	aliases := pmWrite(t, dir, "aliases", pmTestdata(t, "aliases"))
	conf := oracle.ConfigDir(t, fmt.Sprintf("alias_database = hash:%s, cdb:%s\n", aliases, aliases))
	kit := pmKit(nil, "newaliases", "-C", conf)
	cdbKit, err := os.ReadFile(aliases + ".cdb")
	if err != nil {
		t.Fatalf("postkit newaliases wrote no cdb file: %v (stderr %s)", err, kit.Stderr)
	}
	_ = cdbKit
	pmQueryAll(t, "postalias", conf, "cdb:"+aliases, pmTestdata(t, "aliases.keys"))
	real := oracle.Run(t, nil, "newaliases", "-C", conf)
	pmSame(t, "newaliases", kit, real)

	// main.cf with an entry twice (Postfix's newaliases shows no warning),
	// and with a line without '=' (fatal).
	for _, extra := range []string{
		fmt.Sprintf("alias_database = hash:%s\nalias_database = hash:%s\n", aliases, aliases),
		"alias_database = hash:" + aliases + "\nbad line\n",
	} {
		conf := oracle.ConfigDir(t, extra)
		kit, real := pmBoth(t, nil, "newaliases", "-C", conf)
		pmSame(t, "newaliases with main.cf "+extra, kit, real)
	}

	// A bad option, and a missing configuration directory.
	for _, args := range [][]string{{"-C"}, {"-C", filepath.Join(dir, "nodir")}} {
		kit, real := pmBoth(t, nil, "newaliases", args...)
		if kit.Code != real.Code {
			t.Errorf("newaliases %v: exit postkit %d, postfix %d", args, kit.Code, real.Code)
		}
		if !strings.Contains(string(real.Stderr), strings.TrimSpace(strings.SplitN(string(kit.Stderr), "\n", 2)[0])) {
			t.Errorf("newaliases %v: postkit stderr %q not in postfix's %q", args, kit.Stderr, real.Stderr)
		}
	}
}
