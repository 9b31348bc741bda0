package milter

import (
	"fmt"
	"io"
	"strings"

	"github.com/postkit-mail/postkit/restrictions"
)

// ModKind says what a modification does.
type ModKind int

// The modification actions a milter may send at end of message.
const (
	AddHeader       ModKind = iota + 1 // SMFIR_ADDHEADER: append a header
	InsertHeader                       // SMFIR_INSHEADER: insert at a position
	ChangeHeader                       // SMFIR_CHGHEADER with a value
	DeleteHeader                       // SMFIR_CHGHEADER with an empty value
	AddRecipient                       // SMFIR_ADDRCPT, SMFIR_ADDRCPT_PAR
	DeleteRecipient                    // SMFIR_DELRCPT
	ChangeSender                       // SMFIR_CHGFROM
	ReplaceBody                        // SMFIR_REPLBODY (all chunks of one milter joined)
)

var modNames = [...]string{"", "add header", "insert header", "change header", "delete header",
	"add recipient", "delete recipient", "change sender", "replace body"}

func (k ModKind) String() string {
	if k > 0 && int(k) < len(modNames) {
		return modNames[k]
	}
	return fmt.Sprintf("ModKind(%d)", int(k))
}

// Mod is one modification a milter asked for.
type Mod struct {
	Kind   ModKind
	Milter string // the milter's Spec.Name, for logs
	// Headers: Name as the milter sent it and Value as it goes after the
	// colon: Postfix puts a space before the milter's text unless the
	// milter negotiated SMFIP_HDR_LEADSPC (then the text is used as sent),
	// and Value holds that space. Folded lines are separated by "\n" or
	// "\r\n". Index: for ChangeHeader and DeleteHeader
	// the 1-based occurrence among headers of that name; for InsertHeader
	// the 0-based position among all headers.
	Name, Value string
	Index       int
	// Recipients and sender: the address in postkit's internal form (angle
	// brackets removed, local part unquoted; "" is the null sender) and the
	// ESMTP parameters that came with it.
	Addr string
	Args []string
	// ReplaceBody: the new body, CRLF lines.
	Body []byte
}

// RecipientReject is a recipient a milter rejected at the RCPT stage.
type RecipientReject struct {
	Addr   string
	Reply  restrictions.Reply
	Milter string
}

// Result is what the milters decided about one message.
type Result struct {
	// Reject is set when a milter rejected (5xx) or deferred (4xx) the
	// message, with the milter's reply or Postfix's wording when it gave
	// none ("550 5.7.1 Command rejected", "451 4.7.1 Service unavailable -
	// try again later"); when milter_default_action is reject or tempfail
	// and a milter failed ("550 5.5.0 Service unavailable" or "451 4.7.1
	// ..." for a connection that failed or timed out, "451 4.3.5 Server
	// configuration problem - try again later" for a protocol error); and
	// when every recipient was rejected. Multi-line replies have their
	// lines in Text separated by "\n".
	Reject *restrictions.Reply
	// Discard: a milter asked to accept the message and throw it away.
	Discard bool
	// Hold: a milter quarantined the message (SMFIR_QUARANTINE, with its
	// reason in HoldReason) or failed with milter_default_action =
	// quarantine.
	Hold       bool
	HoldReason string
	// Stage and Milter say where and by whom Reject or Discard was
	// decided, for the "milter-reject: END-OF-MESSAGE" log line: CONNECT,
	// EHLO, MAIL, RCPT, DATA, HEADER, END-OF-HEADERS, BODY or
	// END-OF-MESSAGE.
	Stage, Milter string
	// Mods are the modifications, in the order the milters sent them.
	// Content changes are already reflected in what later milters saw.
	Mods []Mod
	// RejectedRecipients are recipients a milter rejected at RCPT: the
	// message goes on without them (Postfix would have refused them in the
	// SMTP dialogue).
	RejectedRecipients []RecipientReject
}

// Apply writes msg (the CRLF content Run was given) to out with the header
// and body modifications applied in order, the way Postfix's cleanup applies
// them. Recipient and sender changes are not part of the content: see
// Envelope.
func (r *Result) Apply(msg io.Reader, out io.Writer) error {
	m, err := readMessage(msg)
	if err != nil {
		return err
	}
	for _, mod := range r.Mods {
		m.apply(mod)
	}
	if err := m.writeTo(out); err != nil {
		return fmt.Errorf("milter: writing the modified message: %w", err)
	}
	return nil
}

// Changed reports whether Apply would change the content.
func (r *Result) Changed() bool {
	for _, mod := range r.Mods {
		switch mod.Kind {
		case AddHeader, InsertHeader, ChangeHeader, DeleteHeader, ReplaceBody:
			return true
		}
	}
	return false
}

// Envelope returns the sender and recipients after the milters' changes:
// recipients rejected at RCPT are dropped, then ChangeSender, AddRecipient
// and DeleteRecipient are applied in order, as Postfix's cleanup does
// (checked against Postfix 3.7's queue files): a deleted recipient must
// match exactly, case included; a recipient added twice by milters is added
// once, but one that was already an envelope recipient is added again.
func (r *Result) Envelope(sender string, rcpts []string) (string, []string) {
	out := make([]string, 0, len(rcpts))
	for _, rc := range rcpts {
		if !r.rejected(rc) {
			out = append(out, rc)
		}
	}
	added := map[string]bool{}
	for _, mod := range r.Mods {
		switch mod.Kind {
		case ChangeSender:
			sender = mod.Addr
		case AddRecipient:
			if !added[mod.Addr] {
				added[mod.Addr] = true
				out = append(out, mod.Addr)
			}
		case DeleteRecipient:
			kept := out[:0]
			for _, rc := range out {
				if rc != mod.Addr {
					kept = append(kept, rc)
				}
			}
			out = kept
		}
	}
	return sender, out
}

func (r *Result) rejected(addr string) bool {
	for _, rr := range r.RejectedRecipients {
		if strings.EqualFold(rr.Addr, addr) {
			return true
		}
	}
	return false
}
