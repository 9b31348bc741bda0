// Package policy shows how to unit-test a mail policy in Go, with no
// network and no mail server: the SMTP restrictions and header checks of
// main.cf (this directory's main.cf, header_checks and mime_header_checks,
// files Postfix itself could use) are loaded with postkit's restrictions
// and contentcheck packages, and policy_test.go asserts what a client
// would be told for each case. Run it with
//
//	go test ./examples/policy
//
// Change main.cf, run the test, see which answers changed: the same
// workflow as for any other code.
package policy
