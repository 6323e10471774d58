package boltcheck

import "math/bits"

// bitset holds one bit per page id: n/8 bytes for n pages.
type bitset []uint64

func newBitset(n uint64) bitset { return make(bitset, (n+63)/64) }

func (b bitset) has(i uint64) bool { return b[i/64]&(1<<(i%64)) != 0 }

func (b bitset) set(i uint64) { b[i/64] |= 1 << (i % 64) }

// count returns how many bits are set.
func (b bitset) count() uint64 {
	var n int
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return uint64(n)
}

// firstClearBoth returns the first id in [from, n) set in neither a nor b.
func firstClearBoth(a, b bitset, from, n uint64) (uint64, bool) {
	for i := from; i < n; {
		w := i / 64
		both := ^(a[w] | b[w]) &^ (1<<(i%64) - 1)
		if both != 0 {
			j := w*64 + uint64(bits.TrailingZeros64(both))
			if j < n {
				return j, true
			}
			return 0, false
		}
		i = (w + 1) * 64
	}
	return 0, false
}
