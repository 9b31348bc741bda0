package main

import (
	"fmt"
	"io"
)

// Placeholder: replaced by the real implementation.
func postaliasMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "not implemented yet")
	return 1
}
func newaliasesMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "not implemented yet")
	return 1
}
