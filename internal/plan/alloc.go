package plan

import (
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
)

// allocator hands out fixed-size subnets (or single addresses) of a pool.
//
// Stability: every key has a preferred slot derived from a hash of its name,
// and keys are placed in declaration order, each taking its preferred slot
// or the next free one. Adding a router or link therefore never moves an
// existing allocation when appended (and only on a hash collision when
// inserted elsewhere); removing one frees its slot without shifting others.
// Pinned networks are claimed before anything is allocated.
type allocator struct {
	pool  netip.Prefix
	bits  int    // prefix length of one allocation
	slots uint64 // usable slots (capped at 2^32)
	first uint64 // first usable slot (skips the network address for /32 pools)
	used  map[uint64]string
}

func newAllocator(pool netip.Prefix, bits int, skipFirst bool) *allocator {
	n := bits - pool.Bits()
	slots := uint64(1) << 32
	if n < 32 {
		slots = uint64(1) << n
	}
	a := &allocator{pool: pool.Masked(), bits: bits, slots: slots, used: map[uint64]string{}}
	if skipFirst && slots > 2 {
		a.first = 1
		a.slots-- // and the last (broadcast-looking) one
	}
	return a
}

// size is how many allocations the pool holds.
func (a *allocator) size() uint64 { return a.slots - a.first }

// slotOf returns the slot of p, or false if p is not an aligned slot of the pool.
func (a *allocator) slotOf(p netip.Prefix) (uint64, bool) {
	if !a.pool.Contains(p.Addr()) {
		return 0, false
	}
	base := new(big.Int).SetBytes(a.pool.Addr().AsSlice())
	off := new(big.Int).Sub(new(big.Int).SetBytes(p.Addr().AsSlice()), base)
	off.Rsh(off, uint(a.pool.Addr().BitLen()-a.bits))
	if !off.IsUint64() || off.Uint64() >= a.slots {
		return 0, false
	}
	return off.Uint64(), true
}

// pin claims p for owner; it returns the previous owner if p was taken.
func (a *allocator) pin(p netip.Prefix, owner string) (string, bool) {
	s, ok := a.slotOf(p)
	if !ok {
		return "", true // outside the pool: nothing to reserve
	}
	if prev, taken := a.used[s]; taken {
		return prev, false
	}
	if s < a.first {
		return "", true // never allocated: reserving it would only shrink size()
	}
	a.used[s] = owner
	return "", true
}

// free reports whether slot s is unallocated.
func (a *allocator) free(s uint64) bool {
	_, taken := a.used[s]
	return !taken && s >= a.first && s < a.slots
}

// alloc assigns the key's preferred slot or the next free one.
func (a *allocator) alloc(key string) (netip.Prefix, error) {
	if uint64(len(a.used)) >= a.size() {
		return netip.Prefix{}, fmt.Errorf("pool %s is exhausted: it holds %d /%d networks", a.pool, a.size(), a.bits)
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	n := a.size()
	start := h.Sum64() % n
	for i := uint64(0); i < n; i++ {
		s := a.first + (start+i)%n
		if _, taken := a.used[s]; !taken {
			a.used[s] = key
			return a.prefixAt(s), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("pool %s is exhausted", a.pool)
}

func (a *allocator) prefixAt(slot uint64) netip.Prefix {
	base := new(big.Int).SetBytes(a.pool.Addr().AsSlice())
	off := new(big.Int).Lsh(new(big.Int).SetUint64(slot), uint(a.pool.Addr().BitLen()-a.bits))
	base.Add(base, off)
	buf := make([]byte, a.pool.Addr().BitLen()/8)
	base.FillBytes(buf)
	addr, _ := netip.AddrFromSlice(buf)
	return netip.PrefixFrom(addr, a.bits)
}

// CEAddress is the address a CE holds in one of its customer prefixes:
// the first host (network + 1), or the address itself for a /32 or /128,
// where network + 1 would lie outside the prefix.
func CEAddress(p netip.Prefix) netip.Addr {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr()
	}
	return p.Masked().Addr().Next()
}

// nthAddr returns the address n after p's network address.
func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for i := 0; i < n; i++ {
		a = a.Next()
	}
	return a
}

// pointToPoint returns the two end addresses of a link or attachment
// network: the first two addresses of a /31 or /127, else the first two
// usable ones (network+1 and network+2).
func pointToPoint(p netip.Prefix) (netip.Addr, netip.Addr) {
	if p.Bits() == p.Addr().BitLen()-1 {
		return nthAddr(p, 0), nthAddr(p, 1)
	}
	return nthAddr(p, 1), nthAddr(p, 2)
}
