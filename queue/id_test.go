package queue

import (
	"sort"
	"testing"
	"time"
)

func TestIDRoundTrip(t *testing.T) {
	cases := []struct {
		t   time.Time
		ino uint64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(1, 1000), 1},
		{time.Unix(51, 51000), 7}, // a 'z' in the time part
		{time.Unix(1764302400, 999999000), 50},
		{time.Unix(1764302400, 123456000), 51},
		{time.Unix(1<<40, 5000), 1<<64 - 1},
	}
	for _, c := range cases {
		id := formatID(c.t, c.ino)
		if !ValidID(id) {
			t.Errorf("%s: not valid", id)
		}
		got, ino, err := ParseID(id)
		if err != nil || !got.Equal(c.t) || ino != c.ino {
			t.Errorf("ParseID(%s) = %v %d %v, want %v %d", id, got, ino, err, c.t, c.ino)
		}
	}
}

// The shape Postfix documents: six characters of seconds, four of
// microseconds, 'z', the inode in base 51 (no 'z', no vowels).
func TestIDShape(t *testing.T) {
	id := formatID(time.Unix(1764302400, 5000), 51*51+3)
	if len(id) != 6+4+1+3 || id[10] != 'z' {
		t.Fatalf("%q: want 6+4 time characters, 'z', 3 inode characters", id)
	}
	// 51*51+3 in base 51 is "103"; 5 µs in four characters is "0005".
	if id[6:] != "0005z103" {
		t.Errorf("%q: want ...0005z103", id)
	}
	// 1764302400 = 52^5*4 + ...: checked by decoding, and the alphabet has
	// no vowels.
	for _, c := range "aeiouAEIOU" {
		for _, d := range id {
			if c == d {
				t.Errorf("%q contains a vowel", id)
			}
		}
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, id := range []string{"", "z", "3F1A2B4C5D", "0000000000z", "00000a0000z1", "000000ZZZZz1",
		"0000000000z1z", "0000000000zA", "0000000000z!",
		"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz0000z1"} {
		if _, _, err := ParseID(id); err == nil {
			t.Errorf("ParseID(%q) accepted", id)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"3F1A2B4C5D": true, "4Yxk3B5xWJzBq2": true, "": false, "../etc": false,
		".tmp": false, "a/b": false, "abc def": false, "0123456789012345678901234567890123456789x": false,
	} {
		if ValidID(id) != want {
			t.Errorf("ValidID(%q) = %v", id, !want)
		}
	}
}

// IDs made in a burst within one microsecond still sort in creation order.
func TestIDsTimeOrdered(t *testing.T) {
	var c idClock
	now := time.Unix(1764302400, 0)
	var ids []string
	for i := range 1000 {
		ids = append(ids, formatID(c.next(now), uint64(1000-i)))
	}
	if !sort.SliceIsSorted(ids, func(i, j int) bool { return lessID(ids[i], ids[j]) }) {
		t.Error("IDs not in creation order")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate %s", id)
		}
		seen[id] = true
	}
}
