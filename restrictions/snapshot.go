package restrictions

import (
	"net/netip"
	"strings"
)

// Stage is the SMTP protocol stage a check is made for.
type Stage int

// The stages, in protocol order. Each has its restriction list:
// StageClient smtpd_client_restrictions, StageHelo smtpd_helo_restrictions,
// StageSender smtpd_sender_restrictions, StageRecipient
// smtpd_relay_restrictions and smtpd_recipient_restrictions, StageData
// smtpd_data_restrictions, StageEndOfData smtpd_end_of_data_restrictions,
// StageETRN smtpd_etrn_restrictions.
const (
	StageClient Stage = iota
	StageHelo
	StageSender
	StageRecipient
	StageData
	StageEndOfData
	StageETRN
)

var stageNames = [...]string{"client", "helo", "sender", "recipient", "data", "end-of-data", "etrn"}

func (s Stage) String() string {
	if s >= 0 && int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "stage?"
}

// NameStatus says how the client's host name was found.
type NameStatus int

// Name lookup results, as smtpd records them for its client (smtpd_peer.c).
const (
	// NameOK: the name was found (for ClientName: and verified by a
	// forward lookup that returns the client address).
	NameOK NameStatus = iota
	// NameTempFail: the lookup failed temporarily; the name is "unknown".
	NameTempFail
	// NamePermFail: no name exists; the name is "unknown".
	NamePermFail
	// NameForged: the forward lookup of the PTR name did not return the
	// client address (ClientName only); the name is "unknown".
	NameForged
)

// Snapshot is what the SMTP server knows when it asks for a decision. Empty
// strings mean "not known yet": an empty Helo means no HELO/EHLO was given.
// The sender is taken as given (the null sender is "") at the sender stage
// and after it, except for ETRN.
type Snapshot struct {
	ClientAddr netip.Addr // the client's IP address
	ClientPort int
	// ClientName is the verified client host name; "" or "unknown" when
	// there is none, with ClientNameStatus saying why.
	ClientName       string
	ClientNameStatus NameStatus
	// ReverseName is the name the PTR record gives, not verified.
	ReverseName       string
	ReverseNameStatus NameStatus

	ServerAddr netip.Addr // the server address the client connected to
	ServerPort int

	Helo  string // the HELO/EHLO argument
	ESMTP bool   // EHLO rather than HELO (protocol_name ESMTP)

	TLS *TLSInfo // nil for a plaintext session

	SASLMethod   string // the SASL mechanism used; "" when not authenticated
	SASLUsername string // the SASL login name; "" when not authenticated
	SASLSender   string // the MAIL FROM AUTH= parameter

	Sender    string // MAIL FROM address without <>; "" is the null sender
	Recipient string // RCPT TO address without <> (StageRecipient), or the only recipient at DATA

	// RecipientCount is the number of recipients accepted so far: at RCPT,
	// before this one; at DATA and end of data, in all.
	RecipientCount int
	Size           int64  // SIZE= at MAIL, the real size at end of data
	ETRNDomain     string // the ETRN argument
	QueueID        string // the queue ID, once one is assigned
	Instance       string // an ID of this transaction, for policy servers
	Protocol       string // protocol_name override (e.g. "LMTP"); default from ESMTP
	SMTPUTF8       bool   // the client asked for SMTPUTF8 (MAIL FROM SMTPUTF8)
	// IllegalPipelining: the client sent commands ahead of time without
	// having negotiated PIPELINING (for reject_unauth_pipelining).
	IllegalPipelining bool
	Stress            bool   // the server is under stress (policy attribute stress=yes)
	Verb              string // the command for logs and policy: "VRFY" for VRFY; default from the stage

	// Txn carries state from one stage of a session to the next
	// (defer_if_permit, DISCARD, HOLD). Copy Decision.Txn back here
	// after each check; Session does that for you.
	Txn Txn
}

// TLSInfo describes the TLS layer of a session, for permit_tls_clientcerts,
// check_ccert_access and policy attributes.
type TLSInfo struct {
	Protocol   string // "TLSv1.3"
	Cipher     string // cipher suite name
	CipherBits int
	// PeerCertVerified: the client sent a certificate that chains to a
	// trusted CA (permit_tls_all_clientcerts).
	PeerCertVerified bool
	// CertFingerprint and PubkeyFingerprint are the client certificate's
	// and public key's fingerprints in smtpd_tls_fingerprint_digest, as
	// colon-separated upper-case hex; "" when there is no certificate.
	CertFingerprint   string
	PubkeyFingerprint string
	SubjectCN         string
	IssuerCN          string
}

// clientName returns the verified name or "unknown".
func (s *Snapshot) clientName() string {
	if s.ClientName == "" {
		return "unknown"
	}
	return s.ClientName
}

func (s *Snapshot) reverseName() string {
	if s.ReverseName == "" {
		return "unknown"
	}
	return s.ReverseName
}

func (s *Snapshot) clientAddr() string {
	if !s.ClientAddr.IsValid() {
		return "unknown"
	}
	return s.ClientAddr.Unmap().String()
}

// namaddr is the "name[addr]" form of the client used in replies and logs.
func (s *Snapshot) namaddr() string {
	return s.clientName() + "[" + s.clientAddr() + "]"
}

// hasSender reports whether MAIL FROM has been given at stage st.
func hasSender(st Stage) bool {
	return st >= StageSender && st != StageETRN
}

// command returns the SMTP command a stage is evaluated at, as Postfix
// logs it and reports it to policy servers (protocol_state).
func (s *Snapshot) command(st Stage) string {
	if s.Verb != "" {
		return strings.ToUpper(s.Verb)
	}
	switch st {
	case StageClient:
		return "CONNECT"
	case StageHelo:
		if s.ESMTP {
			return "EHLO"
		}
		return "HELO"
	case StageSender:
		return "MAIL"
	case StageRecipient:
		return "RCPT"
	case StageData:
		return "DATA"
	case StageEndOfData:
		return "END-OF-MESSAGE"
	case StageETRN:
		return "ETRN"
	}
	return ""
}

func (s *Snapshot) protocol() string {
	if s.Protocol != "" {
		return s.Protocol
	}
	if s.ESMTP {
		return "ESMTP"
	}
	return "SMTP"
}
