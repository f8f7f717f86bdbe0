package netpool

// pick maps key to one of n egress IPs. It is deterministic across processes and restarts (no random
// seed, unlike hash/maphash), so an endpoint keeps its IP; jump consistent hashing moves only 1/n of
// the endpoints when a pool grows by one IP at the end, which keeps receivers' allowlists churn low.
func pick(key string, n int) int {
	if n <= 1 {
		return 0
	}
	return jump(fnv1a(key), n)
}

// fnv1a is 64-bit FNV-1a, inlined to avoid hash/fnv's allocation.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// jump is Lamping and Veach's jump consistent hash ("A Fast, Minimal Memory, Consistent Hash
// Algorithm", 2014).
func jump(key uint64, n int) int {
	b, j := int64(-1), int64(0)
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}
