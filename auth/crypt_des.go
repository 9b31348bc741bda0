package auth

// DES-based crypt(3): the traditional 13-character form (salt of two
// characters, 25 encryptions of a zero block, passwords cut to 8 bytes) and
// BSDi's extended form ("_" + 4 characters of round count + 4 of salt,
// passwords of any length folded into the key). Both perturb DES's
// expansion permutation with the salt, which crypto/des cannot do, so DES
// is written out here from FIPS 46-3. It is only used to verify old
// hashes (and to make DES-CRYPT hashes, which doveadm still offers).

import (
	"encoding/binary"
	"fmt"
)

// FIPS 46-3 tables, bit positions counted from 1 at the most significant
// bit of the input.
var (
	desIP = [64]uint8{
		58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
		62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
		57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
		61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
	}
	desFP = [64]uint8{
		40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31,
		38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29,
		36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
		34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25,
	}
	desE = [48]uint8{
		32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9,
		8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
		16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25,
		24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1,
	}
	desP = [32]uint8{
		16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
		2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
	}
	desPC1 = [56]uint8{
		57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
		10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
		63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
		14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
	}
	desPC2 = [48]uint8{
		14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10,
		23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
		41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48,
		44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
	}
	desShifts = [16]uint8{1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1}
	// S-boxes, each as 4 rows of 16.
	desS = [8][64]uint8{
		{14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7,
			0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
			4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0,
			15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13},
		{15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10,
			3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
			0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15,
			13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9},
		{10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8,
			13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
			13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7,
			1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12},
		{7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15,
			13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
			10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4,
			3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14},
		{2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9,
			14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
			4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14,
			11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3},
		{12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11,
			10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
			9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6,
			4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13},
		{4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1,
			13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
			1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2,
			6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12},
		{13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7,
			1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
			7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8,
			2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11},
	}
)

// desSP combines each S-box with the P permutation: desSP[i][six] is the
// P-permuted 32-bit output of S-box i for its 6 input bits, so a round
// needs eight lookups and ORs.
var desSP = func() (t [8][64]uint32) {
	for i := 0; i < 8; i++ {
		for six := 0; six < 64; six++ {
			row := (six>>4)&2 | six&1
			col := (six >> 1) & 0xf
			out := uint64(desS[i][row*16+col]) << (28 - 4*uint(i))
			t[i][six] = uint32(desPermute(out, 32, desP[:]))
		}
	}
	return t
}()

// desPermute builds len(table) output bits, the first from input bit
// table[0] (counted from 1 at the top of an n-bit input).
func desPermute(in uint64, n uint, table []uint8) uint64 {
	var out uint64
	for _, pos := range table {
		out = out<<1 | (in>>(n-uint(pos)))&1
	}
	return out
}

// desKeys is a key schedule: 16 subkeys of 48 bits.
type desKeys [16]uint64

func desSchedule(key uint64) (ks desKeys) {
	cd := desPermute(key, 64, desPC1[:])
	c, d := uint32(cd>>28), uint32(cd&0x0fffffff)
	for i, s := range desShifts {
		c = (c<<s | c>>(28-s)) & 0x0fffffff
		d = (d<<s | d>>(28-s)) & 0x0fffffff
		ks[i] = desPermute(uint64(c)<<28|uint64(d), 56, desPC2[:])
	}
	return ks
}

// desEncrypt encrypts block count times with the key schedule, swapping
// expansion bits i and i+24 (counted from the top of the 48) for each set
// bit of saltMask (bit 23 of the mask for expansion bit 0).
func desEncrypt(ks *desKeys, block uint64, saltMask uint32, count int) uint64 {
	for ; count > 0; count-- {
		b := desPermute(block, 64, desIP[:])
		l, r := uint32(b>>32), uint32(b)
		for i := 0; i < 16; i++ {
			e := desPermute(uint64(r), 32, desE[:])
			hi, lo := uint32(e>>24), uint32(e&0xffffff)
			t := (hi ^ lo) & saltMask
			e = uint64(hi^t)<<24 | uint64(lo^t)
			e ^= ks[i]
			var f uint32
			for j := 0; j < 8; j++ {
				f |= desSP[j][(e>>(42-6*uint(j)))&0x3f]
			}
			l, r = r, l^f
		}
		block = desPermute(uint64(r)<<32|uint64(l), 64, desFP[:])
	}
	return block
}

// desSaltMask turns a crypt salt value into the expansion swap mask.
func desSaltMask(salt uint32, bits int) uint32 {
	var mask uint32
	for i := 0; i < bits; i++ {
		if salt&(1<<uint(i)) != 0 {
			mask |= 0x800000 >> uint(i)
		}
	}
	return mask
}

// desKeyFrom makes a DES key from up to 8 password bytes: 7 bits of each,
// shifted to leave the parity bit.
func desKeyFrom(p []byte) uint64 {
	var kb [8]byte
	for i := 0; i < 8 && i < len(p); i++ {
		kb[i] = p[i] << 1
	}
	return binary.BigEndian.Uint64(kb[:])
}

// desOutput encodes the 64-bit result as 11 characters (66 bits, the last
// two zero).
func desOutput(dst []byte, v uint64) []byte {
	for i := 0; i < 11; i++ {
		shift := 58 - 6*i
		var idx uint64
		if shift >= 0 {
			idx = (v >> uint(shift)) & 0x3f
		} else {
			idx = (v << uint(-shift)) & 0x3f
		}
		dst = append(dst, cryptAlphabet[idx])
	}
	return dst
}

// desCrypt is traditional DES crypt: the first two characters of setting
// are the salt; only 8 password bytes count.
func desCrypt(plain []byte, setting string) (string, error) {
	if len(setting) < 2 {
		return "", fmt.Errorf("DES crypt setting %q is too short: %w", setting, errCryptSetting)
	}
	s0, s1 := cryptIndex(setting[0]), cryptIndex(setting[1])
	if s0 < 0 || s1 < 0 {
		return "", fmt.Errorf("DES crypt salt %q: %w", setting[:2], errCryptSetting)
	}
	ks := desSchedule(desKeyFrom(plain))
	v := desEncrypt(&ks, 0, desSaltMask(uint32(s0|s1<<6), 12), 25)
	out := make([]byte, 0, 13)
	out = append(out, setting[:2]...)
	return string(desOutput(out, v)), nil
}

// bsdiCrypt is BSDi's extended DES crypt: "_CCCCSSSS" + 11 characters.
func bsdiCrypt(plain []byte, setting string) (string, error) {
	if len(setting) < 9 || !cryptSaltOK(setting[1:9]) {
		return "", fmt.Errorf("extended DES crypt setting %q: %w", setting, errCryptSetting)
	}
	var count, salt uint32
	for i := 0; i < 4; i++ {
		count |= uint32(cryptIndex(setting[1+i])) << (6 * uint(i))
		salt |= uint32(cryptIndex(setting[5+i])) << (6 * uint(i))
	}
	if count == 0 {
		count = 1 // libxcrypt runs a count of 0 as 1
	}
	if count > bsdiMaxCount {
		return "", fmt.Errorf("extended DES crypt count %d is above postkit's limit %d", count, bsdiMaxCount)
	}
	// The first 8 bytes make the key; each further 8 are folded in by
	// encrypting the key with itself and XORing them in.
	key := desKeyFrom(plain)
	ks := desSchedule(key)
	rest := plain[min(8, len(plain)):]
	for len(rest) > 0 {
		key = desEncrypt(&ks, key, 0, 1)
		key ^= desKeyFrom(rest)
		rest = rest[min(8, len(rest)):]
		ks = desSchedule(key)
	}
	v := desEncrypt(&ks, 0, desSaltMask(salt, 24), int(count))
	out := make([]byte, 0, 20)
	out = append(out, setting[:9]...)
	return string(desOutput(out, v)), nil
}

// bsdiMaxCount bounds the work a stored extended DES hash can ask for
// (the format allows 2^24 encryptions).
const bsdiMaxCount = 1 << 20
