package auth

// CRAM-MD5 secrets (RFC 2195). The response is HMAC-MD5 (RFC 2104) keyed
// with the password; HMAC-MD5 hashes the key padded and XORed with ipad
// and with opad as the first 64-byte block of two MD5 runs. Dovecot's
// {CRAM-MD5} (and {HMAC-MD5}) scheme stores the two MD5 states after those
// blocks, so that the server can answer without the password (RFC 2104
// section 4 describes this precomputation): 32 bytes, the opad state's four
// words then the ipad state's, each word little-endian.

import (
	"crypto/md5"
	"encoding"
	"encoding/binary"
	"hash"
)

const cramContextLen = 32

// cramContext computes the stored CRAM-MD5 value for a password.
func cramContext(plain []byte) [cramContextLen]byte {
	key := plain
	if len(key) > md5.BlockSize {
		s := md5.Sum(key)
		key = s[:]
	}
	var ipad, opad [md5.BlockSize]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	var out [cramContextLen]byte
	md5State(opad[:], out[0:16])
	md5State(ipad[:], out[16:32])
	return out
}

// md5State hashes one block and writes MD5's four state words,
// little-endian, to dst. crypto/md5 exposes its state only through
// MarshalBinary: "md5\x01", the words big-endian, the pending block, the
// length.
func md5State(block []byte, dst []byte) {
	h := md5.New()
	h.Write(block)
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("auth: crypto/md5 state cannot be marshalled: " + err.Error())
	}
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint32(dst[4*i:], binary.BigEndian.Uint32(st[4+4*i:]))
	}
}

// md5Resume returns an MD5 hash that has already absorbed one 64-byte
// block leaving the state words (little-endian, as stored).
func md5Resume(words []byte) hash.Hash {
	st := make([]byte, 0, 4+16+md5.BlockSize+8)
	st = append(st, "md5\x01"...)
	for i := 0; i < 4; i++ {
		st = binary.BigEndian.AppendUint32(st, binary.LittleEndian.Uint32(words[4*i:]))
	}
	st = append(st, make([]byte, md5.BlockSize)...)
	st = binary.BigEndian.AppendUint64(st, md5.BlockSize)
	h := md5.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st); err != nil {
		panic("auth: crypto/md5 state cannot be restored: " + err.Error())
	}
	return h
}

// cramResponse computes HMAC-MD5(password, challenge) from a stored
// context.
func cramResponse(ctx [cramContextLen]byte, challenge []byte) []byte {
	inner := md5Resume(ctx[16:32])
	inner.Write(challenge)
	outer := md5Resume(ctx[0:16])
	outer.Write(inner.Sum(nil))
	return outer.Sum(nil)
}
