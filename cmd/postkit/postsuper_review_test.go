package main

import (
	"testing"
)

// "ALL" read from standard input (postsuper -d -) is a queue ID like any
// other line there, not the ALL operand: Postfix deletes nothing, and
// postkit must not turn the line into ALL on the control socket.
func TestPostsuperStdinALLMatchesPostfix(t *testing.T) {
	pf, pfIDs, ps, pq, _ := pfHeld(t, 2)
	sys, ours := oursHeld(t, 2)
	compareSteps(t, pf, map[string]string{"postsuper": ps, "postqueue": pq}, pfIDs, sys, ours, []qcStep{
		{"postsuper", []string{"-d", "-"}, "ALL\n"},
		{"postsuper", []string{"-d", "-", "hold"}, "ID0\nALL\n"},
		{"postsuper", []string{"-H", "ALL"}, ""},
	})
}

// postsuper -f with a queue name: the release from hold honours the named
// queues as Postfix's does.
func TestPostsuperForceExpireQueuesMatchPostfix(t *testing.T) {
	pf, pfIDs, ps, _, _ := pfHeld(t, 2)
	sys, ours := oursHeld(t, 2)
	compareSteps(t, pf, map[string]string{"postsuper": ps}, pfIDs, sys, ours, []qcStep{
		{"postsuper", []string{"-f", "ALL", "deferred"}, ""},
		{"postsuper", []string{"-f", "ID0", "incoming"}, ""},
		{"postsuper", []string{"-f", "ALL", "hold"}, ""},
	})
}
