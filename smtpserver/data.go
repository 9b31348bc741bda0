package smtpserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/restrictions"
)

// bdatState is a BDAT transfer in progress (RFC 3030).
type bdatState struct {
	w      *bufio.Writer
	size   int64 // for message_size_limit, with the headers we add
	bytes  int64 // the client's bytes so far
	failed bool  // a chunk was refused; the rest is discarded
	// last is the client's last byte so far, when bytes > 0.
	last byte
}

// dataStart runs the DATA restrictions and writes the PREPEND headers
// and Received: into the message. It returns false after replying.
func (s *session) dataStart(verb string) (bool, error) {
	if len(s.env.Recipients) == 1 {
		s.snap.Recipient = s.env.Recipients[0].Addr
	} else {
		s.snap.Recipient = ""
	}
	s.snap.RecipientCount = len(s.env.Recipients)
	if s.cfg.Checker != nil {
		d := s.check(restrictions.StageData, verb)
		if !d.Accepted() {
			return false, s.replyDecision(d)
		}
	}
	if err := s.ensureMsg(); err != nil {
		s.reply(handoffReply(err).String())
		return false, nil
	}
	return true, nil
}

// writeHeaders writes the PREPEND headers and Received: and returns
// their size, which counts toward message_size_limit: Postfix's limit
// applies to the queue file content, our Received: header included.
func (s *session) writeHeaders(w io.Writer) int64 {
	var n int64
	for _, p := range s.env.Effects.Prepend {
		m, _ := io.WriteString(w, p+"\r\n")
		n += int64(m)
	}
	m, _ := io.WriteString(w, s.receivedHeader())
	return n + int64(m)
}

// messageWriter returns the session's buffered writer, pointed at the
// current message.
func (s *session) messageWriter() *bufio.Writer {
	if s.msgBuf == nil {
		s.msgBuf = msgBufs.Get().(*bufio.Writer)
	}
	s.msgBuf.Reset(s.msg)
	return s.msgBuf
}

// msgBufs holds the 32 KiB message-stream buffers between sessions: a
// client that sends one message per connection would otherwise cost a
// large allocation per message.
var msgBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32*1024) }}

// releaseMsgBuf returns the session's message buffer to msgBufs when the
// session ends.
func (s *session) releaseMsgBuf() {
	if s.msgBuf != nil {
		s.msgBuf.Reset(nil)
		msgBufs.Put(s.msgBuf)
		s.msgBuf = nil
	}
}

func (s *session) cmdData(arg string) (bool, error) {
	if !s.inMail {
		s.reply("503 5.5.1 Error: need RCPT command")
		return false, nil
	}
	if len(s.env.Recipients) == 0 {
		s.reply("554 5.5.1 Error: no valid recipients")
		return false, nil
	}
	if s.bdat != nil {
		s.reply("503 5.5.1 Error: DATA after BDAT")
		return false, nil
	}
	if arg != "" {
		s.reply("501 5.5.4 Syntax: DATA")
		return false, nil
	}
	if ok, err := s.dataStart("DATA"); !ok {
		return false, err
	}
	s.reply("354 End data with <CR><LF>.<CR><LF>")
	s.bw.Flush()
	w := s.messageWriter()
	hdr := s.writeHeaders(w)
	size, tooBig, bare, err := s.readBody(w, hdr)
	s.dataBytes = size - hdr
	if err != nil {
		s.abortTxn()
		if errors.Is(err, errTimeout) {
			s.reply(fmt.Sprintf("421 4.4.2 %s Error: timeout exceeded", s.cfg.Hostname))
			s.logf("timeout after DATA (%d bytes) from %s", s.dataBytes, s.namaddr)
		} else {
			s.logf("lost connection after DATA (%d bytes) from %s", s.dataBytes, s.namaddr)
		}
		return false, errClose
	}
	if bare && s.cfg.ForbidBareNewline == BareNewlineReject && !s.bareExcluded() {
		// Postfix 3.7.11 reads the whole message, refuses it and goes on.
		s.abortTxn()
		s.reply(s.bareNewlineReply())
		return false, nil
	}
	return s.finish(w, size, tooBig, "")
}

// finish ends a DATA or BDAT transfer: size check, end-of-data
// restrictions, the hand-off, and the reply.
func (s *session) finish(w *bufio.Writer, size int64, tooBig bool, okExtra string) (bool, error) {
	if tooBig {
		s.abortTxn()
		s.reply("552 5.3.4 Error: message file too big")
		return false, nil
	}
	if err := w.Flush(); err != nil {
		s.logf("warning: %s: writing the queue file: %v", s.namaddr, err)
		s.abortTxn()
		s.reply(handoffReply(err).String())
		return false, nil
	}
	s.snap.Size = size
	if s.cfg.Checker != nil {
		d := s.check(restrictions.StageEndOfData, "END-OF-MESSAGE")
		if !d.Accepted() {
			// Postfix 3.7 drops the message but keeps the transaction:
			// a next MAIL is "nested", a next DATA uses the same sender
			// and recipients.
			s.msg.Abort()
			s.msg = nil
			s.snap.QueueID = ""
			s.bdat = nil
			return false, s.replyDecision(d)
		}
	}
	s.env.Effects.Hold = s.env.Effects.Hold || s.snap.Txn.Hold
	s.env.Effects.Discard = s.env.Effects.Discard || s.snap.Txn.Discard
	s.env.Session = s.snapshot()
	id := s.msg.ID()
	if s.cfg.Role == RoleLMTP {
		return s.finishLMTP(id)
	}
	err := s.msg.Commit(s.ctx, s.env)
	s.msg = nil
	if err != nil {
		s.logf("warning: %s: committing %s: %v", s.namaddr, id, err)
		s.abortTxn()
		s.reply(handoffReply(err).String())
		return false, nil
	}
	s.abortTxn()
	s.errorCount = 0
	s.reply("250 2.0.0 Ok: " + okExtra + "queued as " + id)
	return true, nil
}

// finishLMTP gives one reply per accepted recipient (RFC 2033 §4.2).
func (s *session) finishLMTP(id string) (bool, error) {
	n := len(s.env.Recipients)
	errs := make([]error, n)
	if rs, ok := s.msg.(RecipientStatuser); ok {
		got := rs.CommitRecipients(s.ctx, s.env)
		copy(errs, got)
	} else if err := s.msg.Commit(s.ctx, s.env); err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	s.msg = nil
	okAll := true
	for i, err := range errs {
		// Each reply names its recipient, as RFC 2033's example and
		// Dovecot's LMTP do, so a client's log says whose it is.
		who := "<" + address.Quote(s.env.Recipients[i].Addr) + ">"
		if err != nil {
			okAll = false
			r := handoffReply(err)
			r.Text = strings.TrimSpace(who + " " + r.Text)
			s.reply(r.String())
		} else {
			s.reply("250 2.0.0 " + who + " Ok: queued as " + id)
		}
	}
	s.abortTxn()
	return okAll, nil
}

// readBody copies the DATA text into w until the CRLF "." CRLF line,
// removing dot-stuffing (RFC 5321 §4.5.2) and writing CRLF line ends.
// The end is recognised only after a CRLF-terminated line: "\n.\n",
// "\r.\r\n", "\n.\r\n" and the other SMTP-smuggling endings never end the
// message. Lines of any length are accepted. Once the size limit is
// passed the rest is read and dropped.
func (s *session) readBody(w io.Writer, start int64) (size int64, tooBig, bare bool, err error) {
	limit := s.cfg.MessageSizeLimit
	size = start
	atStart, prevCRLF, pendingCR := true, true, false
	write := func(b []byte) {
		if tooBig {
			return
		}
		size += int64(len(b))
		if limit > 0 && size > limit {
			tooBig = true
			return
		}
		w.Write(b)
	}
	s.readTimeout = s.cfg.DataIdleTimeout
	defer func() { s.readTimeout = s.cfg.Timeout }()
	for {
		chunk, rerr := s.br.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull {
			if pendingCR {
				write([]byte{'\r'})
				pendingCR = false
			}
			if atStart && len(chunk) > 0 && chunk[0] == '.' {
				chunk = chunk[1:]
			}
			if n := len(chunk); n > 0 && chunk[n-1] == '\r' {
				chunk, pendingCR = chunk[:n-1], true
			}
			write(chunk)
			atStart = false
			continue
		}
		if rerr != nil {
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() {
				return size, tooBig, bare, errTimeout
			}
			return size, tooBig, bare, errLost
		}
		content := chunk[:len(chunk)-1]
		crlf := false
		if n := len(content); n > 0 && content[n-1] == '\r' {
			content, crlf = content[:n-1], true
		} else if n == 0 && pendingCR {
			crlf = true
		}
		if pendingCR && !crlf {
			write([]byte{'\r'})
		}
		pendingCR = false
		if atStart && crlf && prevCRLF && len(content) == 1 && content[0] == '.' {
			return size, tooBig, bare, nil
		}
		if !crlf {
			bare = true
		}
		if atStart && len(content) > 0 && content[0] == '.' {
			content = content[1:]
		}
		write(content)
		write([]byte{'\r', '\n'})
		atStart, prevCRLF = true, crlf
	}
}

func (s *session) cmdBdat(arg string) (bool, error) {
	f := strings.Fields(arg)
	var n int64
	var err error
	if len(f) >= 1 {
		n, err = strconv.ParseInt(f[0], 10, 64)
	}
	if len(f) < 1 || len(f) > 2 || !isDigits(f[0]) || err != nil || (len(f) == 2 && !strings.EqualFold(f[1], "LAST")) {
		// The chunk size is unknown, so the session cannot go on.
		s.reply("521 5.5.4 Syntax: BDAT count [LAST]")
		return false, errClose
	}
	last := len(f) == 2
	end := func() {
		if last {
			s.abortTxn()
		}
	}
	if s.bdat == nil {
		// The first chunk: the transfer exists from now on, even when it
		// fails, and later MAIL/RCPT/DATA are refused until LAST or RSET.
		s.bdat = &bdatState{}
		fail := ""
		switch {
		case !s.inMail:
			fail = "503 5.5.1 Error: need RCPT command"
		case len(s.env.Recipients) == 0:
			fail = "554 5.5.1 Error: no valid recipients"
		}
		ok := fail == ""
		if ok {
			if ok, err = s.dataStart("BDAT"); err != nil {
				return false, err
			}
		}
		if !ok {
			s.bdat.failed = true
			if err := s.discard(n); err != nil {
				return false, err
			}
			if fail != "" {
				s.reply(fail)
			}
			end()
			return false, nil
		}
		s.bdat.w = s.messageWriter()
		s.bdat.size = s.writeHeaders(s.bdat.w)
	} else if s.bdat.failed {
		if err := s.discard(n); err != nil {
			return false, err
		}
		s.reply(fmt.Sprintf("551 5.0.0 Discarded %d bytes after earlier error", n))
		end()
		return false, nil
	}
	b := s.bdat
	limit := s.cfg.MessageSizeLimit
	var dst io.Writer = b.w
	tooBig := limit > 0 && b.size+n > limit
	if tooBig {
		dst = io.Discard
	}
	got, err := s.copyChunk(dst, n, &b.last)
	b.size += got
	b.bytes += got
	s.dataBytes = b.bytes
	if err != nil {
		s.abortTxn()
		if errors.Is(err, errTimeout) {
			s.reply(fmt.Sprintf("421 4.4.2 %s Error: timeout exceeded", s.cfg.Hostname))
			s.logf("timeout after BDAT (%d bytes) from %s", b.bytes, s.namaddr)
		} else {
			s.logf("lost connection after BDAT (%d bytes) from %s", b.bytes, s.namaddr)
		}
		return false, errClose
	}
	if tooBig {
		b.failed = true
		s.reply("552 5.3.4 Error: message file too big")
		end()
		return false, nil
	}
	if !last {
		s.reply(fmt.Sprintf("250 2.0.0 Ok: %d bytes", b.bytes))
		return true, nil
	}
	if b.bytes > 0 && b.last != '\n' {
		// A message ends with a line end: Postfix adds CRLF after a
		// last chunk without one, and counts it in the reply (seen
		// with Postfix 3.7.11: "BDAT 5 LAST" of "hello" is "7 bytes").
		b.w.WriteString("\r\n")
		b.bytes += 2
		b.size += 2
	}
	return s.finish(b.w, b.size, false, fmt.Sprintf("%d bytes ", b.bytes))
}

// copyChunk copies n bytes of a BDAT chunk with the idle timeout per read;
// *last gets the chunk's last byte.
func (s *session) copyChunk(w io.Writer, n int64, last *byte) (int64, error) {
	var done int64
	buf := make([]byte, 32*1024)
	s.readTimeout = s.cfg.DataIdleTimeout
	defer func() { s.readTimeout = s.cfg.Timeout }()
	for done < n {
		m, err := s.br.Read(buf[:min(int64(len(buf)), n-done)])
		if m > 0 {
			*last = buf[m-1]
			w.Write(buf[:m])
			done += int64(m)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return done, errTimeout
			}
			return done, errLost
		}
	}
	return done, nil
}

func (s *session) discard(n int64) error {
	var last byte
	_, err := s.copyChunk(io.Discard, n, &last)
	if err != nil {
		if errors.Is(err, errTimeout) {
			s.reply(fmt.Sprintf("421 4.4.2 %s Error: timeout exceeded", s.cfg.Hostname))
		}
		return errClose
	}
	return nil
}
