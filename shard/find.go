package shard

import "unsafe"

// find16 appends to dst the indices of xs that hold x. Tables are scanned
// whole on every removal, so it compares four entries per 64-bit word
// (SWAR): a word holds x in some lane exactly when word^pattern has a zero
// lane, which a subtraction and two masks detect without a branch per
// entry. Lanes are checked one by one only in the rare words that hit.
func find16(xs []uint16, x uint16, dst []uint32) []uint32 {
	const ones, highs = 0x0001_0001_0001_0001, 0x8000_8000_8000_8000
	n := len(xs) / 4 * 4
	if n > 0 {
		words := unsafe.Slice((*uint64)(unsafe.Pointer(&xs[0])), n/4)
		pattern := uint64(x) * ones
		for w, word := range words {
			v := word ^ pattern
			if (v-ones)&^v&highs == 0 {
				continue // no lane of v is zero
			}
			for i := w * 4; i < w*4+4; i++ {
				if xs[i] == x {
					dst = append(dst, uint32(i))
				}
			}
		}
	}
	for i := n; i < len(xs); i++ {
		if xs[i] == x {
			dst = append(dst, uint32(i))
		}
	}
	return dst
}
