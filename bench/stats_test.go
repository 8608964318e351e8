package main

import (
	"math"
	"testing"
)

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	tests := []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"Median of 1 to 100", hundred, 50, 50},
		{"P95 of 1 to 100", hundred, 95, 95},
		{"P99 of 1 to 100", hundred, 99, 99},
		{"P100 is the maximum", hundred, 100, 100},
		{"P0 is the minimum", hundred, 0, 1},
		{"Single sample", []float64{7}, 99, 7},
		{"Rank rounds up", []float64{1, 2, 3, 4}, 50, 2},
		{"Just above a rank", []float64{1, 2, 3, 4}, 51, 3},
		{"P99 of ten samples is the largest", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Fatalf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
	t.Run("EmptyIsNaN", func(t *testing.T) {
		if got := Percentile(nil, 50); !math.IsNaN(got) {
			t.Fatalf("Percentile(nil, 50) = %v, want NaN", got)
		}
	})
}

func TestSummarize(t *testing.T) {
	t.Run("Unsorted", func(t *testing.T) {
		in := []float64{5, 1, 4, 2, 3}
		got := Summarize(in)
		want := Summary{N: 5, Min: 1, Mean: 3, P50: 3, P95: 5, P99: 5, Max: 5}
		if got != want {
			t.Fatalf("Summarize = %+v, want %+v", got, want)
		}
		if in[0] != 5 {
			t.Fatalf("Summarize modified its input: %v", in)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		if got := Summarize(nil); got != (Summary{}) {
			t.Fatalf("Summarize(nil) = %+v, want the zero Summary", got)
		}
	})
}
