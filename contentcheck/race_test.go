//go:build race

package contentcheck

const raceEnabled = true
