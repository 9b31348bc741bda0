package queue

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// The long queue ID alphabet (spec §7.2, enable_long_queue_ids = yes):
// digits and consonants, in ASCII order, so that comparing the fixed-width
// time part as strings compares creation times.
const idAlphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"

const (
	idSecBase   = 52
	idSecPad    = 6 // at least six characters of seconds
	idMicroBase = 52
	idMicroPad  = 4  // exactly four characters of microseconds
	idInodeBase = 51 // 'z' is the separator, so the inode part never uses it
	idSep       = 'z'
	// idMaxLen bounds what ValidID accepts: 64-bit seconds and inode
	// numbers need 12 and 12 characters; anything longer is not an ID.
	idMaxLen = 40
)

var idDigit [256]int8

func init() {
	for i := range idDigit {
		idDigit[i] = -1
	}
	for i := 0; i < len(idAlphabet); i++ {
		idDigit[idAlphabet[i]] = int8(i)
	}
}

// encodeBase appends v in the given base, most significant digit first,
// padded with '0' to at least pad characters.
func encodeBase(b []byte, v uint64, base uint64, pad int) []byte {
	var tmp [24]byte
	i := len(tmp)
	for v > 0 || len(tmp)-i < pad || i == len(tmp) {
		i--
		tmp[i] = idAlphabet[v%base]
		v /= base
	}
	return append(b, tmp[i:]...)
}

func decodeBase(s string, base uint64) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := idDigit[s[i]]
		if d < 0 || uint64(d) >= base {
			return 0, false
		}
		if v > (^uint64(0)-uint64(d))/base {
			return 0, false // overflow
		}
		v = v*base + uint64(d)
	}
	return v, true
}

// formatID builds a long queue ID from a creation time and a uniquifier
// (the queue file's inode number, as in Postfix's mail_queue.c).
func formatID(t time.Time, uniq uint64) string {
	b := make([]byte, 0, 24)
	b = encodeBase(b, uint64(t.Unix()), idSecBase, idSecPad)
	b = encodeBase(b, uint64(t.Nanosecond()/1000), idMicroBase, idMicroPad)
	b = append(b, idSep)
	b = encodeBase(b, uniq, idInodeBase, 1)
	return string(b)
}

// ErrBadID is returned (wrapped) for a string that is not a queue ID.
var ErrBadID = errors.New("not a queue ID")

// ParseID decodes a long queue ID into its creation time (to the
// microsecond) and its uniquifier (the inode number of the queue file when
// it was created). It accepts IDs made by Postfix with
// enable_long_queue_ids = yes as well as postkit's.
func ParseID(id string) (created time.Time, uniq uint64, err error) {
	bad := func() (time.Time, uint64, error) {
		return time.Time{}, 0, fmt.Errorf("queue: %q: %w", id, ErrBadID)
	}
	sep := strings.LastIndexByte(id, idSep)
	if sep < idSecPad+idMicroPad || sep == len(id)-1 || len(id) > idMaxLen {
		return bad()
	}
	sec, ok1 := decodeBase(id[:sep-idMicroPad], idSecBase)
	usec, ok2 := decodeBase(id[sep-idMicroPad:sep], idMicroBase)
	ino, ok3 := decodeBase(id[sep+1:], idInodeBase)
	if !ok1 || !ok2 || !ok3 || usec >= 1e6 || sec > 1<<62 {
		return bad()
	}
	return time.Unix(int64(sec), int64(usec)*1000), ino, nil
}

// ValidID reports whether id can name a queue file: Postfix's short form
// (upper-case hex) or the long form, letters and digits only (spec §7.2),
// so it is safe to use as a file name.
func ValidID(id string) bool {
	if id == "" || len(id) > idMaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// idClock hands out creation times that strictly increase within the
// process, so two IDs made in the same microsecond still sort in creation
// order even before the uniquifier breaks the tie.
type idClock struct {
	mu   sync.Mutex
	last int64 // microseconds
}

func (c *idClock) next(now time.Time) time.Time {
	us := now.UnixMicro()
	c.mu.Lock()
	if us <= c.last {
		us = c.last + 1
	}
	c.last = us
	c.mu.Unlock()
	return time.UnixMicro(us)
}
