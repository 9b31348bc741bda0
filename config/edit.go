package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EditOp is what an Edit does to a parameter.
type EditOp int

const (
	// EditSet replaces every entry of the parameter in place with
	// "name = value", or appends one (postconf -e).
	EditSet EditOp = iota
	// EditRemove deletes the entries (postconf -X).
	EditRemove
	// EditComment turns the entries into comments by prefixing each of
	// their lines with '#' (postconf -#).
	EditComment
)

// Edit is one change to main.cf.
type Edit struct {
	Op    EditOp
	Name  string
	Value string // for EditSet; stored raw
}

// ParseAssignment splits a "name=value" command-line argument as postconf
// -e does; the error text is Postfix's.
func ParseAssignment(arg string) (name, value string, err error) {
	name, value, msg := splitNameValue(arg)
	if msg != "" {
		return "", "", &SyntaxError{Msg: msg}
	}
	return name, value, nil
}

// EditText applies edits to main.cf text and returns the new text. Lines
// that are not part of an edited entry are kept byte for byte (comments,
// blank lines, order, a missing final newline). An edited entry loses its
// continuation lines (comment lines among them stay); new entries are
// appended at the end, in the order given. filename is used in warnings.
//
// The result is what Postfix 3.7's postconf -e/-X/-# writes (src:
// postconf/postconf_edit.c), except that Postfix appends new entries in
// its hash-table order rather than in argument order.
func EditText(filename string, data []byte, edits []Edit) ([]byte, []Warning) {
	want := map[string]*Edit{}
	var order []string
	for i := range edits {
		e := &edits[i]
		if _, dup := want[e.Name]; !dup {
			order = append(order, e.Name)
		}
		want[e.Name] = e
	}
	var warnings []Warning
	seen := map[string]int{}
	var out strings.Builder
	var cur *Edit // the edit whose entry the current logical line is
	for _, line := range splitLines(string(data)) {
		body := strings.TrimRight(line, "\n")
		t := strings.TrimLeft(body, lineSpace)
		switch {
		case t == "" || t[0] == '#':
			out.WriteString(line)
			continue
		case body[0] == ' ' || body[0] == '\t' || body[0] == '\r':
			if cur == nil {
				out.WriteString(line)
				continue
			}
			if cur.Op == EditComment {
				out.WriteString("#" + line)
			}
			continue
		}
		cur = nil
		name := t
		if i := strings.IndexAny(t, lineSpace+"="); i >= 0 {
			name = t[:i]
		}
		e, ok := want[name]
		if !ok {
			out.WriteString(line)
			continue
		}
		cur = e
		seen[name]++
		if seen[name] == 2 {
			warnings = append(warnings, Warning{File: filename, Text: fmt.Sprintf("multiple entries for \"%s\"", name)})
		}
		switch e.Op {
		case EditSet:
			out.WriteString(name + " = " + e.Value + "\n")
		case EditComment:
			out.WriteString("#" + line)
		}
	}
	for _, name := range order {
		if e := want[name]; e.Op == EditSet && seen[name] == 0 {
			out.WriteString(name + " = " + e.Value + "\n")
		}
	}
	return []byte(out.String()), warnings
}

// EditFile applies edits to the main.cf file at path and replaces it
// atomically: the new text goes to a temporary file in the same directory
// (so that the rename cannot cross file systems), which is synced and then
// renamed over the old file; the directory is synced last so that the
// rename itself is durable. The file keeps its permissions.
func EditFile(path string, edits []Edit) ([]Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	text, warnings := EditText(path, data, edits)
	if err := writeAtomic(path, text, mode); err != nil {
		return warnings, err
	}
	return warnings, nil
}

// writeAtomic is swapped by tests to inject failures.
var writeAtomic = func(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("config: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
