package matchmem

// The slot's internals, for the package's external tests.

// SlotData is what a match of each string of the slot's rules may hold.
func SlotData(s *Slot) []uint32 {
	out := make([]uint32, len(s.data))
	for i, d := range s.data {
		out[i] = uint32(d)
	}
	return out
}

// SlotCost is what the matches of the slot's current scan cost so far.
func SlotCost(s *Slot) uint64 { return s.cost() }
