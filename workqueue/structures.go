package workqueue

// ring is a FIFO of entries that reuses its buffer, whose length is a
// power of two so that an index wraps with a mask, not a division.
type ring struct {
	buf        []*entry
	head, size int
}

func (r *ring) len() int { return r.size }

func (r *ring) push(e *entry) {
	if r.size == len(r.buf) {
		n := make([]*entry, max(16, 2*len(r.buf)))
		for i := range r.size {
			n[i] = r.at(i)
		}
		r.buf, r.head = n, 0
	}
	r.buf[(r.head+r.size)&(len(r.buf)-1)] = e
	r.size++
}

func (r *ring) pop() *entry {
	if r.size == 0 {
		return nil
	}
	e := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.size--
	return e
}

// at returns the i'th entry from the head.
func (r *ring) at(i int) *entry { return r.buf[(r.head+i)&(len(r.buf)-1)] }

// entryHeap is a min-heap of entries by at, each knowing its index so
// that it can be removed or moved.
type entryHeap []*entry

func (h entryHeap) len() int { return len(h) }

func (h entryHeap) top() *entry {
	if len(h) == 0 {
		return nil
	}
	return h[0]
}

func (h *entryHeap) push(e *entry) {
	e.idx = len(*h)
	*h = append(*h, e)
	h.up(e.idx)
}

func (h *entryHeap) pop() *entry {
	e := (*h)[0]
	h.remove(e)
	return e
}

func (h *entryHeap) remove(e *entry) {
	s := *h
	i, last := e.idx, len(s)-1
	if i != last {
		s[i] = s[last]
		s[i].idx = i
	}
	s[last] = nil
	*h = (*h)[:last] // not s[:last]: a slice of itself writes no pointer, so no barrier
	if i != last {
		h.fix(s[i])
	}
	e.idx = -1
}

// fix restores the order after e.at changed.
func (h entryHeap) fix(e *entry) {
	if !h.down(e.idx) {
		h.up(e.idx)
	}
}

func (h entryHeap) less(i, j int) bool { return h[i].at < h[j].at }

func (h entryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

func (h entryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h entryHeap) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

// waiter is a Claim blocked for want of work.
type waiter struct {
	ch         chan struct{} // buffered, 1: a wake-up
	prev, next *waiter
	listed     bool
}

// waiterList is a FIFO of blocked Claims: a wake-up goes to the one that
// has waited longest.
type waiterList struct {
	head, tail *waiter
	n          int
}

func (l *waiterList) len() int { return l.n }

func (l *waiterList) push(w *waiter) {
	w.prev, w.next, w.listed = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.n++
}

// remove unlists w, reporting false if it was not listed (a wake-up took
// it off first).
func (l *waiterList) remove(w *waiter) bool {
	if !w.listed {
		return false
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next, w.listed = nil, nil, false
	l.n--
	return true
}

func (l *waiterList) wakeOne() {
	if w := l.head; w != nil {
		l.remove(w)
		w.ch <- struct{}{}
	}
}

func (l *waiterList) wakeAll() {
	for l.head != nil {
		l.wakeOne()
	}
}
