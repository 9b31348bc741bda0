package queue

// The listings of Postfix's queue tools over the store: postqueue -p
// (mailq), postqueue -j and postcat -q. The formats are Postfix 3.7's
// with long queue IDs (enable_long_queue_ids = yes), compared with a
// private Postfix in admin_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// listedStates are the states postqueue lists, in Postfix's showq order
// (its maildrop is package pickup's; corrupt mail is never listed).
var listedStates = []State{Incoming, Active, Deferred, Hold}

// mailqHeader is the first line of postqueue -p with long queue IDs.
const mailqHeader = "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"

// Column layout of a postqueue -p entry with long IDs: the ID and its
// status mark in 17 columns, the size in 8, the arrival time in 19; the
// recipients start in column 47. A deferral reason is right-aligned so
// that it ends in column 78, or starts in column 0 when it is longer.
const (
	mailqRcptIndent  = 47
	mailqReasonWidth = 76
)

// adminEntry is one message as the listings see it.
type adminEntry struct {
	id    string
	state State
	msg   *Message
}

// walkListed reads every listed message in showq order (state, then
// creation order) and calls fn with it. Messages that vanish meanwhile
// (delivered, removed) are skipped; a damaged one is skipped too, as
// showq skips files it cannot read.
func (q *Queue) walkListed(ctx context.Context, fn func(adminEntry) error) error {
	for _, st := range listedStates {
		ents, err := q.List(st)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			m, err := q.Read(e.ID)
			if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
				continue
			}
			if err != nil {
				return err
			}
			err = fn(adminEntry{id: e.ID, state: m.State, msg: m})
			m.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// showqSender is the sender as showq prints it: the null sender is
// MAILER-DAEMON.
func showqSender(s string) string {
	if s == "" {
		return "MAILER-DAEMON"
	}
	return s
}

// listedRecipients are the recipients showq shows: those not yet
// delivered or bounced, each with its deferral reason if any.
func listedRecipients(m *Message) (addrs, reasons []string) {
	for i, r := range m.Envelope.Recipients {
		var st Status
		if i < len(m.Status) {
			st = m.Status[i]
		}
		if st.Outcome == Delivered || st.Outcome == Failed {
			continue
		}
		reason := ""
		if st.Outcome == Delayed {
			reason = st.Reason
		}
		addrs = append(addrs, r.Addr)
		reasons = append(reasons, reason)
	}
	return addrs, reasons
}

// Mailq writes the queue listing of postqueue -p (mailq): a header line,
// one block per message (queue ID marked '*' when active and '!' when
// held, content size, arrival time, sender, then each recipient still
// to be delivered, preceded by its deferral reason in parentheses when
// that differs from the one above), a blank line after each, and the
// total "-- N Kbytes in M Requests.", or "Mail queue is empty". Times
// are local, as Postfix prints them. The size is the content's in bytes
// with CRLF lines; Postfix prints the size of its content records, which
// is the same for lines under 128 bytes and one more per longer line.
func (q *Queue) Mailq(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriter(w)
	var total int64
	count := 0
	err := q.walkListed(ctx, func(e adminEntry) error {
		if count == 0 {
			bw.WriteString(mailqHeader)
		}
		count++
		total += e.msg.Size
		writeMailqEntry(bw, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: listing the queue: %w", err)
	}
	if count == 0 {
		bw.WriteString("Mail queue is empty\n")
	} else {
		plural := "s"
		if count == 1 {
			plural = ""
		}
		fmt.Fprintf(bw, "-- %d Kbytes in %d Request%s.\n", total/1024, count, plural)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("queue: writing the queue listing: %w", err)
	}
	return nil
}

func writeMailqEntry(bw *bufio.Writer, e adminEntry) {
	id := e.id
	switch e.state {
	case Active:
		id += "*"
	case Hold:
		id += "!"
	}
	arrival := e.msg.Envelope.Arrival.In(time.Local).Format("Mon Jan _2 15:04:05")
	fmt.Fprintf(bw, "%-17s %8d %s %s\n", id, e.msg.Size, arrival, showqSender(e.msg.Envelope.Sender))
	addrs, reasons := listedRecipients(e.msg)
	last := ""
	for i, a := range addrs {
		if r := reasons[i]; r != "" && r != last {
			pad := max(mailqReasonWidth-len(r), 0)
			fmt.Fprintf(bw, "%*s(%s)\n", pad, "", r)
			last = r
		}
		fmt.Fprintf(bw, "%*s%s\n", mailqRcptIndent, "", a)
	}
	bw.WriteByte('\n')
}

// MailqJSON writes the listing of postqueue -j: one JSON object per
// message and line, with the fields Postfix 3.7 writes (queue_name,
// queue_id, arrival_time in Unix seconds, message_size, forced_expire,
// sender, recipients with address and, when deferred, delay_reason).
func (q *Queue) MailqJSON(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriter(w)
	err := q.walkListed(ctx, func(e adminEntry) error {
		writeJSONEntry(bw, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: listing the queue: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("queue: writing the queue listing: %w", err)
	}
	return nil
}

// jsonString quotes s as a JSON string without Go's HTML escaping, which
// Postfix does not do.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// writeJSONEntry writes one object with Postfix's spacing (", " and ": "
// between items), which encoding/json does not produce.
func writeJSONEntry(bw *bufio.Writer, e adminEntry) {
	m := e.msg
	fmt.Fprintf(bw, `{"queue_name": %s, "queue_id": %s, "arrival_time": %d, "message_size": %d, "forced_expire": %t, "sender": %s, "recipients": [`,
		jsonString(string(e.state)), jsonString(e.id), m.Envelope.Arrival.Unix(), m.Size,
		m.Attrs[AttrForceExpire] != "", jsonString(showqSender(m.Envelope.Sender)))
	addrs, reasons := listedRecipients(m)
	for i, a := range addrs {
		if i > 0 {
			bw.WriteString(", ")
		}
		fmt.Fprintf(bw, `{"address": %s`, jsonString(a))
		if reasons[i] != "" {
			fmt.Fprintf(bw, `, "delay_reason": %s`, jsonString(reasons[i]))
		}
		bw.WriteByte('}')
	}
	bw.WriteString("]}\n")
}

// PostcatOptions choose what Postcat prints, as postcat's -e, -h and -b
// do; all false prints everything.
type PostcatOptions struct {
	Envelope bool // -e: the envelope records
	Header   bool // -h: the header section
	Body     bool // -b: the body
}

// Postcat writes message id as postcat -q does: with Envelope (or with
// no option) the envelope records under Postfix's section markers
// ("*** ENVELOPE RECORDS state/ID ***", "*** MESSAGE CONTENTS ...",
// "*** HEADER EXTRACTED ...", "*** MESSAGE FILE END ...", all four
// whatever else is printed, as postcat -e does); with Header the header
// section and with Body the empty line after it and the body, as queued
// but with LF line ends, as postcat prints them. The record names are Postfix's; the
// values are postkit's envelope, which is not record for record
// Postfix's.
func (q *Queue) Postcat(ctx context.Context, w io.Writer, id string, o PostcatOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m, err := q.Read(id)
	if err != nil {
		return fmt.Errorf("queue: postcat %s: %w", id, err)
	}
	defer m.Close()
	if !o.Envelope && !o.Header && !o.Body {
		o = PostcatOptions{Envelope: true, Header: true, Body: true}
	}
	bw := bufio.NewWriter(w)
	name := string(m.State) + "/" + m.ID
	if o.Envelope {
		fmt.Fprintf(bw, "*** ENVELOPE RECORDS %s ***\n", name)
		writeEnvelopeRecords(bw, m)
		fmt.Fprintf(bw, "*** MESSAGE CONTENTS %s ***\n", name)
	}
	if o.Header {
		if err := copyLF(bw, m.Header()); err != nil {
			return fmt.Errorf("queue: postcat %s: reading the header: %w", id, err)
		}
	}
	if o.Body {
		// postcat -b starts with the empty line that ends the header
		// section.
		bw.WriteByte('\n')
		if err := copyLF(bw, m.Body()); err != nil {
			return fmt.Errorf("queue: postcat %s: reading the body: %w", id, err)
		}
	}
	if o.Envelope {
		// What Postfix's cleanup extracts from the header (Return-Receipt-To,
		// Errors-To) postkit does not keep; the section stays empty.
		fmt.Fprintf(bw, "*** HEADER EXTRACTED %s ***\n", name)
		fmt.Fprintf(bw, "*** MESSAGE FILE END %s ***\n", name)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("queue: postcat %s: %w", id, err)
	}
	return nil
}

// postcatTime is the ctime-like format postcat prints times in.
const postcatTime = "Mon Jan _2 15:04:05 2006"

func writeEnvelopeRecords(bw *bufio.Writer, m *Message) {
	env := &m.Envelope
	rec := func(name, format string, args ...any) {
		fmt.Fprintf(bw, "%s: "+format+"\n", append([]any{name}, args...)...)
	}
	// Postfix's six fields: content size, offset of the content in the
	// file, recipient count, qmgr options, content length, SMTPUTF8 flags.
	utf8 := 0
	if env.SMTPUTF8 {
		utf8 = 1
	}
	rec("message_size", "%15d %15d %15d %15d %15d %15d", m.Size, headerSize, len(env.Recipients), 0, m.Size, utf8)
	rec("message_arrival_time", "%s", env.Arrival.In(time.Local).Format(postcatTime))
	if env.Filter != "" {
		rec("content_filter", "%s", env.Filter)
	}
	if env.Redirect != "" {
		rec("redirect_to", "%s", env.Redirect)
	}
	rec("sender", "%s", env.Sender)
	c := env.Client
	port := ""
	if c.Port > 0 {
		port = strconv.Itoa(c.Port)
	}
	for _, a := range [][2]string{{"log_client_name", c.Name}, {"log_client_address", c.Addr},
		{"log_client_port", port}, {"log_helo_name", c.Helo}, {"log_protocol_name", c.Proto},
		{"sasl_method", c.SASLMethod}, {"sasl_username", c.SASLUsername}, {"sasl_sender", c.SASLSender},
		{"dsn_envid", env.EnvID}, {"dsn_ret", env.Ret}, {"encoding", env.Body}} {
		if a[1] != "" {
			rec("named_attribute", "%s=%s", a[0], a[1])
		}
	}
	for i, r := range env.Recipients {
		if r.ORCPT != "" {
			rec("named_attribute", "dsn_orig_rcpt=%s", r.ORCPT)
		}
		if len(r.Notify) > 0 {
			rec("named_attribute", "dsn_notify=%s", strings.Join(r.Notify, ","))
		}
		if r.Original != "" {
			rec("original_recipient", "%s", r.Original)
		}
		// A recipient that is done is a done_recipient, as Postfix marks
		// it in the queue file.
		name := "recipient"
		if i < len(m.Status) && (m.Status[i].Outcome == Delivered || m.Status[i].Outcome == Failed) {
			name = "done_recipient"
		}
		rec(name, "%s", r.Addr)
	}
}

// copyLF copies r to w with CRLF line ends turned into LF.
func copyLF(w *bufio.Writer, r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if bytes.HasSuffix(line, []byte("\r\n")) {
				w.Write(line[:len(line)-2])
				w.WriteByte('\n')
			} else {
				w.Write(line)
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return err
		}
	}
}
