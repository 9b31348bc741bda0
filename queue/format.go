package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
)

// Queue file format, version 1 (all integers big-endian):
//
//	header   16 bytes: "PKQF", version (1 byte), 3 zero bytes,
//	         content length (8 bytes)
//	content  the message as cleanup wrote it (CRLF lines)
//	records  kind (1 byte), payload length (4 bytes), payload,
//	         CRC-32C of kind, length and payload (4 bytes)
//
// The first record is the envelope ('E'): JSON of envelopeRecord, which
// carries the CRC-32C of the content, so a damaged envelope or content is
// detected. Status records ('S', JSON of statusRecord) are appended later,
// one per MarkRecipients or SetAttr call. A record that is cut short or
// fails its CRC ends the list: it is an append torn by a crash, never
// acknowledged, and the next append overwrites it.
const (
	fileMagic      = "PKQF"
	fileVersion    = 1
	headerSize     = 16
	recordOverhead = 1 + 4 + 4
	// maxRecord bounds a record's payload so a damaged length cannot make
	// the reader allocate gigabytes.
	maxRecord = 64 << 20

	kindEnvelope = 'E'
	kindStatus   = 'S'
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned (wrapped) for a queue file that fails its
// checksum or cannot be parsed.
var ErrCorrupt = errors.New("corrupt queue file")

// envelopeRecord is the payload of the 'E' record.
type envelopeRecord struct {
	Version    int              `json:"v"`
	ID         string           `json:"id"`
	ContentLen int64            `json:"content_len"`
	ContentCRC uint32           `json:"content_crc"`
	HeaderLen  int64            `json:"header_len"`
	BodyStart  int64            `json:"body_start"`
	Env        cleanup.Envelope `json:"env"`
}

// statusRecord is the payload of an 'S' record.
type statusRecord struct {
	At     time.Time         `json:"at"`
	Status []Status          `json:"status,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
}

func makeHeader(contentLen int64) []byte {
	h := make([]byte, headerSize)
	copy(h, fileMagic)
	h[4] = fileVersion
	binary.BigEndian.PutUint64(h[8:], uint64(contentLen))
	return h
}

func appendRecord(b []byte, kind byte, payload []byte) []byte {
	start := len(b)
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// parsedFile is what a queue file says.
type parsedFile struct {
	env      envelopeRecord
	status   []Status // latest per recipient, index-aligned with env.Env.Recipients
	attrs    map[string]string
	validEnd int64 // where the next record goes
}

// readRecord reads the record at off. It returns io.ErrUnexpectedEOF for a
// record cut short and errBadRecord for one that fails its CRC.
var errBadRecord = errors.New("record fails its checksum")

func readRecord(r io.ReaderAt, off, size int64) (kind byte, payload []byte, next int64, err error) {
	if size-off < recordOverhead {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	var hdr [5]byte
	if _, err := r.ReadAt(hdr[:], off); err != nil {
		return 0, nil, 0, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[1:]))
	if n > maxRecord {
		return 0, nil, 0, errBadRecord
	}
	if size-off-recordOverhead < n {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	buf := make([]byte, 5+n+4)
	if _, err := r.ReadAt(buf, off); err != nil {
		return 0, nil, 0, err
	}
	if crc32.Checksum(buf[:5+n], castagnoli) != binary.BigEndian.Uint32(buf[5+n:]) {
		return 0, nil, 0, errBadRecord
	}
	return hdr[0], buf[5 : 5+n], off + recordOverhead + n, nil
}

// parseFile reads a queue file of the given size. With verifyContent the
// content is read and checked against its CRC too; without, only the
// header and records are read.
func parseFile(r io.ReaderAt, size int64, verifyContent bool) (*parsedFile, error) {
	corrupt := func(format string, a ...any) (*parsedFile, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, a...)...)
	}
	if size < headerSize {
		return corrupt("%d bytes, shorter than the header", size)
	}
	var h [headerSize]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	if string(h[:4]) != fileMagic {
		return corrupt("bad magic %q", h[:4])
	}
	if h[4] != fileVersion {
		return corrupt("unknown version %d", h[4])
	}
	clen := binary.BigEndian.Uint64(h[8:])
	if clen > uint64(size-headerSize) {
		return corrupt("content length %d beyond the end of the file", clen)
	}
	off := headerSize + int64(clen)
	kind, payload, next, err := readRecord(r, off, size)
	if err != nil {
		return corrupt("envelope record: %v", err)
	}
	if kind != kindEnvelope {
		return corrupt("first record is %q, not the envelope", kind)
	}
	p := &parsedFile{}
	if err := json.Unmarshal(payload, &p.env); err != nil {
		return corrupt("envelope record: %v", err)
	}
	e := &p.env
	if e.Version != fileVersion || e.ContentLen != int64(clen) ||
		e.HeaderLen < 0 || e.BodyStart < e.HeaderLen || e.BodyStart > e.ContentLen {
		return corrupt("envelope record does not match the file")
	}
	if verifyContent {
		crc := crc32.New(castagnoli)
		if _, err := io.Copy(crc, io.NewSectionReader(r, headerSize, int64(clen))); err != nil {
			return nil, fmt.Errorf("reading the content: %w", err)
		}
		if crc.Sum32() != e.ContentCRC {
			return corrupt("content fails its checksum")
		}
	}
	p.status = make([]Status, len(e.Env.Recipients))
	for i := range p.status {
		p.status[i].Rcpt = i
	}
	for {
		p.validEnd = next
		kind, payload, n, err := readRecord(r, next, size)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errBadRecord) {
			break // a torn append: never acknowledged
		}
		if err != nil {
			return nil, fmt.Errorf("reading a status record: %w", err)
		}
		if kind != kindStatus {
			break
		}
		var sr statusRecord
		if err := json.Unmarshal(payload, &sr); err != nil {
			break
		}
		for _, s := range sr.Status {
			if s.Rcpt >= 0 && s.Rcpt < len(p.status) {
				p.status[s.Rcpt] = s
			}
		}
		for k, v := range sr.Attrs {
			if p.attrs == nil {
				p.attrs = map[string]string{}
			}
			if v == "" {
				delete(p.attrs, k)
			} else {
				p.attrs[k] = v
			}
		}
		next = n
	}
	return p, nil
}

// bodySplitter finds where the header section ends in content written in
// pieces: the first empty line (CRLF or bare LF).
type bodySplitter struct {
	pos       int64
	lineStart bool
	pendingCR bool
	found     bool
	headerLen int64
	bodyStart int64
}

func newBodySplitter() bodySplitter { return bodySplitter{lineStart: true} }

func (s *bodySplitter) write(p []byte) {
	if s.found {
		s.pos += int64(len(p))
		return
	}
	for i, b := range p {
		at := s.pos + int64(i)
		switch {
		case s.pendingCR && b == '\n':
			s.found, s.headerLen, s.bodyStart = true, at-1, at+1
		case s.pendingCR:
			s.pendingCR, s.lineStart = false, false
		case s.lineStart && b == '\r':
			s.pendingCR = true
		case s.lineStart && b == '\n':
			s.found, s.headerLen, s.bodyStart = true, at, at+1
		default:
			s.lineStart = b == '\n'
		}
		if s.found {
			break
		}
	}
	s.pos += int64(len(p))
}

// split returns the header length and body start for content of length n.
func (s *bodySplitter) split(n int64) (headerLen, bodyStart int64) {
	if !s.found {
		return n, n // no empty line: all header, as a message with no body
	}
	return s.headerLen, s.bodyStart
}
