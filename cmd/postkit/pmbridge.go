package main

// This file is the seam between postmap/postalias and the maps functions
// they build on (the source reader and the CDB writer): the one place to
// change if their signatures move.

import (
	"io"

	"github.com/postkit-mail/postkit/maps"
)

// pmReadSource parses a postmap(1) or aliases(5) source.
var pmReadSource = func(r io.Reader, file string, opts maps.Options) ([]maps.Record, error) {
	return maps.ReadSource(r, file, opts)
}

// pmWriteCDB writes a CDB file; nul adds a NUL to keys and values
// (postmap -N). The records must have distinct keys: build drops
// duplicates first (printing Postfix's warnings in source order), so the
// writer skips its own check (maps.CDBWriteOptions.Unique).
var pmWriteCDB = func(path string, records []maps.Record, nul bool) error {
	return maps.WriteCDB(path, records, maps.CDBWriteOptions{AppendNul: nul, Unique: true})
}
