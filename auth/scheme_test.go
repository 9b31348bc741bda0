package auth

import (
	"crypto/des"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// Passwords the oracle tests use: ASCII, and a long UTF-8 one with the
// passwd-file separator and spaces (longer than bcrypt's 72 bytes and
// HMAC-MD5's 64-byte block).
var schemeTestPasswords = []string{
	"secret",
	"pässwörd: with spaces ✓ and a length beyond seventy-two bytes, for bcrypt and HMAC",
}

// doveadmSchemes are the schemes checked both ways against doveadm pw.
var doveadmSchemes = []string{
	"PLAIN", "CLEAR", "CLEARTEXT", "PLAIN.B64", "PLAIN.HEX",
	"CRYPT", "DES-CRYPT", "MD5", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT",
	"ARGON2I", "ARGON2ID",
	"SHA", "SHA1", "SHA256", "SHA512", "SHA256.HEX", "SHA512.B64",
	"SMD5", "SSHA", "SSHA.HEX", "SSHA256", "SSHA256.HEX", "SSHA512", "SSHA512.B64", "SSHA.B64",
	"PLAIN-MD4", "PLAIN-MD5", "PLAIN-MD5.B64", "LDAP-MD5",
	"CRAM-MD5", "HMAC-MD5", "CRAM-MD5.B64",
	"SCRAM-SHA-1", "SCRAM-SHA-256", "PBKDF2",
}

// doveadmPw runs `doveadm pw` with args.
func doveadmPw(t *testing.T, args ...string) oracle.Result {
	t.Helper()
	res, err := oracle.Exec(oracle.Require(t, "doveadm"), nil, append([]string{"pw"}, args...)...)
	if err != nil {
		t.Fatalf("doveadm pw %v: %v", args, err)
	}
	return res
}

// doveadmVerifies reports whether `doveadm pw -t stored -p plain` accepts.
func doveadmVerifies(t *testing.T, stored, plain string) bool {
	t.Helper()
	res := doveadmPw(t, "-t", stored, "-p", plain)
	out := string(res.Stdout) + string(res.Stderr)
	switch {
	case res.Code == 0 && strings.Contains(out, "(verified)"):
		return true
	case res.Code != 0 && strings.Contains(out, "Password mismatch"):
		return false
	}
	t.Fatalf("doveadm pw -t %q: exit %d, %q", stored, res.Code, out)
	return false
}

// TestSchemesAgainstDoveadm: hashes made by doveadm verify with
// VerifyPassword (and a wrong password does not), and hashes made by
// HashPassword verify with doveadm pw -t (and a wrong password does not).
func TestSchemesAgainstDoveadm(t *testing.T) {
	oracle.Require(t, "doveadm")
	for _, scheme := range doveadmSchemes {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			for i, pw := range schemeTestPasswords {
				if i > 0 && strings.HasPrefix(scheme, "ARGON2") {
					break // a second memory-hard round adds seconds, not coverage
				}
				res := doveadmPw(t, "-s", scheme, "-p", pw)
				theirs := strings.TrimSpace(string(res.Stdout))
				if res.Code != 0 || !strings.HasPrefix(theirs, "{") {
					t.Fatalf("doveadm pw -s %s: exit %d: %s%s", scheme, res.Code, res.Stdout, res.Stderr)
				}
				if ok, err := VerifyPassword(theirs, pw, ""); !ok || err != nil {
					t.Errorf("VerifyPassword(doveadm's %q, password %d) = %v, %v; want true", theirs, i, ok, err)
				}
				// The wrong password differs in its first byte: DES crypt
				// reads 8 bytes, bcrypt 72.
				if ok, err := VerifyPassword(theirs, "x"+pw, ""); ok || err != nil {
					t.Errorf("VerifyPassword(doveadm's %q, wrong password) = %v, %v; want false", theirs, ok, err)
				}

				ours, err := HashPassword(scheme, pw)
				if err != nil {
					t.Fatalf("HashPassword(%s): %v", scheme, err)
				}
				if want := "{" + scheme + "}"; !strings.HasPrefix(ours, want) {
					t.Errorf("HashPassword(%s) = %q, want the prefix %s", scheme, ours, want)
				}
				if !doveadmVerifies(t, ours, pw) {
					t.Errorf("doveadm pw -t does not accept our %q for password %d", ours, i)
				}
				if i == 0 && doveadmVerifies(t, ours, "wrong") {
					t.Errorf("doveadm pw -t accepts our %q for a wrong password", ours)
				}
			}
		})
	}
}

// TestSchemesWithRoundsFromDoveadm: doveadm pw -r makes hashes with other
// costs; they verify too.
func TestSchemesWithRoundsFromDoveadm(t *testing.T) {
	oracle.Require(t, "doveadm")
	for _, c := range []struct{ scheme, rounds string }{
		{"SHA256-CRYPT", "1000"}, {"SHA512-CRYPT", "12345"}, {"BLF-CRYPT", "4"},
		{"ARGON2ID", "1"}, {"PBKDF2", "1234"},
	} {
		res := doveadmPw(t, "-s", c.scheme, "-r", c.rounds, "-p", "secret")
		h := strings.TrimSpace(string(res.Stdout))
		if res.Code != 0 || !strings.Contains(h, c.rounds) {
			t.Fatalf("doveadm pw -s %s -r %s: exit %d %q %s", c.scheme, c.rounds, res.Code, h, res.Stderr)
		}
		if ok, err := VerifyPassword(h, "secret", ""); !ok || err != nil {
			t.Errorf("VerifyPassword(%q) = %v, %v", h, ok, err)
		}
		if ok, _ := VerifyPassword(h, "Secret", ""); ok {
			t.Errorf("VerifyPassword(%q, wrong) = true", h)
		}
	}
}

// TestCryptFamilyAcrossSchemes: Dovecot's crypt-based schemes all call
// crypt(3), so a {SHA512-CRYPT} value holding an MD5-crypt hash verifies;
// MD5-CRYPT and BLF-CRYPT do not. doveadm decides each case.
func TestCryptFamilyAcrossSchemes(t *testing.T) {
	oracle.Require(t, "doveadm")
	md5h, _ := cryptCompute([]byte("secret"), "$1$saltsalt")
	sha, _ := cryptCompute([]byte("secret"), "$6$saltsaltsalt")
	des, _ := cryptCompute([]byte("secret"), "ab")
	blf, _ := bcryptHash([]byte("secret"), 4)
	for _, c := range []string{
		"{SHA512-CRYPT}" + md5h, "{SHA256-CRYPT}" + sha, "{DES-CRYPT}" + sha, "{CRYPT}" + des,
		"{CRYPT}" + blf, "{SHA512-CRYPT}" + blf, "{MD5}" + md5h, "{MD5-CRYPT}" + md5h,
		"{BLF-CRYPT}" + blf,
	} {
		want := doveadmVerifies(t, c, "secret")
		got, err := VerifyPassword(c, "secret", "")
		if got != want || (want && err != nil) {
			t.Errorf("VerifyPassword(%q) = %v, %v; doveadm says %v", c, got, err, want)
		}
	}
	// doveadm refuses these outright; so do we.
	for _, c := range []string{"{MD5-CRYPT}" + sha, "{BLF-CRYPT}" + md5h} {
		if ok, err := VerifyPassword(c, "secret", ""); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want an error", c, ok, err)
		}
		if doveadmPw(t, "-t", c, "-p", "secret").Code == 0 {
			t.Errorf("doveadm accepts %q", c)
		}
	}
}

// randomPassword returns printable ASCII, sometimes with UTF-8.
func randomPassword(r *rand.Rand) string {
	n := 1 + r.IntN(40)
	var b strings.Builder
	for i := 0; i < n; i++ {
		if r.IntN(10) == 0 {
			b.WriteString("é")
			continue
		}
		b.WriteByte(byte(0x20 + r.IntN(0x5f)))
	}
	return b.String()
}

func randomSalt(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = cryptAlphabet[r.IntN(64)]
	}
	return string(b)
}

// TestCryptAgainstMkpasswd compares our crypt(3) output byte for byte
// with libxcrypt's, through mkpasswd, for random passwords and salts.
func TestCryptAgainstMkpasswd(t *testing.T) {
	mk := oracle.Require(t, "mkpasswd")
	r := rand.New(rand.NewPCG(1, 2))
	type vec struct{ pw, method, salt, rounds, setting string }
	var vecs []vec
	for i := 0; i < 12; i++ {
		// mkpasswd insists on 8 characters for MD5-crypt and 8 to 16 for
		// SHA-crypt; openssl takes the shorter ones below.
		s8 := randomSalt(r, 8)
		s16 := randomSalt(r, 8+r.IntN(9))
		vecs = append(vecs,
			vec{randomPassword(r), "md5crypt", s8, "", "$1$" + s8},
			vec{randomPassword(r), "descrypt", s8[:1] + "a", "", s8[:1] + "a"},
			vec{randomPassword(r), "sha256crypt", s16, "", "$5$" + s16},
			vec{randomPassword(r), "sha512crypt", s16, "", "$6$" + s16},
			vec{randomPassword(r), "sha512crypt", s16, "1001", "$6$rounds=1001$" + s16},
			vec{randomPassword(r), "sha256crypt", s16, "5000", "$5$rounds=5000$" + s16},
		)
	}
	var wg sync.WaitGroup
	errs := make([]string, len(vecs))
	for i, v := range vecs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"-s", "-m", v.method, "-S", v.salt}
			if v.rounds != "" {
				args = append(args, "-R", v.rounds)
			}
			res, err := oracle.Exec(mk, []byte(v.pw+"\n"), args...)
			want := strings.TrimSpace(string(res.Stdout))
			if err != nil || res.Code != 0 || want == "" {
				errs[i] = fmt.Sprintf("mkpasswd %v: %v exit %d %s", args, err, res.Code, res.Stderr)
				return
			}
			got, gerr := cryptCompute([]byte(v.pw), v.setting)
			if got != want || gerr != nil {
				errs[i] = fmt.Sprintf("crypt(%q, %q) = %q, %v; libxcrypt %q", v.pw, v.setting, got, gerr, want)
			}
			if ok, verr := VerifyPassword("{CRYPT}"+want, v.pw, ""); !ok || verr != nil {
				errs[i] += fmt.Sprintf(" VerifyPassword(%q) = %v, %v", want, ok, verr)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}

	// Methods mkpasswd makes with its own salts: bcrypt, bcrypt-a,
	// bsdicrypt. They verify, and a wrong password does not.
	for _, m := range []string{"bcrypt", "bcrypt-a", "bsdicrypt", "bsdicrypt"} {
		pw := randomPassword(r)
		res, err := oracle.Exec(mk, []byte(pw+"\n"), "-s", "-m", m)
		h := strings.TrimSpace(string(res.Stdout))
		if err != nil || res.Code != 0 {
			t.Fatalf("mkpasswd -m %s: %v %s", m, err, res.Stderr)
		}
		if ok, err := VerifyPassword("{CRYPT}"+h, pw, ""); !ok || err != nil {
			t.Errorf("VerifyPassword(%s %q) = %v, %v", m, h, ok, err)
		}
		if ok, _ := VerifyPassword("{CRYPT}"+h, pw+"!", ""); ok {
			t.Errorf("VerifyPassword(%s %q, wrong) = true", m, h)
		}
	}
	// A long password for extended DES: folded in 8-byte steps.
	long := strings.Repeat("0123456789abcdef", 5)
	res, _ := oracle.Exec(mk, []byte(long+"\n"), "-s", "-m", "bsdicrypt")
	h := strings.TrimSpace(string(res.Stdout))
	if ok, err := VerifyPassword("{CRYPT}"+h, long, ""); !ok || err != nil {
		t.Errorf("VerifyPassword(bsdicrypt %q, 80-byte password) = %v, %v", h, ok, err)
	}
	if ok, _ := VerifyPassword("{CRYPT}"+h, long[:72], ""); ok {
		t.Errorf("extended DES ignored password bytes past 72")
	}
}

// TestCryptAgainstOpenSSL: openssl passwd -1, -5, -6 with a salt give the
// same strings as our crypt.
func TestCryptAgainstOpenSSL(t *testing.T) {
	ossl := oracle.Require(t, "openssl")
	r := rand.New(rand.NewPCG(3, 4))
	for _, flag := range []string{"-1", "-5", "-6"} {
		for i := 0; i < 6; i++ {
			pw := randomPassword(r)
			n := 1 + r.IntN(8)
			if flag != "-1" {
				n = 1 + r.IntN(16)
			}
			salt := randomSalt(r, n)
			res, err := oracle.Exec(ossl, nil, "passwd", flag, "-salt", salt, pw)
			want := strings.TrimSpace(string(res.Stdout))
			if err != nil || res.Code != 0 {
				t.Fatalf("openssl passwd %s: %v %s", flag, err, res.Stderr)
			}
			got, err := cryptCompute([]byte(pw), want)
			if got != want || err != nil {
				t.Errorf("crypt(%q, %q) = %q, %v", pw, want, got, err)
			}
		}
	}
}

// TestCryptSettingsLikeLibxcrypt: settings libxcrypt refuses are errors
// (mkpasswd/crypt gives "*0" for them); a few it accepts are checked too.
func TestCryptSettingsLikeLibxcrypt(t *testing.T) {
	for _, c := range []struct {
		setting string
		ok      bool
	}{
		{"$5$rounds=999$ab", false},       // below the minimum
		{"$5$rounds=0100$ab", false},      // leading zero
		{"$6$rounds=abc$ab", false},       // not a number
		{"$6$rounds=1000000000$x", false}, // above the maximum
		{"$5$rounds=1000", false},         // no salt terminator
		{"$6$a*b", false},                 // salt character
		{"$1$a:b", false},
		{"a!", false},
		{"_J9..abc", false},
		{"$y$j9T$abc$def", false}, // yescrypt: not implemented
		{"$6$", true},
		{"$1$", true},
		{"$6$rounds=1000$ab", true},
		{"$6$abcdefghijklmnopq$", true}, // salt cut to 16
		{"$1$abcdefghijk$", true},       // salt cut to 8
		{"_....abcd", true},
	} {
		_, err := cryptCompute([]byte("Hello world!"), c.setting)
		if (err == nil) != c.ok {
			t.Errorf("crypt setting %q: error %v, want ok=%v", c.setting, err, c.ok)
		}
	}
}

// TestDESAgainstCryptoDES: our DES (salt 0, one pass) is FIPS 46-3 DES.
func TestDESAgainstCryptoDES(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 200; i++ {
		key, blk := r.Uint64(), r.Uint64()
		var kb, bb, out [8]byte
		binary.BigEndian.PutUint64(kb[:], key)
		binary.BigEndian.PutUint64(bb[:], blk)
		c, err := des.NewCipher(kb[:])
		if err != nil {
			t.Fatal(err)
		}
		c.Encrypt(out[:], bb[:])
		ks := desSchedule(key)
		if got := desEncrypt(&ks, blk, 0, 1); got != binary.BigEndian.Uint64(out[:]) {
			t.Fatalf("DES(%x, %x) = %x, crypto/des %x", key, blk, got, out)
		}
	}
}

// TestVerifyPasswordForms covers Dovecot's reading of stored values:
// default schemes, the bare "$1$" form, encoding guesses, bad values.
func TestVerifyPasswordForms(t *testing.T) {
	md5c, _ := cryptCompute([]byte("secret"), "$1$abcdefgh")
	for _, c := range []struct {
		stored, def, plain string
		ok                 bool
		err                bool
	}{
		{"{PLAIN}secret", "", "secret", true, false},
		{"{plain}secret", "", "secret", true, false},
		{"{PLAIN}secret", "", "Secret", false, false},
		{"secret", "PLAIN", "secret", true, false},
		{"secret", "", "secret", false, false},               // default CRYPT: DES of "se"
		{md5c, "PLAIN", "secret", true, false},               // bare $1$ is MD5-CRYPT
		{md5c + "$trailing", "PLAIN", "secret", true, false}, // cut at the next $
		{"{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "", "secret", true, false},
		{"{SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4", "", "secret", true, false}, // hex guessed
		{"{SHA.HEX}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4", "", "secret", true, false},
		{"{SHA.B64}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4", "", "secret", false, true},
		{"{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", "", "secret", true, false},
		{"{PLAIN-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", "", "secret", true, false}, // base64 guessed
		{"{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", "", "secret", true, false},
		{"{PLAIN-TRUNC}6-secret", "", "secret", true, false},
		{"{PLAIN-TRUNC}3-sec", "", "secretive", true, false},
		{"{PLAIN-TRUNC}3-sec", "", "se", false, false},
		{"{PLAIN-TRUNC}secret", "", "secret", false, true},
		{"{NOSUCH}secret", "", "secret", false, true},
		{"{SHA.XYZ}abc", "", "secret", false, true},
		{"{PLAIN}", "", "", false, false},
		{"", "PLAIN", "", false, false},
		{"{CRYPT}", "", "", false, false},
		{"{SSHA}AAAA", "", "secret", false, true},
		{"{ARGON2ID}$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", "", "x", false, true},
		{"{ARGON2ID}$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", "", "x", false, true},
		{"{BLF-CRYPT}$2y$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABC", "", "x", false, true},
		{"{SCRAM-SHA-256}10,c2FsdA==,AAAA,AAAA", "", "x", false, true},
		{"{unterminated", "PLAIN", "{unterminated", true, false},
	} {
		ok, err := VerifyPassword(c.stored, c.plain, c.def)
		if ok != c.ok || (err != nil) != c.err {
			t.Errorf("VerifyPassword(%q, %q, %q) = %v, %v; want %v, error %v", c.stored, c.plain, c.def, ok, err, c.ok, c.err)
		}
	}
	if _, err := VerifyPassword("{NOSUCH}x", "x", ""); !errors.Is(err, ErrUnknownScheme) {
		t.Errorf("unknown scheme error %v does not wrap ErrUnknownScheme", err)
	}
	if _, err := HashPassword("NOSUCH", "x"); !errors.Is(err, ErrUnknownScheme) {
		t.Errorf("HashPassword(NOSUCH) error %v does not wrap ErrUnknownScheme", err)
	}
}

// TestPlainTruncAgainstDoveadm: PLAIN-TRUNC's prefix rule, as doveadm
// applies it.
func TestPlainTruncAgainstDoveadm(t *testing.T) {
	oracle.Require(t, "doveadm")
	for _, c := range []struct{ stored, plain string }{
		{"{PLAIN-TRUNC}3-sec", "secretive"}, {"{PLAIN-TRUNC}3-sec", "se"},
		{"{PLAIN-TRUNC}6-secret", "secret"}, {"{PLAIN-TRUNC}4-sec", "sec"},
	} {
		want := doveadmVerifies(t, c.stored, c.plain)
		if got, err := VerifyPassword(c.stored, c.plain, ""); got != want || err != nil {
			t.Errorf("VerifyPassword(%q, %q) = %v, %v; doveadm %v", c.stored, c.plain, got, err, want)
		}
	}
}

// TestSplitScheme: the scheme and value Dovecot reads.
func TestSplitScheme(t *testing.T) {
	for _, c := range []struct{ stored, def, scheme, value string }{
		{"{ssha.b64}abc", "", "SSHA.B64", "abc"},
		{"abc", "", "CRYPT", "abc"},
		{"abc", "plain", "PLAIN", "abc"},
		{"$1$salt$hash$x", "PLAIN", "MD5-CRYPT", "$1$salt$hash"},
		{"$1$salt", "PLAIN", "PLAIN", "$1$salt"},
		{"{}x", "", "", "x"},
	} {
		s, v := SplitScheme(c.stored, c.def)
		if s != c.scheme || v != c.value {
			t.Errorf("SplitScheme(%q, %q) = %q, %q; want %q, %q", c.stored, c.def, s, v, c.scheme, c.value)
		}
	}
}
