package main

import (
	"math"
	"slices"
)

// Summary describes a sample of latencies in milliseconds. Percentiles use the nearest-rank
// method: P99 is the smallest sample that at least 99% of the samples do not exceed, so it
// is always a value that was really observed.
type Summary struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// Summarize returns the summary of samples; it does not modify them. An empty sample gives
// the zero Summary (N == 0), which callers print as "-".
func Summarize(samples []float64) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	var sum float64
	for _, v := range sorted {
		sum += v
	}
	return Summary{
		N:    len(sorted),
		Min:  sorted[0],
		Mean: sum / float64(len(sorted)),
		P50:  Percentile(sorted, 50),
		P95:  Percentile(sorted, 95),
		P99:  Percentile(sorted, 99),
		Max:  sorted[len(sorted)-1],
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of an ascending sample by nearest
// rank: the value at rank ceil(p/100 * n). p <= 0 gives the minimum; an empty sample gives
// NaN.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}
