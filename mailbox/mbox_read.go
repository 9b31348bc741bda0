package mailbox

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// MboxMessage locates one message of an mbox file.
type MboxMessage struct {
	// From is the separator line without "From " and the newline
	// ("alice@example.com  Tue Nov 26 17:01:01 2024").
	From string
	// Offset is where the message (its first header line) starts.
	Offset int64
	// Size is the stored length: from Offset to the end of its last line,
	// without the empty separator line, with the ">From " quoting.
	Size int64
	// Flags from the Status: (R: seen) and X-Status: (A: answered,
	// F: flagged, T: draft, D: deleted) headers that mutt and Dovecot write.
	Flags Flags
}

// ScanMbox splits an mbox into messages. A message starts at a line
// beginning "From " at the start of the file or after an empty line (the
// separator Postfix and other writers leave); the empty line before the
// next From_ line (or at the end of the file) is not part of the message.
// A file that does not start with "From " is an error.
func ScanMbox(r io.Reader) ([]MboxMessage, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	var msgs []MboxMessage
	var off int64
	prevEmpty := true
	inHeader := false
	var cur *MboxMessage
	var pendingEmpty int64 = -1 // offset of an empty line that may be a separator
	finish := func(end int64) {
		if cur != nil {
			cur.Size = end - cur.Offset
			msgs = append(msgs, *cur)
			cur = nil
		}
	}
	for {
		line, err := readWholeLine(br)
		if len(line) > 0 {
			start := off
			off += int64(len(line))
			if prevEmpty && bytes.HasPrefix(line, fromPrefix) {
				end := start
				if pendingEmpty >= 0 {
					end = pendingEmpty
				}
				finish(end)
				from := strings.TrimRight(string(line[len(fromPrefix):]), "\r\n")
				cur = &MboxMessage{From: from, Offset: off}
				inHeader = true
				prevEmpty = false
				pendingEmpty = -1
				continue
			}
			if cur == nil {
				return nil, fmt.Errorf("mailbox: not an mbox file: it does not start with a From_ line")
			}
			empty := len(line) == 1 || (len(line) == 2 && line[0] == '\r')
			if empty {
				inHeader = false
				pendingEmpty = start
			} else {
				pendingEmpty = -1
				if inHeader {
					cur.Flags |= statusFlags(line)
				}
			}
			prevEmpty = empty
		}
		if err == io.EOF {
			end := off
			if pendingEmpty >= 0 {
				end = pendingEmpty
			}
			finish(end)
			return msgs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox: read mbox: %w", err)
		}
	}
}

// readWholeLine returns the next line including its LF (the last one may
// lack it). Lines longer than the buffer are assembled.
func readWholeLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	buf := append([]byte(nil), line...)
	for err == bufio.ErrBufferFull {
		line, err = br.ReadSlice('\n')
		buf = append(buf, line...)
	}
	return buf, err
}

func statusFlags(line []byte) Flags {
	name, val, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return 0
	}
	var f Flags
	switch {
	case bytes.EqualFold(name, []byte("Status")):
		if bytes.IndexByte(val, 'R') >= 0 {
			f |= FlagSeen
		}
	case bytes.EqualFold(name, []byte("X-Status")):
		for _, c := range bytes.TrimSpace(val) {
			switch c {
			case 'A':
				f |= FlagReplied
			case 'F':
				f |= FlagFlagged
			case 'T':
				f |= FlagDraft
			case 'D':
				f |= FlagTrashed
			}
		}
	}
	return f
}

// Raw returns the message as stored (with the ">From " quoting).
func (m MboxMessage) Raw(ra io.ReaderAt) io.Reader {
	return io.NewSectionReader(ra, m.Offset, m.Size)
}

// Reader returns the message with one level of ">From " quoting removed
// from lines that begin ">From " (mboxo: a line that was ">From " before
// delivery cannot be told apart and loses its '>' too; Dovecot and Python
// keep the quoting, which Raw gives).
func (m MboxMessage) Reader(ra io.ReaderAt) io.Reader {
	return &unquoter{br: bufio.NewReaderSize(io.NewSectionReader(ra, m.Offset, m.Size), 32*1024), atStart: true}
}

type unquoter struct {
	br      *bufio.Reader
	atStart bool
	pending []byte
	err     error
}

func (u *unquoter) Read(p []byte) (int, error) {
	for len(u.pending) == 0 {
		if u.err != nil {
			return 0, u.err
		}
		chunk, err := u.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			u.err = err
		}
		if u.atStart && len(chunk) >= 6 && chunk[0] == '>' && bytes.HasPrefix(chunk[1:], fromPrefix) {
			chunk = chunk[1:]
		}
		u.pending = chunk
		if len(chunk) > 0 {
			u.atStart = chunk[len(chunk)-1] == '\n'
		}
	}
	n := copy(p, u.pending)
	u.pending = u.pending[n:]
	return n, nil
}
