package pop3server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/postkit-mail/postkit/mailbox"
)

// POP3 sizes are of the message as sent: every line ends with CRLF (RFC
// 1939 11: "the size of the message in octets ... the exact number of
// octets"). Maildir files end lines with LF, so the size is the file size
// plus the number of bare LFs (an LF without a CR before it). The
// byte-stuffing of lines starting with '.' is not counted, as in Dovecot
// and RFC 1939's examples, nor is the CRLF added after a last line that
// has none.

// virtualSize returns the CRLF size of the message file at path. A Maildir
// key carrying Dovecot's ",W=<vsize>" field gives it without reading the
// file; otherwise the file is read once and the result cached (keys are
// unique and the contents of a Maildir file never change).
// reopen is used when the file is gone from path: its flags changed since
// the listing, so it has another name now.
func virtualSize(path, key string, reopen func() (*os.File, error)) (int64, error) {
	if w, ok := mailbox.KeyVSize(key); ok {
		return w, nil
	}
	cacheKey := filepath.Dir(filepath.Dir(path)) + "\x00" + key
	if n, ok := sizes.get(cacheKey); ok {
		return n, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		f, err = reopen()
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := mailbox.CRLFSize(f)
	if err != nil {
		return 0, err
	}
	sizes.put(cacheKey, n)
	return n, nil
}

// sizeCache remembers virtual sizes by Maildir and key; it is cleared
// when it reaches its bound rather than tracking use.
type sizeCache struct {
	mu sync.Mutex
	m  map[string]int64
}

const sizeCacheMax = 200000

var sizes = &sizeCache{m: map[string]int64{}}

func (c *sizeCache) get(k string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.m[k]
	return n, ok
}

func (c *sizeCache) put(k string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= sizeCacheMax {
		clear(c.m)
	}
	c.m[k] = n
}

var crlf = []byte("\r\n")

// writeMessage sends the message read from r as the body of a RETR or TOP
// response: lines end in CRLF, a line starting with '.' gets another '.'
// (RFC 1939 3, byte-stuffing), and a last line without a line end gets a
// CRLF. bodyLines < 0 sends everything; otherwise the header, the empty
// line after it and at most bodyLines lines of the body (TOP). It does not
// send the terminating ".". It returns the bytes written.
func writeMessage(w *bufio.Writer, r io.Reader, bodyLines int) (int64, error) {
	br := bufio.NewReaderSize(r, 32*1024)
	var written int64
	put := func(b []byte) error {
		k, err := w.Write(b)
		written += int64(k)
		return err
	}
	atStart, inHeader, lastCR := true, true, false
	lines := 0
	for {
		if !inHeader && bodyLines >= 0 && lines >= bodyLines && atStart {
			return written, nil
		}
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			blank := false
			if atStart {
				if chunk[0] == '.' {
					if err := put([]byte{'.'}); err != nil {
						return written, err
					}
				}
				if inHeader && (len(chunk) == 1 && chunk[0] == '\n' || len(chunk) == 2 && chunk[0] == '\r' && chunk[1] == '\n') {
					inHeader, blank = false, true
				}
			}
			if chunk[len(chunk)-1] == '\n' {
				body := chunk[:len(chunk)-1]
				var werr error
				switch {
				case len(body) > 0:
					body = bytes.TrimSuffix(body, []byte{'\r'})
					if werr = put(body); werr == nil {
						werr = put(crlf)
					}
				case lastCR:
					werr = put(chunk)
				default:
					werr = put(crlf)
				}
				if werr != nil {
					return written, werr
				}
				if !inHeader && !blank {
					lines++
				}
				atStart = true
			} else {
				if err := put(chunk); err != nil {
					return written, err
				}
				atStart = false
			}
			lastCR = chunk[len(chunk)-1] == '\r'
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			if !atStart {
				if err := put(crlf); err != nil {
					return written, err
				}
			}
			return written, nil
		default:
			return written, err
		}
	}
}
