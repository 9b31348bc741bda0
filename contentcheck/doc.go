// Package contentcheck is Postfix cleanup's content inspection:
// header_checks, mime_header_checks, nested_header_checks and
// body_checks, and the MIME walk that decides which table sees which line.
//
// A Walker is an io.Writer for one message. It splits the message into
// logical headers and body lines as Postfix's cleanup(8) does, follows
// multipart boundaries and message/rfc822 parts without decoding
// anything, looks each header and body line up in the configured tables,
// carries out the line actions (PREPEND, REPLACE, IGNORE, STRIP, WARN,
// INFO) on the message it writes out, and collects the message-level ones
// (REJECT, DISCARD, HOLD, FILTER, REDIRECT, BCC) in a Verdict. It streams:
// it holds one logical header and one line piece, never the message, and
// it writes every byte it does not change as it was received (DKIM
// signatures survive), which is why it does not use go-message.
//
// # What Postfix does, and so does the Walker
//
// Keys. A header is looked up as one logical header: name, colon, value,
// and every continuation line joined with "\n", without the last line
// break ("Subject: a\n b"); blanks between the name and the colon are
// removed. A body line is looked up without its line break; an empty line
// never is. Stray CR bytes inside a line become spaces, in the key and in
// the stored message (cleanup_replace_stray_cr_lf = yes).
//
// Which table (cleanup_message.c): the primary headers go to
// header_checks; MIME headers (MIME-Version, Content-Type,
// Content-Transfer-Encoding, Content-Disposition, Content-Description,
// Content-ID) anywhere, and all headers after a multipart boundary, go to
// mime_header_checks; the other headers of a message/rfc822 part go to
// nested_header_checks; everything else, boundary lines and preambles
// included, goes to body_checks. A class whose table is nil is not
// inspected.
//
// The MIME walk (mime_state.c): Content-Type text/*, message/rfc822 (and
// message/global), message/partial, message/external-body and multipart/*
// with every boundary= parameter; multipart/digest parts default to
// message/rfc822. A line "--boundary" of any enclosing level ends the
// inner levels; "--boundary--" ends that level too. Text after the
// boundary is ignored. A line in a header block that is neither a header
// nor a continuation ends the block: in the primary headers the Walker
// inserts the missing blank line, in a part it does not.
//
// Actions (header_checks(5)): the first matching rule decides, one action
// per line. REJECT [text] rejects the message with 550 and the text's
// RFC 3463 code (default 5.7.1 "message content rejected"), or defers it
// with 451 when the code is 4.x.x. DISCARD, REJECT, REDIRECT and PASS end
// all further inspection of the message; HOLD (only the first), FILTER
// (the last wins, needs transport:destination), BCC (they accumulate, need
// an '@'), WARN and INFO do not. PREPEND writes a line before the current
// one (in header tables it must be "name: value"); the added line is
// never inspected and never reaches Hooks.Header. REPLACE replaces the
// line (a header replacement does reach Hooks.Header). IGNORE deletes it,
// STRIP deletes it and logs it. DUNNO and OK do nothing; any other word
// draws "warning: unknown command in header_checks map". A table lookup
// error defers the message (451 4.3.0).
//
// Logs go to Config.Logger in Postfix's layout, for example
// "QUEUEID: reject: header Subject: buy now from host[192.0.2.1];
// from=<s> to=<r> proto=ESMTP helo=<h>: 5.7.1 message content rejected",
// with the queue ID also as the attribute queue_id. Warnings are logged at
// level Warn with Postfix's "warning: " prefix.
//
// # Parameters
//
//	header_checks                 Config.HeaderChecks (default: none)
//	mime_header_checks            Config.MIMEHeaderChecks ($header_checks in main.cf)
//	nested_header_checks          Config.NestedHeaderChecks ($header_checks in main.cf)
//	body_checks                   Config.BodyChecks (default: none)
//	header_size_limit             102400: a logical header stops growing at this size
//	                              (later continuation lines are dropped); what is
//	                              stored is cut to the limit, at a line boundary when
//	                              that keeps 90% of it, else mid-line; silently
//	line_length_limit             2048: longer lines are handled (and looked up) in
//	                              pieces of this size
//	body_checks_size_limit        51200: per MIME body segment, only lines that start
//	                              before this offset are looked up (0 in main.cf: all)
//	mime_nesting_limit            100: deeper multipart levels are not followed; with
//	                              any header check or strict test on, the message is
//	                              rejected: 550 5.6.0 MIME nesting exceeds safety limit
//	mime_boundary_length_limit    2048: longer boundaries are compared by this prefix
//	disable_mime_input_processing no: when yes, all after the headers is body
//	strict_7bit_headers           no: 550 5.6.0 improper use of 8-bit data in message header
//	strict_8bitmime_body          no: 550 5.6.0 improper use of 8-bit data in message body
//	                              (8-bit bytes in a part that is, or defaults to, 7bit)
//	strict_8bitmime               no: both of the above
//	strict_mime_encoding_domain   no: 550 5.6.0 invalid message/* or multipart/* encoding domain
//
// The strict tests and the nesting reject apply only when MIME processing
// is on. A MIME error never overrides a REJECT from a table; when several
// MIME errors occur, the reply names the most serious, in the order above.
//
// # Differences from Postfix
//
// cleanup_replace_stray_cr_lf is always on. Lines end at LF, with or
// without CR before it (Postfix's SMTP server ends them the same way), so
// no stray LF remains inside a line. The regexp: and pcre: tables of
// package maps answer "not found" for a key that is not valid UTF-8,
// where Postfix matches it as bytes: a header or body line with such
// bytes is not matched by those rules.
//
// Lines are taken to end at LF, with or without CR before it; what the
// Walker writes keeps each line's own terminator. Lines it adds (PREPEND,
// REPLACE, the missing blank line) end in CRLF.
package contentcheck
