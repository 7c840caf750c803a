package apicount

import (
	"context"
	"time"
)

// QuietFor is how long the processes behind some proxies must make no
// write for their work on a workload to count as done.
const QuietFor = 3 * time.Second

// WaitQuiet waits until the proxies have seen no write for QuietFor (at
// most limit) and returns when the last write was seen.
func WaitQuiet(ctx context.Context, proxies []*Proxy, limit time.Duration) (time.Time, error) {
	writes := func() int64 {
		var n int64
		for _, p := range proxies {
			_, w := p.Snapshot().Total()
			n += w
		}
		return n
	}
	last, lastAt := writes(), time.Now()
	deadline := time.Now().Add(limit)
	for time.Since(lastAt) < QuietFor && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return lastAt, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if w := writes(); w != last {
			last, lastAt = w, time.Now()
		}
	}
	return lastAt, nil
}

// Sum adds up one kind of count (Snapshot or Failures) over proxies.
func Sum(ps []*Proxy, of func(*Proxy) Counts) Counts {
	c := Counts{}
	for _, p := range ps {
		c = c.Add(of(p))
	}
	return c
}
