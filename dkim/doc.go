// Package dkim signs outgoing mail and verifies incoming mail with
// DomainKeys Identified Mail (RFC 6376), the job opendkim does beside
// Postfix as a milter. It wraps github.com/emersion/go-msgauth's dkim
// package with what an MTA needs around it: a key table per sender domain
// (from a postkit lookup table or a Go function), a header list chosen per
// message with From oversigned, and verification results written as an
// RFC 8601 Authentication-Results header value.
//
// Content is CRLF lines as the SMTP server delivers them (dot-stuffing
// removed).
//
// Signing: NewSigner with a KeyFunc (or NewMapSigner with a table whose
// values are opendkim KeyTable-style "domain:selector:/path/key.pem"),
// then Sign per message; it returns the DKIM-Signature field to prepend.
// Verifying: Verifier (or the Verify function) checks every signature with
// a TXT lookup (resolver.Resolver's LookupTXT fits) and gives per-signature
// Results or the Authentication-Results value with dkim=pass, fail,
// neutral, temperror, permerror or none.
//
// Interoperability is tested against OpenDKIM (as a signing and a
// verifying milter, and opendkim-testmsg) and dkimpy (python3-dkim).
// rsa-sha1 signatures are permerror (RFC 8301).
package dkim
