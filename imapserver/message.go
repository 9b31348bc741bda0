package imapserver

import (
	"bufio"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/postkit-mail/postkit/mailbox"
)

// Messages are stored with LF line ends (Dovecot's mail_save_crlf=no);
// IMAP serves them with CRLF. toCRLF converts; a CR already before an LF
// is kept, so files stored with CRLF are served unchanged.
func toCRLF(b []byte) []byte {
	n := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			n++
		}
	}
	if n == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// lfWriter converts CRLF to LF on the way to the Maildir (APPEND). A CR
// not followed by LF is kept.
type lfWriter struct {
	w      io.Writer
	pendCR bool
}

func (l *lfWriter) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+1)
	for _, c := range p {
		if l.pendCR {
			l.pendCR = false
			if c != '\n' {
				out = append(out, '\r')
			}
		}
		if c == '\r' {
			l.pendCR = true
			continue
		}
		out = append(out, c)
	}
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (l *lfWriter) flush() error {
	if l.pendCR {
		l.pendCR = false
		_, err := l.w.Write([]byte{'\r'})
		return err
	}
	return nil
}

// infoCache keeps, per message file (Maildir path + key, immutable
// content), the CRLF size and the envelope: what FETCH of a whole mailbox
// asks for again and again. It is bounded; when full it starts afresh.
type infoCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*cachedInfo
}

type cachedInfo struct {
	size     int64 // CRLF size, -1 when unknown
	envelope *imap.Envelope
}

func newInfoCache(max int) *infoCache {
	return &infoCache{max: max, m: map[string]*cachedInfo{}}
}

func (c *infoCache) get(k string) (cachedInfo, bool) {
	if c == nil || c.max <= 0 {
		return cachedInfo{size: -1}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ci, ok := c.m[k]
	if !ok {
		return cachedInfo{size: -1}, false
	}
	return *ci, true
}

func (c *infoCache) put(k string, update func(*cachedInfo)) {
	if c == nil || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ci, ok := c.m[k]
	if !ok {
		if len(c.m) >= c.max {
			c.m = map[string]*cachedInfo{}
		}
		ci = &cachedInfo{size: -1}
		c.m[k] = ci
	}
	update(ci)
}

// readEnvelope parses the message header read from r. A malformed
// header gives the envelope of the fields read before the fault, rather
// than failing the FETCH.
func readEnvelope(r io.Reader) *imap.Envelope {
	var hdr []byte
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		hdr = append(hdr, line...)
		if len(trimEOL(line)) == 0 || err != nil || len(hdr) > 1<<20 {
			break
		}
	}
	return parseMIME(hdr, 0, len(hdr), false, maxMIMEDepth).envelope()
}

// Flag mapping (Dovecot's for Maildir): S \Seen, R \Answered,
// F \Flagged, T \Deleted, D \Draft; P has no IMAP flag and is kept.
var flagMap = []struct {
	bit  mailbox.Flags
	flag imap.Flag
}{
	{mailbox.FlagSeen, imap.FlagSeen},
	{mailbox.FlagReplied, imap.FlagAnswered},
	{mailbox.FlagFlagged, imap.FlagFlagged},
	{mailbox.FlagTrashed, imap.FlagDeleted},
	{mailbox.FlagDraft, imap.FlagDraft},
}

func imapFlags(msg mailbox.Message, recent bool) []imap.Flag {
	out := make([]imap.Flag, 0, 4)
	for _, fm := range flagMap {
		if msg.Flags&fm.bit != 0 {
			out = append(out, fm.flag)
		}
	}
	if recent {
		out = append(out, flagRecent)
	}
	for _, k := range msg.Keywords {
		out = append(out, imap.Flag(k))
	}
	return out
}

// splitFlags turns IMAP flags into Maildir flag bits and keywords
// (\Recent and unknown system flags are ignored).
func splitFlags(flags []imap.Flag) (mailbox.Flags, []string) {
	var bits mailbox.Flags
	var kw []string
	for _, f := range flags {
		if strings.HasPrefix(string(f), `\`) {
			for _, fm := range flagMap {
				if strings.EqualFold(string(f), string(fm.flag)) {
					bits |= fm.bit
				}
			}
			continue
		}
		kw = append(kw, string(f))
	}
	return bits, kw
}

func hasKeyword(list []string, k string) bool {
	for _, x := range list {
		if strings.EqualFold(x, k) {
			return true
		}
	}
	return false
}

// Names go-imap v2 beta.8 does not define.
const (
	flagRecent        = imap.Flag(`\Recent`)
	codeExpungeIssued = imap.ResponseCode("EXPUNGEISSUED")
)
