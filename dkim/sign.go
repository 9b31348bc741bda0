package dkim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/postkit-mail/postkit/maps"
)

// Key is a signing key: the signing domain (d=), the selector (s=) and the
// private key, RSA (at least 1024 bits; 2048 is usual) or Ed25519 (RFC 8463).
type Key struct {
	Domain   string
	Selector string
	Signer   crypto.Signer
}

// KeyFunc finds the key for a sender: addr is the sender address and domain
// its domain. It returns nil and no error when the sender is not to be
// signed.
type KeyFunc func(ctx context.Context, addr, domain string) (*Key, error)

// DefaultHeaders are the header fields signed when present (RFC 6376
// section 5.4.1's list, as opendkim signs by default).
var DefaultHeaders = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
	"In-Reply-To", "References", "Message-ID", "Sender",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post",
	"List-Owner", "List-Archive",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-ID", "Content-Description",
}

// Options tune the signatures. The zero value gives relaxed/relaxed
// canonicalization, DefaultHeaders and From oversigned.
type Options struct {
	// Headers are the header fields to sign, each as many times as it
	// occurs in the message. Nil means DefaultHeaders. From is always
	// signed (RFC 6376 section 5.4).
	Headers []string
	// Oversign fields are listed once more than they occur, so that
	// adding one more such field breaks the signature (RFC 6376 section
	// 8.15). Nil means From; an empty non-nil slice means none.
	Oversign []string
	// HeaderCanonicalization and BodyCanonicalization are "simple" or
	// "relaxed"; "" means relaxed.
	HeaderCanonicalization, BodyCanonicalization string
	// Expiration, when not zero, sets x= that long after signing.
	Expiration time.Duration
	// Now is the clock for t= and x=; nil means time.Now. (go-msgauth
	// stamps t= itself, so Now only moves x=.)
	Now func() time.Time
}

// Signer signs messages with the key of their sender's domain.
type Signer struct {
	keys KeyFunc
	opts Options
}

// NewSigner returns a Signer that finds keys with keys.
func NewSigner(keys KeyFunc, opts *Options) (*Signer, error) {
	if keys == nil {
		return nil, errors.New("dkim: no key function")
	}
	s := &Signer{keys: keys}
	if opts != nil {
		s.opts = *opts
	}
	for _, c := range []*string{&s.opts.HeaderCanonicalization, &s.opts.BodyCanonicalization} {
		switch strings.ToLower(*c) {
		case "":
			*c = string(msgdkim.CanonicalizationRelaxed)
		case "simple", "relaxed":
			*c = strings.ToLower(*c)
		default:
			return nil, fmt.Errorf("dkim: unknown canonicalization %q (want simple or relaxed)", *c)
		}
	}
	if s.opts.Headers == nil {
		s.opts.Headers = DefaultHeaders
	}
	if s.opts.Oversign == nil {
		s.opts.Oversign = []string{"From"}
	}
	if s.opts.Now == nil {
		s.opts.Now = time.Now
	}
	return s, nil
}

// NewMapSigner is NewSigner with keys from a lookup table (see MapKeys).
func NewMapSigner(m maps.Map, opts *Options) (*Signer, error) {
	return NewSigner(MapKeys(m), opts)
}

// Sign computes the DKIM-Signature header field for msg (the complete
// message, CRLF lines) on behalf of sender (internal form). The key is
// looked up for the sender's domain; with the null sender, for the domain
// of the From: header. It returns the field, folded, with its final CRLF,
// to prepend to the message; "" and no error when there is no key for the
// domain.
func (s *Signer) Sign(ctx context.Context, sender string, msg io.Reader) (string, error) {
	data, err := io.ReadAll(msg)
	if err != nil {
		return "", fmt.Errorf("dkim: reading the message: %w", err)
	}
	fields := headerFields(data)
	addr := sender
	if addr == "" {
		addr = fromAddress(fields)
	}
	domain := ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		domain = strings.TrimSuffix(addr[i+1:], ".")
	}
	if domain == "" {
		return "", nil
	}
	key, err := s.keys(ctx, addr, strings.ToLower(domain))
	if err != nil {
		return "", fmt.Errorf("dkim: finding the key for %s: %w", domain, err)
	}
	if key == nil {
		return "", nil
	}
	return s.SignWith(key, data)
}

// SignWith signs msg with the given key.
func (s *Signer) SignWith(key *Key, msg []byte) (string, error) {
	if len(msg) > 0 && (msg[0] == ' ' || msg[0] == '\t') {
		// A field prepended to this would absorb the first line.
		return "", errors.New("dkim: the message starts with a continuation line")
	}
	fields := headerFields(msg)
	count := map[string]int{}
	for _, f := range fields {
		count[strings.ToLower(f.name)]++
	}
	if count["from"] == 0 {
		return "", errors.New("dkim: the message has no From: header (RFC 6376 section 5.4)")
	}
	var keys []string
	seen := map[string]bool{}
	add := func(name string) {
		lname := strings.ToLower(name)
		if seen[lname] {
			return
		}
		seen[lname] = true
		n := count[lname]
		for _, o := range s.opts.Oversign {
			if strings.EqualFold(o, name) {
				n++
			}
		}
		for range n {
			keys = append(keys, name)
		}
	}
	add("From")
	for _, h := range s.opts.Headers {
		add(h)
	}
	for _, h := range s.opts.Oversign {
		add(h)
	}
	so := &msgdkim.SignOptions{
		Domain:                 key.Domain,
		Selector:               key.Selector,
		Signer:                 key.Signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: msgdkim.Canonicalization(s.opts.HeaderCanonicalization),
		BodyCanonicalization:   msgdkim.Canonicalization(s.opts.BodyCanonicalization),
		HeaderKeys:             keys,
	}
	if s.opts.Expiration > 0 {
		so.Expiration = s.opts.Now().Add(s.opts.Expiration)
	}
	signer, err := msgdkim.NewSigner(so)
	if err != nil {
		return "", fmt.Errorf("dkim: signing for %s (selector %s): %w", key.Domain, key.Selector, err)
	}
	if _, err := signer.Write(msg); err != nil {
		signer.Close()
		return "", fmt.Errorf("dkim: signing for %s: %w", key.Domain, err)
	}
	if err := signer.Close(); err != nil {
		return "", fmt.Errorf("dkim: signing for %s: %w", key.Domain, err)
	}
	return signer.Signature(), nil
}

// field is one header field of a message: its name and raw text.
type field struct {
	name string
	raw  []byte
}

// headerFields splits the header of msg into fields (continuation lines
// joined), up to the blank line or the first line that is not a field.
func headerFields(msg []byte) []field {
	var out []field
	for len(msg) > 0 {
		end := bytes.IndexByte(msg, '\n')
		line := msg
		if end >= 0 {
			line = msg[:end+1]
		}
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			break
		}
		if t[0] == ' ' || t[0] == '\t' {
			if len(out) == 0 {
				break
			}
			out[len(out)-1].raw = append(out[len(out)-1].raw, line...)
		} else if i := bytes.IndexByte(t, ':'); i > 0 {
			out = append(out, field{name: string(bytes.TrimRight(t[:i], " \t")), raw: append([]byte(nil), line...)})
		} else {
			break
		}
		msg = msg[len(line):]
	}
	return out
}

// fromAddress is the address of the first From: header, roughly: the text
// in angle brackets, or the whole value.
func fromAddress(fields []field) string {
	for _, f := range fields {
		if !strings.EqualFold(f.name, "From") {
			continue
		}
		v := string(f.raw[bytes.IndexByte(f.raw, ':')+1:])
		v = strings.Join(strings.Fields(v), " ")
		if i := strings.LastIndexByte(v, '<'); i >= 0 {
			if j := strings.IndexByte(v[i:], '>'); j > 0 {
				return v[i+1 : i+j]
			}
		}
		if i := strings.IndexByte(v, ','); i >= 0 {
			v = v[:i]
		}
		return strings.TrimSpace(v)
	}
	return ""
}

// MapKeys returns a KeyFunc that looks senders up in a table, as opendkim's
// SigningTable and KeyTable together do: the keys tried are the sender
// address, its domain, then each parent domain with a leading dot
// (".example.com" matches mail from sub.example.com). The value is
// "selector:/path/to/key.pem" (the sender's domain signs) or
// "domain:selector:/path/to/key.pem" (opendkim's KeyTable form). Key files
// are PEM (PKCS#1 or PKCS#8, RSA or Ed25519; what opendkim-genkey writes)
// or a base64 Ed25519 seed; they are read once and re-read when changed.
func MapKeys(m maps.Map) KeyFunc {
	cache := &keyCache{keys: map[string]cachedKey{}}
	return func(ctx context.Context, addr, domain string) (*Key, error) {
		candidates := []string{}
		if strings.Contains(addr, "@") {
			candidates = append(candidates, strings.ToLower(addr))
		}
		candidates = append(candidates, domain)
		for d := domain; ; {
			i := strings.IndexByte(d, '.')
			if i < 0 {
				break
			}
			d = d[i+1:]
			candidates = append(candidates, "."+d)
		}
		for _, k := range candidates {
			v, ok, err := m.Lookup(ctx, k)
			if err != nil {
				return nil, fmt.Errorf("looking up %s: %w", k, err)
			}
			if !ok {
				continue
			}
			return cache.parse(domain, strings.TrimSpace(v))
		}
		return nil, nil
	}
}

type cachedKey struct {
	mod    time.Time
	size   int64
	signer crypto.Signer
}

type keyCache struct {
	mu   sync.Mutex
	keys map[string]cachedKey
}

func (c *keyCache) parse(domain, v string) (*Key, error) {
	parts := strings.SplitN(v, ":", 3)
	var k Key
	var path string
	switch len(parts) {
	case 2:
		k.Domain, k.Selector, path = domain, parts[0], parts[1]
	case 3:
		k.Domain, k.Selector, path = parts[0], parts[1], parts[2]
		if k.Domain == "%" { // opendkim's "the sender's domain"
			k.Domain = domain
		}
	default:
		return nil, fmt.Errorf("key table value %q: want selector:keyfile or domain:selector:keyfile", v)
	}
	if k.Selector == "" || path == "" || k.Domain == "" {
		return nil, fmt.Errorf("key table value %q: empty field", v)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	c.mu.Lock()
	ck, ok := c.keys[path]
	c.mu.Unlock()
	if !ok || !ck.mod.Equal(st.ModTime()) || ck.size != st.Size() {
		signer, err := LoadKey(path)
		if err != nil {
			return nil, err
		}
		ck = cachedKey{mod: st.ModTime(), size: st.Size(), signer: signer}
		c.mu.Lock()
		c.keys[path] = ck
		c.mu.Unlock()
	}
	k.Signer = ck.signer
	return &k, nil
}

// LoadKey reads a private key file (see ParseKey).
func LoadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim: reading key: %w", err)
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("dkim: key %s: %w", path, err)
	}
	return k, nil
}

// ParseKey parses a private key: PEM "RSA PRIVATE KEY" (PKCS#1, what
// opendkim-genkey writes) or "PRIVATE KEY" (PKCS#8, RSA or Ed25519), or
// the base64 of a 32-byte Ed25519 seed (RFC 8463's examples).
func ParseKey(data []byte) (crypto.Signer, error) {
	if block, _ := pem.Decode(data); block != nil {
		switch block.Type {
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing PKCS#1 key: %w", err)
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing PKCS#8 key: %w", err)
			}
			switch k := k.(type) {
			case *rsa.PrivateKey:
				return k, nil
			case ed25519.PrivateKey:
				return k, nil
			}
			return nil, fmt.Errorf("unsupported key type %T (want RSA or Ed25519)", k)
		}
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("not a PEM key nor a base64 Ed25519 seed")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// PublicRecord returns the DNS TXT record that publishes the public half of
// key: "v=DKIM1; k=rsa; p=..." or "v=DKIM1; k=ed25519; p=...". It is
// published at selector._domainkey.domain.
func PublicRecord(key crypto.Signer) (string, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("dkim: encoding public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("dkim: unsupported key type %T", key.Public())
}
