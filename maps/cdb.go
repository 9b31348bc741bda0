package maps

// cdb: tables, the constant database format of D. J. Bernstein as written by
// tinycdb, which Postfix's cdb_table support (postmap cdb:/path → /path.cdb)
// uses.
//
// File layout (all numbers little-endian uint32):
//
//	header   256 × (table position, table slot count), 2048 bytes
//	records  klen, vlen, key bytes, value bytes; in insertion order
//	tables   256 hash tables of (hash, record position) slots
//
// The hash is h = ((h << 5) + h) ^ c over the key bytes, starting at 5381.
// Table h&255 holds twice as many slots as it has records; a record goes to
// slot (h>>8) % slots or the next free one after it (wrapping around). An
// empty table's position is where the next table starts.
//
// What Postfix stores (verified with postmap 3.7.11): keys folded to lower
// case, no trailing NUL by default (postmap -N adds one to key and value),
// records in source order, a duplicate key keeps the first value and draws
// "FILE: duplicate entry: "key"" where FILE is the path without ".cdb".
// When reading, Postfix tries the key with a trailing NUL, then without, and
// sticks to whichever form matched first.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

const (
	cdbHeaderSize = 2048
	cdbMaxSize    = 1<<32 - 1
)

// cdbHash is the cdb hash function over s, plus a trailing NUL when nul.
func cdbHash(s string, nul bool) uint32 {
	h := uint32(5381)
	for i := 0; i < len(s); i++ {
		h = ((h << 5) + h) ^ uint32(s[i])
	}
	if nul {
		h = (h << 5) + h
	}
	return h
}

// cdbRegion is a mapped (or read) file image. It is unmapped once, either by
// Close or by a cleanup when the table has moved on to a newer file and no
// lookup still holds the old one.
type cdbRegion struct {
	b      []byte // the file image
	mapped []byte // the whole mapping to unmap (file-backed or anonymous), nil if b is heap memory
	once   sync.Once
}

func (r *cdbRegion) release() {
	r.once.Do(func() {
		if r.mapped != nil {
			syscall.Munmap(r.mapped)
		}
		r.b, r.mapped = nil, nil
	})
}

// cdbMemMax is the largest file a busy table copies into anonymous memory
// (see cdbMapInMemory); larger files stay mapped from the page cache.
const cdbMemMax = 256 << 20

// cdbHugePage is the size of an x86-64 transparent huge page.
const cdbHugePage = 2 << 20

// cdbMapInMemory reads the size-byte file f into an anonymous mapping
// aligned to 2 MiB and asks the kernel for transparent huge pages there.
// Why: a lookup touches two random places of the file (slot and record);
// in a file-backed mapping each touch is likely a TLB miss on a 4 KiB
// page-cache page, and under virtualisation a TLB miss costs a nested page
// walk. With huge pages, a 100 MB table needs 50 TLB entries, not 25,000.
// The price is a private copy of the file, hence cdbMemMax.
func cdbMapInMemory(f *os.File, size int64) (*cdbRegion, error) {
	n := int((size + cdbHugePage - 1) &^ (cdbHugePage - 1))
	all, err := syscall.Mmap(-1, 0, n+cdbHugePage, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, err
	}
	off := 0
	if a := uintptr(unsafe.Pointer(&all[0])) & (cdbHugePage - 1); a != 0 {
		off = int(cdbHugePage - a)
	}
	b := all[off : off+n]
	// Advisory: without THP support the copy still avoids page-cache
	// lookups, so a failure here is not an error.
	syscall.Madvise(b, 14) // MADV_HUGEPAGE
	b = b[:size]
	if _, err := f.ReadAt(b, 0); err != nil {
		syscall.Munmap(all)
		return nil, err
	}
	return &cdbRegion{b: b, mapped: all}, nil
}

// cdbData is one version of an open cdb file.
type cdbData struct {
	b       []byte // the whole file
	dataEnd uint32 // end of the record area
	region  *cdbRegion
	// inMemory: loaded for a busy table (a copy when small enough); a
	// table starts on a plain mapping and moves at its first file check.
	inMemory bool
	// nulMode is Postfix's DICT_FLAG_TRY1NULL/TRY0NULL lock-in:
	// 0 try both, 1 only with a trailing NUL, 2 only without.
	nulMode atomic.Uint32
}

// cdbCorrupt is the error for a file that is not a valid cdb file.
func cdbCorrupt(file, format string, args ...any) error {
	return fmt.Errorf("%s: corrupt or truncated cdb file: %s", file, fmt.Sprintf(format, args...))
}

// cdbCheck validates the header of b and returns the end of the record area.
func cdbCheck(file string, b []byte) (uint32, error) {
	if len(b) < cdbHeaderSize {
		return 0, cdbCorrupt(file, "%d bytes, shorter than the 2048-byte header", len(b))
	}
	dataEnd := uint64(len(b))
	for t := 0; t < 256; t++ {
		pos := uint64(binary.LittleEndian.Uint32(b[t*8:]))
		n := uint64(binary.LittleEndian.Uint32(b[t*8+4:]))
		if pos < cdbHeaderSize || pos+n*8 > uint64(len(b)) {
			return 0, cdbCorrupt(file, "hash table %d at %d with %d slots is outside the file (%d bytes)", t, pos, n, len(b))
		}
		dataEnd = min(dataEnd, pos)
	}
	return uint32(dataEnd), nil
}

// cdbLoad maps file read-only (or reads it when mapping is not possible).
// With inMemory and a file of at most cdbMemMax bytes, the file is copied
// into huge-page memory instead (see cdbMapInMemory).
func cdbLoad(file string, inMemory bool) (*cdbData, fileStamp, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fileStamp{}, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fileStamp{}, err
	}
	if st.Size > cdbMaxSize {
		return nil, fileStamp{}, cdbCorrupt(file, "%d bytes is larger than 4 GiB", st.Size)
	}
	var reg *cdbRegion
	if st.Size >= cdbHeaderSize {
		if inMemory && st.Size <= cdbMemMax {
			reg, _ = cdbMapInMemory(f, st.Size)
		}
		if reg == nil {
			if b, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size), syscall.PROT_READ, syscall.MAP_SHARED); err == nil {
				reg = &cdbRegion{b: b, mapped: b}
			}
		}
	}
	if reg == nil {
		data, _, err := readFileStamped(file)
		if err != nil {
			return nil, fileStamp{}, err
		}
		reg = &cdbRegion{b: data}
	}
	end, err := cdbCheck(file, reg.b)
	if err != nil {
		reg.release()
		return nil, fileStamp{}, err
	}
	d := &cdbData{b: reg.b, dataEnd: end, region: reg, inMemory: inMemory}
	runtime.AddCleanup(d, func(r *cdbRegion) { r.release() }, reg)
	return d, stampOf(&st), nil
}

// find returns the value of key (with a trailing NUL when nul) and whether
// it was found. A slot or record that points outside the file is an error.
func (d *cdbData) find(file, key string, nul bool) (val []byte, found bool, err error) {
	b := d.b
	klen := uint64(len(key))
	if nul {
		klen++
	}
	h := cdbHash(key, nul)
	t := (h & 255) * 8
	tpos := binary.LittleEndian.Uint32(b[t:])
	n := binary.LittleEndian.Uint32(b[t+4:])
	if n == 0 {
		return nil, false, nil
	}
	slot := (h >> 8) % n
	for range n {
		sp := uint64(tpos) + uint64(slot)*8 // checked at open: inside b
		hv := binary.LittleEndian.Uint32(b[sp:])
		rp := uint64(binary.LittleEndian.Uint32(b[sp+4:]))
		if rp == 0 {
			return nil, false, nil
		}
		if hv == h {
			if rp < cdbHeaderSize || rp+8 > uint64(d.dataEnd) {
				return nil, false, cdbCorrupt(file, "record position %d outside the record area", rp)
			}
			kl := uint64(binary.LittleEndian.Uint32(b[rp:]))
			vl := uint64(binary.LittleEndian.Uint32(b[rp+4:]))
			if rp+8+kl+vl > uint64(d.dataEnd) {
				return nil, false, cdbCorrupt(file, "record at %d runs past the record area", rp)
			}
			if kl == klen {
				k := b[rp+8 : rp+8+kl]
				if nul {
					if k[kl-1] == 0 && string(k[:kl-1]) == key {
						return b[rp+8+kl : rp+8+kl+vl], true, nil
					}
				} else if string(k) == key {
					return b[rp+8+kl : rp+8+kl+vl], true, nil
				}
			}
		}
		if slot++; slot == n {
			slot = 0
		}
	}
	return nil, false, nil
}

// cdbCString is what C code sees of a stored string: everything up to the
// first NUL.
func cdbCString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// cdbMap is an open cdb: table.
type cdbMap struct {
	name   string // "/path", as after "cdb:"
	file   string // "/path.cdb"
	opts   Options
	cur    atomic.Pointer[cdbData]
	watch  fileWatch
	mu     sync.Mutex
	closed atomic.Bool
}

// openCDB opens "cdb:/path", reading /path.cdb as postmap wrote it.
func openCDB(ctx context.Context, name string, opts Options) (Map, error) {
	m := &cdbMap{name: name, file: name + ".cdb", opts: opts}
	d, st, err := cdbLoad(m.file, false)
	if err != nil {
		return nil, &Error{Map: "cdb:" + name, Err: err}
	}
	m.cur.Store(d)
	m.watch.init(m.file, st)
	return m, nil
}

// data returns the current file image, first switching to a new file when
// postmap has replaced it (checked about once a second).
func (m *cdbMap) data() (*cdbData, error) {
	if m.watch.due() && !m.closed.Load() {
		m.reload()
	}
	d := m.cur.Load()
	if d == nil {
		return nil, &Error{Map: "cdb:" + m.name, Err: errors.New("table is closed")}
	}
	return d, nil
}

// reload switches to a replaced file. It also moves a table still on its
// first, file-backed mapping into memory: a table asked again a second or
// more after it was opened is a busy one (a daemon's), and a one-off
// "postmap -q" never pays for the copy.
func (m *cdbMap) reload() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return
	}
	if changed, _ := m.watch.changed(); !changed {
		// (A file that cannot be stat'ed keeps the old contents.)
		if cur := m.cur.Load(); cur != nil && !cur.inMemory {
			if d, st, err := cdbLoad(m.file, true); err == nil && st == m.watch.get() {
				d.nulMode.Store(cur.nulMode.Load())
				m.cur.Store(d)
			}
		}
		return
	}
	d, st, err := cdbLoad(m.file, true)
	if err != nil {
		// Keep answering from the old file; a half-written file is the
		// writer's bug, not a reason to stop.
		m.opts.warn(Warning{File: m.file, Msg: "cannot reload: " + err.Error()})
		return
	}
	m.watch.set(st)
	m.cur.Store(d) // the old image is unmapped once no lookup holds it
}

// Lookup implements Map. The key is folded to lower case; the value is
// returned up to its first NUL, as Postfix's C code sees it.
func (m *cdbMap) Lookup(ctx context.Context, key string) (string, bool, error) {
	d, err := m.data()
	if err != nil {
		return "", false, err
	}
	v, found, err := m.lookupIn(d, FoldKey(key))
	// The value was copied out of the mapping; only now may the old image
	// be unmapped (after a reload) by its cleanup.
	runtime.KeepAlive(d)
	return v, found, err
}

func (m *cdbMap) lookupIn(d *cdbData, key string) (string, bool, error) {
	mode := d.nulMode.Load()
	var val []byte
	found := false
	var err error
	if mode != 2 {
		if val, found, err = d.find(m.file, key, true); err != nil {
			return "", false, &Error{Map: "cdb:" + m.name, Key: key, Err: err}
		}
		if found && mode == 0 {
			d.nulMode.Store(1)
		}
	}
	if !found && mode != 1 {
		if val, found, err = d.find(m.file, key, false); err != nil {
			return "", false, &Error{Map: "cdb:" + m.name, Key: key, Err: err}
		}
		if found && mode == 0 {
			d.nulMode.Store(2)
		}
	}
	if !found {
		return "", false, nil
	}
	v := cdbCString(val)
	if v == "" {
		return "", true, &Error{Map: "cdb:" + m.name, Key: key, Err: ErrEmptyValue}
	}
	return v, true, nil
}

// Entries implements Iterable: the records in file order, as
// "postmap -s cdb:/path" lists them.
func (m *cdbMap) Entries(ctx context.Context, yield func(Entry) bool) error {
	d, err := m.data()
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(d) // the mapping must outlive the loop
	b, end := d.b, uint64(d.dataEnd)
	for p := uint64(cdbHeaderSize); p < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p+8 > end {
			return &Error{Map: "cdb:" + m.name, Err: cdbCorrupt(m.file, "record header at %d runs past the record area", p)}
		}
		kl := uint64(binary.LittleEndian.Uint32(b[p:]))
		vl := uint64(binary.LittleEndian.Uint32(b[p+4:]))
		if p+8+kl+vl > end {
			return &Error{Map: "cdb:" + m.name, Err: cdbCorrupt(m.file, "record at %d runs past the record area", p)}
		}
		e := Entry{cdbCString(b[p+8 : p+8+kl]), cdbCString(b[p+8+kl : p+8+kl+vl])}
		if !yield(e) {
			return nil
		}
		p += 8 + kl + vl
	}
	return nil
}

// Close implements io.Closer: it unmaps the file. Lookups must not run
// concurrently with or after Close; those after it get an error.
func (m *cdbMap) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed.Store(true)
	if d := m.cur.Swap(nil); d != nil {
		d.region.release()
	}
	return nil
}

// Kind implements Kinder.
func (m *cdbMap) Kind() Kind { return Fixed }

// Name implements Named.
func (m *cdbMap) Name() string { return "cdb:" + m.name }

// CDBWriteOptions tune how WriteCDB and CDBWriter build a file.
type CDBWriteOptions struct {
	// AppendNul stores keys and values with a trailing NUL byte, as
	// "postmap -N" does. The default (no NUL) is postmap's default for cdb.
	AppendNul bool
	// Warn receives a warning for each duplicate key; the first value is
	// kept, as postmap(1) does. Nil discards the warnings.
	Warn func(Warning)
	// Source names the table in warnings; empty means the output path
	// without its ".cdb" suffix, which is what postmap prints.
	Source string
	// Unique promises that the keys are distinct (the caller has already
	// dropped duplicates, as postkit postmap does while it prints its
	// warnings in source order). The writer then skips its own duplicate
	// check, which for a million records costs a hash map as large as the
	// table. A broken promise still gives a valid file, whose lookups
	// find the first of the duplicates.
	Unique bool
}

// WriteCDB writes records to a new cdb file at path (the caller passes
// "/x.cdb"), atomically: the file appears complete or not at all. Keys must
// already be folded (see FoldKey); duplicates keep the first value and are
// reported through opts.Warn with Postfix's text.
func WriteCDB(path string, records []Record, opts CDBWriteOptions) error {
	w, err := NewCDBWriter(path, opts)
	if err != nil {
		return err
	}
	w.recs = make([]cdbSlot, 0, len(records))
	for _, r := range records {
		if err := w.Add(r.Key, r.Value); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

// cdbSlot is a record's hash and position.
type cdbSlot struct{ hash, pos uint32 }

// CDBWriter builds a cdb file record by record, writing records to disk as
// they come and keeping only 16 bytes or so per record in memory, so large
// tables are not held twice. Call Commit to install the file or Abort to
// throw it away. A CDBWriter is not safe for concurrent use.
type CDBWriter struct {
	path, tmp string
	f         *os.File
	opts      CDBWriteOptions
	buf       []byte // bytes not yet written, starting at file offset flushed
	flushed   int64
	pos       int64 // file size so far
	recs      []cdbSlot
	prev      []int32          // previous record with the same hash, -1 if none
	last      map[uint32]int32 // latest record with a hash
	err       error
	done      bool
}

const cdbBufSize = 1 << 16

// NewCDBWriter starts a cdb file that Commit will install at path.
// The temporary file lives in the same directory, otherwise the final
// rename could not be atomic.
func NewCDBWriter(path string, opts CDBWriteOptions) (*CDBWriter, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("maps: write %s: %w", path, err)
	}
	if opts.Source == "" {
		opts.Source = strings.TrimSuffix(path, ".cdb")
	}
	w := &CDBWriter{path: path, tmp: f.Name(), f: f, opts: opts}
	if !opts.Unique {
		w.last = make(map[uint32]int32)
	}
	w.buf = make([]byte, cdbHeaderSize, cdbBufSize+cdbHeaderSize) // header placeholder
	w.pos = cdbHeaderSize
	return w, nil
}

func (w *CDBWriter) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("maps: write %s: %w", w.path, err)
	}
	return w.err
}

func (w *CDBWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(w.buf, w.flushed); err != nil {
		return w.fail(err)
	}
	w.flushed += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

func (w *CDBWriter) write(p []byte) error {
	if len(w.buf)+len(p) > cdbBufSize {
		if err := w.flush(); err != nil {
			return err
		}
		if len(p) > cdbBufSize {
			if _, err := w.f.WriteAt(p, w.flushed); err != nil {
				return w.fail(err)
			}
			w.flushed += int64(len(p))
			w.pos += int64(len(p))
			return nil
		}
	}
	w.buf = append(w.buf, p...)
	w.pos += int64(len(p))
	return nil
}

// readAt reads back n bytes written at off (to compare a duplicate key).
func (w *CDBWriter) readAt(off int64, n int) ([]byte, error) {
	p := make([]byte, n)
	if off >= w.flushed {
		copy(p, w.buf[off-w.flushed:])
		return p, nil
	}
	if err := w.flush(); err != nil {
		return nil, err
	}
	if _, err := w.f.ReadAt(p, off); err != nil {
		return nil, w.fail(err)
	}
	return p, nil
}

// Add appends a record. A key that was added before keeps its first value;
// the duplicate draws `duplicate entry: "key"` through Warn.
func (w *CDBWriter) Add(key, value string) error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return errors.New("maps: CDBWriter used after Commit or Abort")
	}
	nul := 0
	if w.opts.AppendNul {
		nul = 1
	}
	kl, vl := len(key)+nul, len(value)+nul
	h := cdbHash(key, nul == 1)
	if first, ok := w.last[h]; ok && !w.opts.Unique {
		for i := first; i >= 0; i = w.prev[i] {
			r := w.recs[i]
			hdr, err := w.readAt(int64(r.pos), 8)
			if err != nil {
				return err
			}
			if int(binary.LittleEndian.Uint32(hdr)) != kl {
				continue
			}
			k, err := w.readAt(int64(r.pos)+8, kl)
			if err != nil {
				return err
			}
			if string(k[:len(key)]) == key {
				if w.opts.Warn != nil {
					w.opts.Warn(Warning{File: w.opts.Source, Msg: fmt.Sprintf("duplicate entry: \"%s\"", key)})
				}
				return nil
			}
		}
	}
	// Each record costs 8 bytes here and 16 in the hash tables.
	if w.pos+8+int64(kl)+int64(vl)+16*int64(len(w.recs)+1) > cdbMaxSize {
		return w.fail(errors.New("cdb file would exceed 4 GiB"))
	}
	if len(w.recs) >= 1<<31-1 {
		return w.fail(errors.New("too many records"))
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(kl))
	binary.LittleEndian.PutUint32(hdr[4:], uint32(vl))
	pos := uint32(w.pos)
	if err := w.write(hdr[:]); err != nil {
		return err
	}
	if err := w.writeString(key, nul == 1); err != nil {
		return err
	}
	if err := w.writeString(value, nul == 1); err != nil {
		return err
	}
	if !w.opts.Unique {
		prev, ok := w.last[h]
		if !ok {
			prev = -1
		}
		w.last[h] = int32(len(w.recs))
		w.prev = append(w.prev, prev)
	}
	w.recs = append(w.recs, cdbSlot{h, pos})
	return nil
}

func (w *CDBWriter) writeString(s string, nul bool) error {
	if len(w.buf)+len(s)+1 <= cdbBufSize {
		w.buf = append(w.buf, s...)
		w.pos += int64(len(s))
		if nul {
			w.buf = append(w.buf, 0)
			w.pos++
		}
		return nil
	}
	if err := w.write([]byte(s)); err != nil {
		return err
	}
	if nul {
		return w.write([]byte{0})
	}
	return nil
}

// Len returns the number of distinct records added so far.
func (w *CDBWriter) Len() int { return len(w.recs) }

// Commit writes the hash tables and header, syncs the file, renames it into
// place and syncs the directory, so that after a crash either the old or the
// new table is there, complete.
func (w *CDBWriter) Commit() error {
	if w.done {
		return errors.New("maps: CDBWriter used after Commit or Abort")
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	w.last, w.prev = nil, nil
	// Group records by table, keeping insertion order inside each.
	var count [257]uint32
	for _, r := range w.recs {
		count[(r.hash&255)+1]++
	}
	maxSlots := uint32(0)
	for t := 0; t < 256; t++ {
		maxSlots = max(maxSlots, count[t+1]*2)
		count[t+1] += count[t]
	}
	order := make([]cdbSlot, len(w.recs))
	fill := count
	for _, r := range w.recs {
		t := r.hash & 255
		order[fill[t]] = r
		fill[t]++
	}
	w.recs = nil
	var header [cdbHeaderSize]byte
	slots := make([]cdbSlot, maxSlots)
	tb := make([]byte, 0, maxSlots*8)
	for t := 0; t < 256; t++ {
		rs := order[count[t]:count[t+1]]
		n := uint32(len(rs)) * 2
		binary.LittleEndian.PutUint32(header[t*8:], uint32(w.pos))
		binary.LittleEndian.PutUint32(header[t*8+4:], n)
		if n == 0 {
			continue
		}
		sl := slots[:n]
		clear(sl)
		for _, r := range rs {
			i := (r.hash >> 8) % n
			for sl[i].pos != 0 {
				if i++; i == n {
					i = 0
				}
			}
			sl[i] = r
		}
		tb = tb[:0]
		for _, s := range sl {
			tb = binary.LittleEndian.AppendUint32(tb, s.hash)
			tb = binary.LittleEndian.AppendUint32(tb, s.pos)
		}
		if err := w.write(tb); err != nil {
			w.Abort()
			return err
		}
	}
	if err := w.flush(); err != nil {
		w.Abort()
		return err
	}
	if _, err := w.f.WriteAt(header[:], 0); err != nil {
		w.fail(err)
		w.Abort()
		return w.err
	}
	if err := w.f.Chmod(0o644); err != nil {
		w.fail(err)
		w.Abort()
		return w.err
	}
	if err := w.f.Sync(); err != nil {
		w.fail(err)
		w.Abort()
		return w.err
	}
	if err := w.f.Close(); err != nil {
		w.fail(err)
		w.Abort()
		return w.err
	}
	if err := os.Rename(w.tmp, w.path); err != nil {
		w.fail(err)
		w.Abort()
		return w.err
	}
	w.done = true
	// Sync the directory so the rename itself survives a crash.
	dir, err := os.Open(filepath.Dir(w.path))
	if err != nil {
		return w.fail(err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return w.fail(err)
	}
	return nil
}

// Abort discards the file being built. It is safe to call after Commit
// (it then does nothing).
func (w *CDBWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.tmp)
}
