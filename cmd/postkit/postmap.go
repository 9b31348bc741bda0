package main

import (
	"fmt"
	"io"
)

// Placeholder: replaced by the real implementation.
func postmapMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "not implemented yet")
	return 1
}
