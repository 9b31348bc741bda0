package resolver

import (
	"net/netip"
	"time"
)

// key names one cached question: the canonical name and the query type.
type key struct {
	name  string
	qtype uint16
}

// answer is what one question resolved to, in the form the Lookup methods
// return (each caller gets a copy of the slices). Exactly one of the slices
// is set for a positive answer; fail is set otherwise.
type answer struct {
	mx    []MX
	addrs []netip.Addr
	strs  []string // PTR and NS names, TXT strings
	fail  *failure
	ttl   time.Duration // how long the answer may be cached; 0 = not at all
}

// entry is one cached answer on the LRU list.
type entry struct {
	key        key
	ans        answer
	expires    time.Time
	prev, next *entry
}

// lru is a size-bounded cache of answers: a map for lookups and a circular
// list, most recently used first, for eviction. It is not safe for
// concurrent use; Client guards it with its mutex.
type lru struct {
	max   int
	items map[key]*entry
	root  entry // root.next is the most recently used entry, root.prev the least
}

func newLRU(max int) *lru {
	c := &lru{max: max, items: make(map[key]*entry)}
	c.root.next, c.root.prev = &c.root, &c.root
	return c
}

// get returns the answer for k if it is cached and has not expired at now.
// An expired entry is dropped on the way.
func (c *lru) get(k key, now time.Time) (answer, bool) {
	e, ok := c.items[k]
	if !ok {
		return answer{}, false
	}
	if !now.Before(e.expires) {
		c.remove(e)
		return answer{}, false
	}
	if c.root.next != e {
		c.unlink(e)
		c.pushFront(e)
	}
	return e.ans, true
}

// put caches ans for k until expires, evicting the least recently used
// entry when the cache is full.
func (c *lru) put(k key, ans answer, expires time.Time) {
	if e, ok := c.items[k]; ok {
		e.ans, e.expires = ans, expires
		c.unlink(e)
		c.pushFront(e)
		return
	}
	for len(c.items) >= c.max && c.root.prev != &c.root {
		c.remove(c.root.prev)
	}
	e := &entry{key: k, ans: ans, expires: expires}
	c.items[k] = e
	c.pushFront(e)
}

func (c *lru) len() int { return len(c.items) }

func (c *lru) remove(e *entry) {
	c.unlink(e)
	delete(c.items, e.key)
}

func (c *lru) unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (c *lru) pushFront(e *entry) {
	e.prev = &c.root
	e.next = c.root.next
	c.root.next.prev = e
	c.root.next = e
}
