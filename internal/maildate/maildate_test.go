package maildate

import (
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	est := time.FixedZone("EST", -5*3600)
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(1996, 12, 9, 5, 38, 26, 0, est), "Mon,  9 Dec 1996 05:38:26 -0500 (EST)"},
		{time.Date(2026, 11, 28, 4, 7, 0, 0, time.UTC), "Sat, 28 Nov 2026 04:07:00 +0000 (UTC)"},
	} {
		if got := Format(c.t); got != c.want {
			t.Errorf("Format(%v) = %q, want %q", c.t, got, c.want)
		}
	}
}
