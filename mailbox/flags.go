package mailbox

import (
	"fmt"
	"strings"
)

// Flags are the Maildir flags of a message, kept in the file name's info
// part ":2,FLAGS" (the letters in ASCII order). Dovecot shows them over IMAP
// as \Draft, \Flagged, \Answered, \Seen and \Deleted (T); P (passed) has
// no IMAP system flag and Dovecot 2.3 does not show it (a server may map
// it to the $Forwarded keyword).
type Flags uint8

const (
	FlagDraft   Flags = 1 << iota // D: draft
	FlagFlagged                   // F: flagged for urgent/special attention
	FlagPassed                    // P: resent/forwarded/bounced
	FlagReplied                   // R: replied to
	FlagSeen                      // S: seen
	FlagTrashed                   // T: trashed (IMAP \Deleted)
)

const flagLetters = "DFPRST"

// String returns the flag letters in ASCII order, as they appear after
// ":2,".
func (f Flags) String() string {
	var b strings.Builder
	for i := 0; i < len(flagLetters); i++ {
		if f&(1<<i) != 0 {
			b.WriteByte(flagLetters[i])
		}
	}
	return b.String()
}

// ParseFlags reads flag letters ("FS"); an unknown letter is an error.
func ParseFlags(s string) (Flags, error) {
	var f Flags
	for i := 0; i < len(s); i++ {
		j := strings.IndexByte(flagLetters, s[i])
		if j < 0 {
			return 0, fmt.Errorf("mailbox: unknown maildir flag %q", s[i])
		}
		f |= 1 << j
	}
	return f, nil
}

// Info is the parsed name of a Maildir file: the unique key and the info
// after the colon.
type Info struct {
	// Key is the unique part of the name (everything before the first ':').
	Key string
	// Flags are the standard flags of a ":2," info.
	Flags Flags
	// Extra are the other letters of a ":2," info (Dovecot's keyword
	// letters a-z and anything unknown), kept in order so that renaming
	// the file for a flag change does not lose them.
	Extra string
	// Raw is the info as found when it is not of the ":2," kind (for
	// example ":1,..."); it is kept unchanged.
	Raw string
	// HasInfo: the name had a ':' part.
	HasInfo bool
}

// ParseName splits a Maildir file name into key and info. It fails for a
// name that cannot be a message file: empty, starting with '.', or with
// '/', NUL or another control character.
func ParseName(name string) (Info, error) {
	if name == "" || name[0] == '.' {
		return Info{}, fmt.Errorf("mailbox: %q is not a maildir message name", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f || c == '/' {
			return Info{}, fmt.Errorf("mailbox: maildir name %q has a forbidden character", name)
		}
	}
	key, info, has := strings.Cut(name, ":")
	if key == "" {
		return Info{}, fmt.Errorf("mailbox: maildir name %q has an empty unique part", name)
	}
	in := Info{Key: key, HasInfo: has}
	if !has {
		return in, nil
	}
	letters, ok := strings.CutPrefix(info, "2,")
	if !ok {
		in.Raw = info
		return in, nil
	}
	var extra []byte
	for i := 0; i < len(letters); i++ {
		c := letters[i]
		if j := strings.IndexByte(flagLetters, c); j >= 0 {
			in.Flags |= 1 << j
			continue
		}
		if strings.IndexByte(string(extra), c) < 0 {
			extra = append(extra, c)
		}
	}
	in.Extra = string(extra)
	return in, nil
}

// Name renders the file name: Key, then ":2," with the flags and extra
// letters in ASCII order (or the kept raw info).
func (in Info) Name() string {
	if in.Raw != "" {
		return in.Key + ":" + in.Raw
	}
	letters := []byte(in.Flags.String() + in.Extra)
	// ASCII order, as the Maildir convention asks; few letters, so a
	// simple insertion sort.
	for i := 1; i < len(letters); i++ {
		for j := i; j > 0 && letters[j] < letters[j-1]; j-- {
			letters[j], letters[j-1] = letters[j-1], letters[j]
		}
	}
	return in.Key + ":2," + string(letters)
}
