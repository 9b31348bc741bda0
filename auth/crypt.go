package auth

// crypt(3) in Go: the formats a Dovecot CRYPT password may hold on Debian
// (libxcrypt), written from the published algorithm descriptions:
//
//   - "$1$": MD5-crypt (Poul-Henning Kamp's FreeBSD algorithm),
//   - "$5$", "$6$": SHA-256/SHA-512 crypt (Ulrich Drepper, "Unix crypt
//     using SHA-256 and SHA-512", the specification glibc implements),
//   - "$2a$", "$2b$", "$2y$": bcrypt (golang.org/x/crypto/bcrypt),
//   - 13 characters: traditional DES crypt, and "_": BSDi extended DES
//     crypt (crypt_des.go).
//
// The settings are checked the way libxcrypt checks them (salt characters
// from the crypt alphabet only, "rounds=" in range and without leading
// zeros), because libxcrypt is what Dovecot calls on Debian: a setting that
// libxcrypt refuses never verifies there, and does not here either.
// yescrypt ("$y$"), gost-yescrypt, scrypt ("$7$"), SunMD5 and NT hashes are
// not implemented: verifying one is an error, not a mismatch.

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// cryptAlphabet is crypt(3)'s base-64 alphabet (not RFC 4648's).
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// errCryptSetting is wrapped by every "this is not a valid crypt string"
// error.
var errCryptSetting = errors.New("invalid crypt setting")

// cryptIndex returns the 6-bit value of a crypt alphabet character, or -1.
func cryptIndex(c byte) int {
	switch {
	case c == '.':
		return 0
	case c == '/':
		return 1
	case c >= '0' && c <= '9':
		return int(c-'0') + 2
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 12
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 38
	}
	return -1
}

// cryptSaltOK reports whether every byte of s is in the crypt alphabet.
func cryptSaltOK(s string) bool {
	for i := 0; i < len(s); i++ {
		if cryptIndex(s[i]) < 0 {
			return false
		}
	}
	return true
}

// cryptB64 appends n characters encoding the low bits of v, least
// significant 6 bits first (the "b64_from_24bit" step of every $N$ scheme).
func cryptB64(dst []byte, v uint32, n int) []byte {
	for ; n > 0; n-- {
		dst = append(dst, cryptAlphabet[v&0x3f])
		v >>= 6
	}
	return dst
}

// cryptCompute runs crypt(3) with setting (a full stored hash works too:
// the algorithm reads only its setting prefix) and returns the result.
func cryptCompute(plain []byte, setting string) (string, error) {
	switch {
	case strings.HasPrefix(setting, "$1$"):
		return md5Crypt(plain, setting)
	case strings.HasPrefix(setting, "$5$"):
		return shaCrypt(plain, setting, false)
	case strings.HasPrefix(setting, "$6$"):
		return shaCrypt(plain, setting, true)
	case strings.HasPrefix(setting, "_"):
		return bsdiCrypt(plain, setting)
	case strings.HasPrefix(setting, "$"):
		end := strings.IndexByte(setting[1:], '$')
		id := setting
		if end >= 0 {
			id = setting[:end+2]
		}
		return "", fmt.Errorf("crypt format %q is not supported", id)
	}
	return desCrypt(plain, setting)
}

// cryptVerify reports whether plain hashes to stored under crypt(3), in
// constant time for equal lengths.
func cryptVerify(plain []byte, stored string) (bool, error) {
	if stored == "" {
		// crypt("") would "match" an empty setting in some libcs; an
		// empty stored password never matches (Dovecot's crypt_verify).
		return false, nil
	}
	if isBcrypt(stored) {
		return bcryptVerify(plain, stored)
	}
	got, err := cryptCompute(plain, stored)
	if err != nil {
		return false, err
	}
	return constantTimeEqual(got, stored), nil
}

// ---- MD5-crypt ("$1$") ----------------------------------------------------

// md5Crypt computes "$1$salt$hash". The salt is what follows "$1$" up to
// the next '$', at most 8 characters (Dovecot's MD5-CRYPT also accepts a
// bare salt without the "$1$" magic, see md5CryptDovecot).
func md5Crypt(plain []byte, setting string) (string, error) {
	salt := strings.TrimPrefix(setting, "$1$")
	if i := strings.IndexByte(salt, '$'); i >= 0 {
		salt = salt[:i]
	}
	if len(salt) > 8 {
		salt = salt[:8]
	}
	if !cryptSaltOK(salt) {
		return "", fmt.Errorf("MD5-crypt salt %q: %w", salt, errCryptSetting)
	}
	return md5CryptRaw(plain, salt), nil
}

// md5CryptRaw is the algorithm itself, for a salt already checked.
func md5CryptRaw(plain []byte, salt string) string {
	const magic = "$1$"
	// Alternate sum: MD5(password salt password).
	alt := md5.New()
	alt.Write(plain)
	alt.Write([]byte(salt))
	alt.Write(plain)
	altSum := alt.Sum(nil)

	h := md5.New()
	h.Write(plain)
	h.Write([]byte(magic))
	h.Write([]byte(salt))
	for n := len(plain); n > 0; n -= 16 {
		h.Write(altSum[:min(n, 16)])
	}
	// One byte per bit of the password length: a NUL for a one bit, the
	// first password byte for a zero bit (the original code's quirk).
	for n := len(plain); n != 0; n >>= 1 {
		if n&1 != 0 {
			h.Write([]byte{0})
		} else {
			h.Write(plain[:1])
		}
	}
	sum := h.Sum(nil)

	// 1000 rounds to slow down a dictionary attack.
	for i := 0; i < 1000; i++ {
		h.Reset()
		if i&1 != 0 {
			h.Write(plain)
		} else {
			h.Write(sum)
		}
		if i%3 != 0 {
			h.Write([]byte(salt))
		}
		if i%7 != 0 {
			h.Write(plain)
		}
		if i&1 != 0 {
			h.Write(sum)
		} else {
			h.Write(plain)
		}
		sum = h.Sum(sum[:0])
	}

	out := make([]byte, 0, len(magic)+len(salt)+1+22)
	out = append(out, magic...)
	out = append(out, salt...)
	out = append(out, '$')
	for _, g := range [5][3]int{{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}} {
		out = cryptB64(out, uint32(sum[g[0]])<<16|uint32(sum[g[1]])<<8|uint32(sum[g[2]]), 4)
	}
	out = cryptB64(out, uint32(sum[11]), 2)
	return string(out)
}

// ---- SHA-256 / SHA-512 crypt ("$5$", "$6$") --------------------------------

const (
	shaCryptRoundsDefault = 5000
	shaCryptRoundsMin     = 1000
	shaCryptRoundsMax     = 999999999
	shaCryptSaltMax       = 16
)

// shaCrypt computes "$5$[rounds=N$]salt$hash" or the "$6$" form.
func shaCrypt(plain []byte, setting string, is512 bool) (string, error) {
	magic := "$5$"
	if is512 {
		magic = "$6$"
	}
	rest := setting[len(magic):]
	rounds, custom := shaCryptRoundsDefault, false
	if strings.HasPrefix(rest, "rounds=") {
		end := strings.IndexByte(rest, '$')
		if end < 0 {
			return "", fmt.Errorf("SHA-crypt %q: rounds without salt: %w", magic, errCryptSetting)
		}
		num := rest[len("rounds="):end]
		// libxcrypt: decimal digits, no leading zero, within the range.
		if num == "" || num[0] == '0' || len(num) > 9 || strings.Trim(num, "0123456789") != "" {
			return "", fmt.Errorf("SHA-crypt rounds %q: %w", num, errCryptSetting)
		}
		n, _ := strconv.Atoi(num)
		if n < shaCryptRoundsMin || n > shaCryptRoundsMax {
			return "", fmt.Errorf("SHA-crypt rounds %d out of range %d..%d: %w", n, shaCryptRoundsMin, shaCryptRoundsMax, errCryptSetting)
		}
		rounds, custom = n, true
		rest = rest[end+1:]
	}
	salt := rest
	if i := strings.IndexByte(salt, '$'); i >= 0 {
		salt = salt[:i]
	}
	if len(salt) > shaCryptSaltMax {
		salt = salt[:shaCryptSaltMax]
	}
	if !cryptSaltOK(salt) {
		return "", fmt.Errorf("SHA-crypt salt %q: %w", salt, errCryptSetting)
	}
	return shaCryptRaw(plain, salt, rounds, custom, is512), nil
}

// shaCryptRaw is Drepper's algorithm for a checked salt and round count.
func shaCryptRaw(plain []byte, salt string, rounds int, custom, is512 bool) string {
	newHash := sha256.New
	magic := "$5$"
	if is512 {
		newHash = sha512.New
		magic = "$6$"
	}
	saltB := []byte(salt)

	// Digest B: password salt password.
	b := newHash()
	b.Write(plain)
	b.Write(saltB)
	b.Write(plain)
	sumB := b.Sum(nil)

	// Digest A: password salt, B repeated over the password length, then
	// per bit of the length: B for a one, the password for a zero.
	a := newHash()
	a.Write(plain)
	a.Write(saltB)
	writeRepeated(a, sumB, len(plain))
	for n := len(plain); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(sumB)
		} else {
			a.Write(plain)
		}
	}
	sumA := a.Sum(nil)

	// Sequence P: the password hashed once per password byte.
	dp := newHash()
	for range plain {
		dp.Write(plain)
	}
	p := repeatTo(dp.Sum(nil), len(plain))

	// Sequence S: the salt hashed 16 + A[0] times.
	ds := newHash()
	for i := 0; i < 16+int(sumA[0]); i++ {
		ds.Write(saltB)
	}
	s := repeatTo(ds.Sum(nil), len(saltB))

	c := newHash()
	sum := sumA
	for r := 0; r < rounds; r++ {
		c.Reset()
		if r&1 != 0 {
			c.Write(p)
		} else {
			c.Write(sum)
		}
		if r%3 != 0 {
			c.Write(s)
		}
		if r%7 != 0 {
			c.Write(p)
		}
		if r&1 != 0 {
			c.Write(sum)
		} else {
			c.Write(p)
		}
		sum = c.Sum(sum[:0])
	}

	out := make([]byte, 0, 3+len("rounds=999999999$")+len(salt)+1+86)
	out = append(out, magic...)
	if custom {
		out = append(out, "rounds="...)
		out = strconv.AppendInt(out, int64(rounds), 10)
		out = append(out, '$')
	}
	out = append(out, salt...)
	out = append(out, '$')
	if is512 {
		// Each group of three bytes: (i, i+21, i+42) rotated, as the
		// specification lists them; the last byte alone.
		for i := 0; i < 21; i++ {
			x, y, z := shaCrypt512Order(i)
			out = cryptB64(out, uint32(sum[x])<<16|uint32(sum[y])<<8|uint32(sum[z]), 4)
		}
		out = cryptB64(out, uint32(sum[63]), 2)
	} else {
		for i := 0; i < 10; i++ {
			x, y, z := shaCrypt256Order(i)
			out = cryptB64(out, uint32(sum[x])<<16|uint32(sum[y])<<8|uint32(sum[z]), 4)
		}
		out = cryptB64(out, uint32(sum[31])<<8|uint32(sum[30]), 3)
	}
	return string(out)
}

// shaCrypt256Order gives the byte indexes of output group i (0..9) of
// SHA-256 crypt: (0,10,20), (21,1,11), (12,22,2), (3,13,23), ...
func shaCrypt256Order(i int) (int, int, int) {
	a, b, c := i, i+10, i+20
	switch i % 3 {
	case 1:
		a, b, c = c, a, b
	case 2:
		a, b, c = b, c, a
	}
	return a, b, c
}

// shaCrypt512Order gives the byte indexes of output group i (0..20) of
// SHA-512 crypt: (0,21,42), (22,43,1), (44,2,23), (3,24,45), ...
func shaCrypt512Order(i int) (int, int, int) {
	a, b, c := i, i+21, i+42
	switch i % 3 {
	case 1:
		a, b, c = b, c, a
	case 2:
		a, b, c = c, a, b
	}
	return a, b, c
}

// writeRepeated writes the first n bytes of sum repeated.
func writeRepeated(h hash.Hash, sum []byte, n int) {
	for ; n > len(sum); n -= len(sum) {
		h.Write(sum)
	}
	h.Write(sum[:n])
}

// repeatTo returns sum repeated to n bytes.
func repeatTo(sum []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, sum[:min(len(sum), n-len(out))]...)
	}
	return out
}

// ---- bcrypt ("$2a$", "$2b$", "$2y$") ----------------------------------------

// bcryptMaxCost bounds the work a stored hash can ask for: 2^20 rounds
// already take about a minute. Dovecot accepts up to 31.
const bcryptMaxCost = 20

// isBcrypt reports whether s looks like a bcrypt hash.
func isBcrypt(s string) bool {
	return len(s) >= 4 && s[0] == '$' && s[1] == '2' && s[3] == '$'
}

// bcryptParse checks "$2?$NN$" + 53 characters and returns the cost.
func bcryptParse(stored string) (int, error) {
	if len(stored) != 60 || !isBcrypt(stored) || stored[6] != '$' {
		return 0, fmt.Errorf("bcrypt hash of %d characters: %w", len(stored), errCryptSetting)
	}
	switch stored[2] {
	case 'a', 'b', 'y':
	default:
		// "$2x$" is crypt_blowfish's bug-compatible variant for 8-bit
		// passwords; x/crypto does not implement the bug.
		return 0, fmt.Errorf("bcrypt variant %q is not supported", stored[:4])
	}
	cost, err := strconv.Atoi(stored[4:6])
	if err != nil || cost < 4 || cost > 31 {
		return 0, fmt.Errorf("bcrypt cost %q: %w", stored[4:6], errCryptSetting)
	}
	if cost > bcryptMaxCost {
		return 0, fmt.Errorf("bcrypt cost %d is above postkit's limit %d", cost, bcryptMaxCost)
	}
	if !cryptSaltOK(stored[7:]) {
		return 0, fmt.Errorf("bcrypt hash characters: %w", errCryptSetting)
	}
	return cost, nil
}

// bcryptVerify checks a bcrypt hash. Passwords longer than 72 bytes are
// cut to 72, as every bcrypt implementation does.
func bcryptVerify(plain []byte, stored string) (bool, error) {
	if _, err := bcryptParse(stored); err != nil {
		return false, err
	}
	// x/crypto wants "$2a$"; the algorithm is the same for 2a, 2b and 2y.
	h := []byte(stored)
	h[2] = 'a'
	err := bcrypt.CompareHashAndPassword(h, bcryptKey(plain))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	}
	return false, fmt.Errorf("bcrypt: %w", err)
}

// bcryptHash makes a "$2y$" hash (Dovecot's BLF-CRYPT output form).
func bcryptHash(plain []byte, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword(bcryptKey(plain), cost)
	if err != nil {
		return "", fmt.Errorf("bcrypt: %w", err)
	}
	h[2] = 'y'
	return string(h), nil
}

func bcryptKey(plain []byte) []byte {
	if len(plain) > 72 {
		return plain[:72]
	}
	return plain
}
