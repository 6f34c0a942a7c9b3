package tokens

import (
	"crypto"
	"sync"
)

// Every engine now holds an RSA key for ID tokens, and a 2048-bit RSA key
// takes about half a second to make. Tests draw RSA keys from a small
// pool instead, made on first use and handed out in turn: consecutive
// draws always differ, which is all a rotation in one test needs.
func init() {
	real := defaultGenerate
	const size = 4
	var (
		mu   sync.Mutex
		pool []crypto.Signer
		next int
	)
	defaultGenerate = func(alg string) (crypto.Signer, error) {
		if alg != "RS256" && alg != "PS256" {
			return real(alg)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(pool) < size {
			k, err := real(alg)
			if err != nil {
				return nil, err
			}
			pool = append(pool, k)
			return k, nil
		}
		k := pool[next%size]
		next++
		return k, nil
	}
}
