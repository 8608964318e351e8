package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRecorderTotals checks the per-prefix totals the harness polls: a group of thousands of
// paths is one answer, and one group's prefix does not count another's paths.
func TestRecorderTotals(t *testing.T) {
	rec := &recorder{byPath: map[string]*pathLog{}}
	const paths = 2000
	for i := range paths {
		for ev := range 1 + i%3 {
			rec.add(fmt.Sprintf("/hook/a/%d", i), receipt{EventID: fmt.Sprintf("ev%d", ev), ArrivalNs: int64(i + 1)})
		}
	}
	rec.add("/hook/a/0", receipt{EventID: "ev0", ArrivalNs: 1}) // a duplicate
	rec.add("/hook/ab", receipt{EventID: "ev0", ArrivalNs: 9999})

	tests := []struct {
		name   string
		prefix string
		want   totals
	}{
		{"Group", "/hook/a/", totals{Paths: paths, Requests: 4000, Distinct: 3999, MinDistinct: 1, LastArrival: paths}},
		{"OnePath", "/hook/a/1999", totals{Paths: 1, Requests: 2, Distinct: 2, MinDistinct: 2, LastArrival: paths}},
		{"Everything", "", totals{Paths: paths + 1, Requests: 4001, Distinct: 4000, MinDistinct: 1, LastArrival: 9999}},
		{"Nothing", "/hook/b/", totals{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rec.total(tt.prefix); got != tt.want {
				t.Fatalf("total(%q) = %+v, want %+v", tt.prefix, got, tt.want)
			}
		})
	}
}

func TestRecorderDumpByPrefix(t *testing.T) {
	rec := &recorder{byPath: map[string]*pathLog{}}
	rec.add("/hook/s/1", receipt{EventID: "a"})
	rec.add("/hook/s/1", receipt{EventID: "b"})
	rec.add("/hook/s/10", receipt{EventID: "c"})
	rec.add("/hook/t/1", receipt{EventID: "d"})

	srv := httptest.NewServer(http.HandlerFunc(rec.dump))
	defer srv.Close()
	rp := &receiverProc{base: srv.URL, http: srv.Client()}
	got, err := rp.receipts(t.Context(), "/hook/s/")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got["/hook/s/1"]) != 2 || len(got["/hook/s/10"]) != 1 {
		t.Fatalf("receipts(/hook/s/) = %v, want /hook/s/1 with 2 and /hook/s/10 with 1", got)
	}
	if ids := got["/hook/s/1"][0].EventID + got["/hook/s/1"][1].EventID; ids != "ab" {
		t.Fatalf("receipts of /hook/s/1 in order %q, want arrival order ab", ids)
	}
}
