package auth

// Password schemes: Dovecot's "{SCHEME}value" stored passwords
// (https://doc.dovecot.org/2.3/configuration_manual/authentication/password_schemes/).
//
// A stored password is "{SCHEME}value", or a bare value in the database's
// default scheme, or a bare "$1$..." which is always MD5-CRYPT (Dovecot's
// password_get_scheme). A scheme name may carry an encoding suffix,
// ".b64"/".base64" or ".hex", for the schemes whose value is binary
// (SHA*, SSHA*, SMD5, PLAIN-MD5, LDAP-MD5, CRAM-MD5, PLAIN). Without a
// suffix the value is in the scheme's default encoding, and for fixed-size
// digests a value twice the digest size long is read as hex, as Dovecot
// guesses.

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/md4"
)

// ErrUnknownScheme is wrapped by the errors for a stored password whose
// scheme postkit does not know (or does not implement).
var ErrUnknownScheme = errors.New("auth: unknown password scheme")

// DefaultPasswordScheme is used for a stored password without a
// "{SCHEME}" prefix when the database names no default: CRYPT, as for
// Dovecot's passwd-file. (A PLAIN default would let a client log in with
// the stored hash itself.)
const DefaultPasswordScheme = "CRYPT"

type pwEncoding int

const (
	encNone pwEncoding = iota
	encBase64
	encHex
)

// pwScheme is one password scheme.
type pwScheme struct {
	name   string
	enc    pwEncoding // default encoding of the stored value
	rawLen int        // fixed size of the decoded value, 0 if it varies
	// verify checks plain against the decoded stored value; nil means
	// "generate and compare" (unsalted schemes).
	verify func(plain, raw []byte) (bool, error)
	// gen makes a new decoded value.
	gen func(plain []byte) ([]byte, error)
	// plaintext: the decoded value is the password itself (CRAM-MD5 and
	// SCRAM can then be served).
	plaintext bool
}

var pwSchemes = map[string]*pwScheme{}

func init() {
	plain := func(p []byte) ([]byte, error) { return append([]byte(nil), p...), nil }
	digest := func(h func() hash.Hash) func([]byte) ([]byte, error) {
		return func(p []byte) ([]byte, error) {
			d := h()
			d.Write(p)
			return d.Sum(nil), nil
		}
	}
	cryptFamily := func(name string, gen func([]byte) ([]byte, error)) *pwScheme {
		return &pwScheme{name: name, gen: gen, verify: func(p, raw []byte) (bool, error) {
			return cryptVerify(p, string(raw))
		}}
	}
	md5c := func(p []byte) ([]byte, error) {
		return []byte(md5CryptRaw(p, cryptRandomSalt(8))), nil
	}
	md5cVerify := func(p, raw []byte) (bool, error) {
		got, err := md5CryptDovecot(p, string(raw))
		if err != nil {
			return false, err
		}
		return constantTimeEqual(got, string(raw)), nil
	}
	blf := func(p []byte) ([]byte, error) {
		h, err := bcryptHash(p, 5)
		return []byte(h), err
	}
	list := []*pwScheme{
		{name: "PLAIN", gen: plain, plaintext: true},
		{name: "CLEAR", gen: plain, plaintext: true},
		{name: "CLEARTEXT", gen: plain, plaintext: true},
		{name: "PLAIN-TRUNC", gen: plain, verify: plainTruncVerify},

		cryptFamily("CRYPT", blf), // doveadm's CRYPT makes bcrypt hashes
		cryptFamily("DES-CRYPT", func(p []byte) ([]byte, error) {
			h, err := desCrypt(p, cryptRandomSalt(2))
			return []byte(h), err
		}),
		cryptFamily("SHA256-CRYPT", func(p []byte) ([]byte, error) {
			return []byte(shaCryptRaw(p, cryptRandomSalt(16), shaCryptRoundsDefault, false, false)), nil
		}),
		cryptFamily("SHA512-CRYPT", func(p []byte) ([]byte, error) {
			return []byte(shaCryptRaw(p, cryptRandomSalt(16), shaCryptRoundsDefault, false, true)), nil
		}),
		{name: "BLF-CRYPT", gen: blf, verify: func(p, raw []byte) (bool, error) {
			if !isBcrypt(string(raw)) {
				return false, fmt.Errorf("BLF-CRYPT value is not a bcrypt hash: %w", errCryptSetting)
			}
			return bcryptVerify(p, string(raw))
		}},
		{name: "MD5-CRYPT", gen: md5c, verify: md5cVerify},
		{name: "MD5", gen: md5c, verify: func(p, raw []byte) (bool, error) {
			// MD5-CRYPT when it looks like one, else PLAIN-MD5.
			if strings.HasPrefix(string(raw), "$1$") {
				return md5cVerify(p, raw)
			}
			return VerifyPassword("{PLAIN-MD5}"+string(raw), string(p), "")
		}},

		{name: "SHA", enc: encBase64, rawLen: sha1.Size, gen: digest(sha1.New)},
		{name: "SHA1", enc: encBase64, rawLen: sha1.Size, gen: digest(sha1.New)},
		{name: "SHA256", enc: encBase64, rawLen: sha256.Size, gen: digest(sha256.New)},
		{name: "SHA512", enc: encBase64, rawLen: sha512.Size, gen: digest(sha512.New)},
		{name: "PLAIN-MD4", enc: encHex, rawLen: md4.Size, gen: digest(md4.New)},
		{name: "PLAIN-MD5", enc: encHex, rawLen: md5.Size, gen: digest(md5.New)},
		{name: "LDAP-MD5", enc: encBase64, rawLen: md5.Size, gen: digest(md5.New)},

		saltedDigest("SMD5", md5.New),
		saltedDigest("SSHA", sha1.New),
		saltedDigest("SSHA256", sha256.New),
		saltedDigest("SSHA512", sha512.New),

		{name: "CRAM-MD5", enc: encHex, rawLen: cramContextLen, gen: func(p []byte) ([]byte, error) {
			c := cramContext(p)
			return c[:], nil
		}},
		{name: "HMAC-MD5", enc: encHex, rawLen: cramContextLen, gen: func(p []byte) ([]byte, error) {
			c := cramContext(p)
			return c[:], nil
		}},

		{name: "SCRAM-SHA-1", gen: scramGen(sha1.New), verify: scramVerify(sha1.New)},
		{name: "SCRAM-SHA-256", gen: scramGen(sha256.New), verify: scramVerify(sha256.New)},

		{name: "ARGON2I", gen: argon2Gen(false), verify: argon2Verify},
		{name: "ARGON2ID", gen: argon2Gen(true), verify: argon2Verify},
		{name: "PBKDF2", gen: pbkdf2Gen, verify: pbkdf2Verify},
	}
	for _, s := range list {
		pwSchemes[s.name] = s
	}
}

// SplitScheme splits a stored password into its scheme (upper case, with
// any encoding suffix) and value, the way Dovecot reads it: "{SCHEME}value";
// a bare "$1$..." is MD5-CRYPT; anything else is in defaultScheme
// (DefaultPasswordScheme when empty).
func SplitScheme(stored, defaultScheme string) (scheme, value string) {
	if strings.HasPrefix(stored, "$1$") {
		// "$1$salt$hash[$ignored]": Dovecot stops at the next '$'.
		if i := strings.IndexByte(stored[3:], '$'); i >= 0 {
			if j := strings.IndexByte(stored[3+i+1:], '$'); j >= 0 {
				return "MD5-CRYPT", stored[:3+i+1+j]
			}
			return "MD5-CRYPT", stored
		}
	}
	if strings.HasPrefix(stored, "{") {
		if i := strings.IndexByte(stored, '}'); i > 0 {
			return strings.ToUpper(stored[1:i]), stored[i+1:]
		}
	}
	if defaultScheme == "" {
		defaultScheme = DefaultPasswordScheme
	}
	return strings.ToUpper(defaultScheme), stored
}

// lookupScheme finds a scheme by a name that may carry an encoding suffix.
func lookupScheme(name string) (s *pwScheme, enc pwEncoding, explicit bool, err error) {
	base, suffix, explicit := strings.Cut(strings.ToUpper(name), ".")
	s = pwSchemes[base]
	if s == nil {
		return nil, 0, false, fmt.Errorf("%w %q", ErrUnknownScheme, name)
	}
	enc = s.enc
	if explicit {
		switch suffix {
		case "B64", "BASE64":
			enc = encBase64
		case "HEX":
			enc = encHex
		default:
			return nil, 0, false, fmt.Errorf("%w %q (encoding %q)", ErrUnknownScheme, name, suffix)
		}
	}
	return s, enc, explicit, nil
}

// decodeStored turns a stored value into the scheme's raw bytes (Dovecot's
// password_decode).
func decodeStored(s *pwScheme, enc pwEncoding, explicit bool, value string) ([]byte, error) {
	guessed := false
	if enc != encNone && s.rawLen != 0 && !explicit {
		guessed = true
		enc = encBase64
		if len(value) == 2*s.rawLen {
			enc = encHex
		}
	}
	var raw []byte
	switch enc {
	case encNone:
		raw = []byte(value)
	case encHex:
		b, err := hex.DecodeString(value)
		if err == nil {
			raw = b
			break
		}
		if !guessed {
			return nil, fmt.Errorf("%s password is not valid hex", s.name)
		}
		// Some lengths are valid in both encodings: try base64 after all.
		fallthrough
	case encBase64:
		b, err := decodeBase64(value)
		if err != nil {
			return nil, fmt.Errorf("%s password is not valid base64", s.name)
		}
		raw = b
	}
	if s.rawLen != 0 && len(raw) != s.rawLen {
		return nil, fmt.Errorf("%s password is %d bytes long instead of %d", s.name, len(raw), s.rawLen)
	}
	return raw, nil
}

// decodeBase64 reads padded or unpadded standard base64.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") || len(s)%4 == 0 {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// VerifyPassword reports whether plain is the password stored in stored
// ("{SCHEME}value"; a value without a prefix is in defaultScheme, CRYPT
// when that is empty). The comparison takes the same time wherever the
// values differ. A mismatch is (false, nil); an error means the stored
// password could not be used (an unknown scheme, a malformed value), and
// wraps ErrUnknownScheme when the scheme is the reason. An empty stored
// value never matches.
func VerifyPassword(stored, plain, defaultScheme string) (bool, error) {
	name, value := SplitScheme(stored, defaultScheme)
	s, enc, explicit, err := lookupScheme(name)
	if err != nil {
		return false, err
	}
	raw, err := decodeStored(s, enc, explicit, value)
	if err != nil {
		return false, fmt.Errorf("auth: checking a {%s} password: %w", name, err)
	}
	if len(raw) == 0 {
		return false, nil
	}
	var ok bool
	if s.verify != nil {
		ok, err = s.verify([]byte(plain), raw)
	} else {
		var gen []byte
		gen, err = s.gen([]byte(plain))
		ok = err == nil && subtle.ConstantTimeCompare(gen, raw) == 1
	}
	if err != nil {
		return false, fmt.Errorf("auth: checking a {%s} password: %w", name, err)
	}
	return ok, nil
}

// HashPassword makes a stored password for plain in scheme, in the form
// `doveadm pw -s SCHEME` prints: "{SCHEME}value", with a new random salt
// and Dovecot's default costs (SHA*-CRYPT 5000 rounds, BLF-CRYPT and CRYPT
// bcrypt cost 5, ARGON2I m=32 MiB t=4, ARGON2ID m=64 MiB t=3, SCRAM 4096
// iterations, PBKDF2 5000 rounds). An encoding suffix (".b64", ".hex")
// picks the encoding of binary schemes.
func HashPassword(scheme, plain string) (string, error) {
	s, enc, _, err := lookupScheme(scheme)
	if err != nil {
		return "", err
	}
	raw, err := s.gen([]byte(plain))
	if err != nil {
		return "", fmt.Errorf("auth: hashing a password with %s: %w", s.name, err)
	}
	var value string
	switch enc {
	case encNone:
		value = string(raw)
	case encBase64:
		value = base64.StdEncoding.EncodeToString(raw)
	case encHex:
		value = hex.EncodeToString(raw)
	}
	return "{" + strings.ToUpper(scheme) + "}" + value, nil
}

// constantTimeEqual compares two strings in time that depends only on
// their lengths.
func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// cryptRandomSalt returns n random characters of the crypt alphabet.
func cryptRandomSalt(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = cryptAlphabet[b[i]&0x3f]
	}
	return string(b)
}

// md5CryptDovecot is Dovecot's MD5-CRYPT check: the stored value with or
// without the "$1$" magic is the setting.
func md5CryptDovecot(plain []byte, stored string) (string, error) {
	if !strings.HasPrefix(stored, "$1$") {
		return "", fmt.Errorf("MD5-CRYPT value does not start with $1$: %w", errCryptSetting)
	}
	return md5Crypt(plain, stored)
}

// plainTruncVerify checks PLAIN-TRUNC's "<length>-<password>": a stored
// password cut to length matches any password it is a prefix of.
func plainTruncVerify(plain, raw []byte) (bool, error) {
	i := 0
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	if i == 0 || i == len(raw) || raw[i] != '-' || i > 9 {
		return false, errors.New("PLAIN-TRUNC value lacks its length: prefix")
	}
	n, _ := strconv.Atoi(string(raw[:i]))
	stored := raw[i+1:]
	if len(stored) == n && len(plain) >= n {
		return subtle.ConstantTimeCompare(plain[:n], stored) == 1, nil
	}
	return subtle.ConstantTimeCompare(plain, stored) == 1, nil
}

// saltedDigest is SMD5/SSHA*: base64(H(password salt) salt), 4-byte salts
// when generated, any salt length when verified.
func saltedDigest(name string, h func() hash.Hash) *pwScheme {
	size := h().Size()
	return &pwScheme{
		name: name,
		enc:  encBase64,
		gen: func(p []byte) ([]byte, error) {
			salt := make([]byte, 4)
			rand.Read(salt)
			d := h()
			d.Write(p)
			d.Write(salt)
			return append(d.Sum(nil), salt...), nil
		},
		verify: func(p, raw []byte) (bool, error) {
			if len(raw) <= size {
				return false, fmt.Errorf("%s value is too short (%d bytes)", name, len(raw))
			}
			d := h()
			d.Write(p)
			d.Write(raw[size:])
			return subtle.ConstantTimeCompare(d.Sum(nil), raw[:size]) == 1, nil
		},
	}
}

// ---- ARGON2I / ARGON2ID (libsodium's crypto_pwhash_str format) -----------

// Limits on what a stored Argon2 hash may ask for, so that a damaged or
// hostile database entry cannot exhaust memory: 1 GiB and 2^24 KiB passes.
const (
	argon2MaxMemoryKiB = 1 << 20
	argon2MaxWork      = 1 << 24
)

type argon2Params struct {
	id         bool
	memory     uint32 // KiB
	time       uint32
	threads    uint8
	salt, hash []byte
}

// parseArgon2 reads "$argon2id$v=19$m=65536,t=3,p=1$salt$hash" (unpadded
// base64 salt and hash).
func parseArgon2(s string) (argon2Params, error) {
	var p argon2Params
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return p, errors.New("argon2 value is not $argon2id$v=19$m=,t=,p=$salt$hash")
	}
	switch f[1] {
	case "argon2i":
	case "argon2id":
		p.id = true
	default:
		return p, fmt.Errorf("argon2 variant %q is not supported", f[1])
	}
	if f[2] != "v=19" {
		return p, fmt.Errorf("argon2 version %q is not supported (only v=19)", f[2])
	}
	var m, t, par uint64
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || (len(v) > 1 && v[0] == '0') {
			return p, fmt.Errorf("argon2 parameter %q", kv)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			par = n
		default:
			return p, fmt.Errorf("argon2 parameter %q", kv)
		}
	}
	if t < 1 || par < 1 || par > 255 || m < 8*par {
		return p, fmt.Errorf("argon2 parameters m=%d,t=%d,p=%d are out of range", m, t, par)
	}
	if m > argon2MaxMemoryKiB || m*t > argon2MaxWork {
		return p, fmt.Errorf("argon2 parameters m=%d,t=%d are above postkit's limits", m, t)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(f[4])
	sum, err2 := base64.RawStdEncoding.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(sum) < 4 {
		return p, errors.New("argon2 salt or hash is not valid base64 of a valid length")
	}
	p.memory, p.time, p.threads, p.salt, p.hash = uint32(m), uint32(t), uint8(par), salt, sum
	return p, nil
}

func (p argon2Params) key(plain []byte) []byte {
	if p.id {
		return argon2.IDKey(plain, p.salt, p.time, p.memory, p.threads, uint32(len(p.hash)))
	}
	return argon2.Key(plain, p.salt, p.time, p.memory, p.threads, uint32(len(p.hash)))
}

// argon2Verify accepts either variant under either scheme name, as
// libsodium's crypto_pwhash_str_verify does for Dovecot.
func argon2Verify(plain, raw []byte) (bool, error) {
	p, err := parseArgon2(string(raw))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(p.key(plain), p.hash) == 1, nil
}

func argon2Gen(id bool) func([]byte) ([]byte, error) {
	return func(plain []byte) ([]byte, error) {
		p := argon2Params{id: id, memory: 32768, time: 4, threads: 1, salt: make([]byte, 16), hash: make([]byte, 32)}
		name := "argon2i"
		if id {
			p.memory, p.time, name = 65536, 3, "argon2id"
		}
		rand.Read(p.salt)
		sum := p.key(plain)
		return fmt.Appendf(nil, "$%s$v=19$m=%d,t=%d,p=%d$%s$%s", name, p.memory, p.time, p.threads,
			base64.RawStdEncoding.EncodeToString(p.salt), base64.RawStdEncoding.EncodeToString(sum)), nil
	}
}

// ---- PBKDF2 (Dovecot's "$1$salt$rounds$hex" with HMAC-SHA1) ---------------

// pbkdf2MaxRounds bounds a stored PBKDF2 or SCRAM iteration count.
const pbkdf2MaxRounds = 10_000_000

func pbkdf2Gen(plain []byte) ([]byte, error) {
	salt := cryptRandomSalt(16)
	key, err := pbkdf2.Key(sha1.New, string(plain), []byte(salt), 5000, sha1.Size)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "$1$%s$%d$%x", salt, 5000, key), nil
}

func pbkdf2Verify(plain, raw []byte) (bool, error) {
	f := strings.Split(string(raw), "$")
	if len(f) != 5 || f[0] != "" || f[1] != "1" {
		return false, errors.New("PBKDF2 value is not $1$salt$rounds$hex")
	}
	rounds, err := strconv.Atoi(f[3])
	if err != nil || rounds < 1 || rounds > pbkdf2MaxRounds {
		return false, fmt.Errorf("PBKDF2 rounds %q are out of range", f[3])
	}
	want, err := hex.DecodeString(f[4])
	if err != nil || len(want) != sha1.Size {
		return false, errors.New("PBKDF2 key is not 40 hex digits")
	}
	got, err := pbkdf2.Key(sha1.New, string(plain), []byte(f[2]), rounds, sha1.Size)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// ---- SCRAM stored keys ("iter,salt,StoredKey,ServerKey") ------------------

// scramKeys is what a SCRAM server needs (RFC 5802 section 3).
type scramKeys struct {
	iter                 int
	salt                 []byte
	storedKey, serverKey []byte
}

// scramDerive computes the keys for a password and salt.
func scramDerive(h func() hash.Hash, plain []byte, salt []byte, iter int) (scramKeys, error) {
	salted, err := pbkdf2.Key(h, string(plain), salt, iter, h().Size())
	if err != nil {
		return scramKeys{}, err
	}
	clientKey := hmacSum(h, salted, []byte("Client Key"))
	d := h()
	d.Write(clientKey)
	return scramKeys{iter: iter, salt: salt, storedKey: d.Sum(nil), serverKey: hmacSum(h, salted, []byte("Server Key"))}, nil
}

func hmacSum(h func() hash.Hash, key, msg []byte) []byte {
	m := hmac.New(h, key)
	m.Write(msg)
	return m.Sum(nil)
}

// parseScramKeys reads Dovecot's SCRAM-SHA-* value.
func parseScramKeys(h func() hash.Hash, s string) (scramKeys, error) {
	f := strings.Split(s, ",")
	if len(f) != 4 {
		return scramKeys{}, errors.New("SCRAM value is not iter,salt,StoredKey,ServerKey")
	}
	iter, err := strconv.Atoi(f[0])
	// Dovecot refuses fewer than 4096 iterations (RFC 7677 section 4).
	if err != nil || iter < 4096 || iter > pbkdf2MaxRounds {
		return scramKeys{}, fmt.Errorf("SCRAM iteration count %q is out of range", f[0])
	}
	salt, err1 := base64.StdEncoding.DecodeString(f[1])
	stored, err2 := base64.StdEncoding.DecodeString(f[2])
	server, err3 := base64.StdEncoding.DecodeString(f[3])
	size := h().Size()
	if err1 != nil || err2 != nil || err3 != nil || len(salt) == 0 || len(stored) != size || len(server) != size {
		return scramKeys{}, errors.New("SCRAM salt or keys are not valid base64 of the right size")
	}
	return scramKeys{iter: iter, salt: salt, storedKey: stored, serverKey: server}, nil
}

func (k scramKeys) format() string {
	e := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%d,%s,%s,%s", k.iter, e(k.salt), e(k.storedKey), e(k.serverKey))
}

func scramGen(h func() hash.Hash) func([]byte) ([]byte, error) {
	return func(plain []byte) ([]byte, error) {
		salt := make([]byte, 16)
		rand.Read(salt)
		k, err := scramDerive(h, plain, salt, 4096)
		if err != nil {
			return nil, err
		}
		return []byte(k.format()), nil
	}
}

func scramVerify(h func() hash.Hash) func(plain, raw []byte) (bool, error) {
	return func(plain, raw []byte) (bool, error) {
		k, err := parseScramKeys(h, string(raw))
		if err != nil {
			return false, err
		}
		got, err := scramDerive(h, plain, k.salt, k.iter)
		if err != nil {
			return false, err
		}
		a := subtle.ConstantTimeCompare(got.storedKey, k.storedKey)
		b := subtle.ConstantTimeCompare(got.serverKey, k.serverKey)
		return a&b == 1, nil
	}
}
