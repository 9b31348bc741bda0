package restrictions

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"fmt"
	"hash"
	"strings"
)

// TLSInfoFrom describes a TLS connection for a Snapshot. digest is
// smtpd_tls_fingerprint_digest ("sha256", the default at compatibility
// level 3.6; "sha1", "md5", "sha512" are also accepted). verified says
// whether the client certificate chains to a trusted CA (the server's
// tls.Config decides; Go reports it in cs.VerifiedChains).
func TLSInfoFrom(cs *tls.ConnectionState, digest string) (*TLSInfo, error) {
	if cs == nil {
		return nil, nil
	}
	info := &TLSInfo{
		Protocol:   tlsVersionName(cs.Version),
		Cipher:     tls.CipherSuiteName(cs.CipherSuite),
		CipherBits: cipherBits(cs.CipherSuite),
	}
	if len(cs.PeerCertificates) == 0 {
		return info, nil
	}
	newHash, err := fingerprintHash(digest)
	if err != nil {
		return nil, err
	}
	cert := cs.PeerCertificates[0]
	info.CertFingerprint = Fingerprint(newHash, cert.Raw)
	info.PubkeyFingerprint = Fingerprint(newHash, cert.RawSubjectPublicKeyInfo)
	info.SubjectCN = cert.Subject.CommonName
	info.IssuerCN = cert.Issuer.CommonName
	info.PeerCertVerified = len(cs.VerifiedChains) > 0
	return info, nil
}

func fingerprintHash(digest string) (func() hash.Hash, error) {
	switch strings.ToLower(digest) {
	case "", "sha256":
		return sha256.New, nil
	case "sha1":
		return sha1.New, nil
	case "md5":
		return md5.New, nil
	case "sha512":
		return sha512.New, nil
	}
	return nil, fmt.Errorf("restrictions: unsupported smtpd_tls_fingerprint_digest %q", digest)
}

// Fingerprint formats the digest of data as Postfix writes fingerprints:
// upper-case hex bytes separated by colons.
func Fingerprint(newHash func() hash.Hash, data []byte) string {
	h := newHash()
	h.Write(data)
	sum := h.Sum(nil)
	const hexdigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(sum)*3)
	for i, c := range sum {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexdigits[c>>4], hexdigits[c&15])
	}
	return string(b)
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return ""
}

// cipherBits is the symmetric key size of a suite, as Postfix logs it
// ("256/256 bits").
func cipherBits(id uint16) int {
	name := tls.CipherSuiteName(id)
	switch {
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return 256
	case strings.Contains(name, "AES_128"):
		return 128
	case strings.Contains(name, "3DES"):
		return 168
	}
	return 0
}
